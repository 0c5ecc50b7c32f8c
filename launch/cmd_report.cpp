// cmd_report.cpp: `dsv4-calib report`: report.html of one finished run (written into it, with its
// model card README.md again, so eval numbers saved since as OUT/eval.json reach both), or of
// several runs compared side by side in one page (--out FILE required).
//
//   dsv4-calib report runs/tiny_w4a16_mtp
//   dsv4-calib report runs/q_gptq runs/q_rtn --out compare.html
#include <CLI/CLI.hpp>

#include <memory>

#include "calib/run_report.h"
#include "common/log.h"
#include "launch/commands.h"

namespace dsv4::launch {
namespace {

struct ReportArgs {
  std::vector<std::string> runs;
  std::string out;
};

int run_report(const ReportArgs& a) {
  const std::string path = calib::report_write(a.runs, a.out);
  log_info("wrote %s (%zu run%s); open it in a browser, it needs no network", path.c_str(), a.runs.size(),
           a.runs.size() == 1 ? "" : "s side by side");
  return 0;
}

}  // namespace

Command cmd_report_register(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* sub = app.add_subcommand("report", "Plots of finished runs in one self-contained report.html");
  sub->add_option("runs", a->runs, "output directories of finished runs (OUT); several compare side by side")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--out", a->out, "where the page goes (default OUT/report.html; required for several runs)");
  return [a] { return run_report(*a); };
}

}  // namespace dsv4::launch

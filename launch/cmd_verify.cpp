// cmd_verify.cpp: `dsv4-calib verify OUT --source SRC [--json]`: re-reads a finished artifact and
// the release checkpoint it was made from and runs every check of calib/verify.h (key set, byte
// copies, exact decodes, MTP invariants, config.json, reconstruction error, GPTQ-vs-RTN).
// Prints one line per check (or the JSON report); exit code 0 when every check passes, 1 when any
// fails (fail closed: an artifact that cannot be read fails too).
//
//   dsv4-calib verify runs/q --source runs/tiny
//   dsv4-calib verify runs/q --source /models/DeepSeek-V4-Flash --json > verify.json
//   dsv4-calib verify runs/q --source SRC --reconstruction-sample 512 --gptq-sample 32
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "calib/verify.h"
#include "launch/commands.h"

namespace dsv4::launch {
namespace {

struct VerifyArgs {
  std::string artifact, source;
  bool json = false;
  calib::VerifyOptions options;
};

int run_verify(const VerifyArgs& a) {
  const calib::VerifyReport r = calib::verify_artifact(a.artifact, a.source, a.options);
  if (a.json) {
    std::printf("%s\n", calib::verify_report_json(r).dump(2).c_str());
  } else {
    std::fputs(calib::verify_report_text(r).c_str(), stdout);
  }
  return r.ok() ? 0 : 1;
}

}  // namespace

Command cmd_verify_register(CLI::App& app) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* sub = app.add_subcommand(
      "verify", "re-read an artifact against its source and fail closed (key set, byte copies, MTP, config, "
                "reconstruction error, GPTQ vs RTN)");
  sub->add_option("artifact", args->artifact, "artifact directory written by dsv4-calib")->required();
  sub->add_option("--source", args->source, "the release checkpoint the artifact was calibrated from")->required();
  sub->add_flag("--json", args->json, "print the report as JSON");
  sub->add_option("--reconstruction-sample", args->options.reconstruction_sample,
                  "quantized modules checked for reconstruction error (0: all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--gptq-sample", args->options.gptq_sample, "GPTQ modules compared with RTN (0: all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--threads", args->options.threads, "threads (0: all cores)")->check(CLI::NonNegativeNumber);
  return [args] { return run_verify(*args); };
}

}  // namespace dsv4::launch

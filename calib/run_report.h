// run_report.h: report.html (issue 25), one self-contained page (no network, no CDN: the chart
// renderer and the script are inlined) with the plots a person reads at a glance: time per layer
// by phase (stacked), GPTQ vs RTN error per layer and over modules, routed tokens per expert
// (layer x expert heat map), methods and fallbacks per layer, memory per rank, and the run's facts
// (tool, recipe, source, world size, hosts and GPUs, data hashes, resume history, eval). Several
// runs given at once are compared side by side. Written at the end of every run and by
// `dsv4-calib report OUT [OUT...]`.
//
//   std::vector<ReportRun> runs{report_run_load("runs/q4"), report_run_load("runs/q8")};
//   write_file_atomic("compare.html", report_html(runs));
//
// The data is the run's calib_manifest.json, its progress.jsonl run_start/run_end events (resumes,
// every rank's memory) and OUT/eval.json when present (`dsv4-calib -v 0 eval ... --json >
// OUT/eval.json`), embedded as JSON; calib/report/report.js draws it with Chart.js.
// Tests: tests/calib/test_run_report.cpp, tests/e2e/report_browser.sh (headless Chromium).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace dsv4::calib {

inline constexpr const char* kReportFile = "report.html";
inline constexpr const char* kEvalFile = "eval.json";

struct ReportRun {
  std::string label;                           // the directory's name
  nlohmann::ordered_json manifest;             // calib_manifest.json
  std::vector<nlohmann::ordered_json> starts;  // progress.jsonl's run_start events (empty without the file)
  std::vector<nlohmann::ordered_json> ends;    // its run_end events
  nlohmann::ordered_json eval;                 // eval.json, null without one
};

// Reads OUT's records. A missing or damaged calib_manifest.json (or eval.json) is a user error
// naming the file; progress.jsonl is optional (runs from before it had none).
ReportRun report_run_load(const std::string& out_dir);
// The same with the manifest in hand (the end of a run, before it is on disk).
ReportRun report_run_from(const std::string& out_dir, nlohmann::ordered_json manifest);

// The page for one run or several (compared side by side). Needs at least one run.
std::string report_html(const std::vector<ReportRun>& runs);

// `dsv4-calib report OUT...`: report.html into `out_file` (default OUT/report.html for one run;
// required for several), and for one run the model card OUT/README.md again (model_card.h), so
// eval numbers added since the run reach it. Returns the report's path.
std::string report_write(const std::vector<std::string>& out_dirs, const std::string& out_file);

}  // namespace dsv4::calib

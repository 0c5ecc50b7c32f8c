// run_report.cpp: report.html from a run's records (see run_report.h).
#include "calib/run_report.h"

#include <filesystem>

#include "calib/model_card.h"
#include "calib/report_assets.h"
#include "calib/run_progress.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "common/log.h"

namespace dsv4::calib {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

// A JSON object read from OUT/name; a user error naming the file when it is missing or damaged.
ordered_json json_object_read(const std::string& dir, const std::string& name, const std::string& what) {
  const std::string path = dir + "/" + name;
  std::error_code ec;
  DSV4_USER_CHECK("report", fs::exists(path, ec), "%s: no %s; %s", dir.c_str(), name.c_str(), what.c_str());
  ordered_json j;
  try {
    j = json_parse<ordered_json>(read_file(path), path);
  } catch (const nlohmann::json::parse_error& e) {
    DSV4_USER_FAIL("report", "%s is not valid JSON (%s)", path.c_str(), json_error_text(e).c_str());
  }
  DSV4_USER_CHECK("report", j.is_object(), "%s is not a JSON object", path.c_str());
  return j;
}

// The JSON inside <script type="application/json">: '<' escaped, so no "</script>" or "<!--" in a
// string (a module name, a path) can end the element early. Valid JSON: '<' only occurs in strings.
std::string script_safe(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  for (char c : json) {
    if (c == '<') out += "\\u003c";
    else out += c;
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

constexpr const char kStyle[] = R"(
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
h3 { font-size: 0.95em; font-weight: 600; margin: 0.3em 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1em; }
.panel { border: 1px solid #ddd; border-radius: 4px; padding: 0.5em; overflow-x: auto; }
table { border-collapse: collapse; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left;
  vertical-align: top; } th { background: #f4f4f4; }
#status { color: #888; font-size: 0.85em; }
)";

}  // namespace

ReportRun report_run_load(const std::string& dir) {
  ordered_json m = json_object_read(dir, "calib_manifest.json",
                                    "expected the output directory of a finished dsv4-calib run (--out)");
  DSV4_USER_CHECK("report", m.contains("layers") && m["layers"].is_array(),
                  "%s/calib_manifest.json has no \"layers\" array: not a dsv4-calib manifest", dir.c_str());
  return report_run_from(dir, std::move(m));
}

ReportRun report_run_from(const std::string& dir, ordered_json manifest) {
  ReportRun r;
  r.label = fs::path(dir).lexically_normal().filename().string();
  if (r.label.empty() || r.label == "." || r.label == "..") r.label = fs::weakly_canonical(dir).filename().string();
  r.manifest = std::move(manifest);
  std::error_code ec;
  if (fs::exists(dir + "/" + kProgressFile, ec)) {
    for (ordered_json& e : progress_read(dir + "/" + kProgressFile)) {
      const std::string kind = e.value("event", "");
      if (kind == "run_start") r.starts.push_back(std::move(e));
      else if (kind == "run_end") r.ends.push_back(std::move(e));
    }
  }
  if (fs::exists(dir + "/" + kEvalFile, ec)) r.eval = json_object_read(dir, kEvalFile, "");
  return r;
}

std::string report_html(const std::vector<ReportRun>& runs) {
  DSV4_CHECK_IN("report", !runs.empty(), "no run to report");
  ordered_json data = {{"runs", ordered_json::array()}};
  std::string title;
  for (const ReportRun& r : runs) {
    data["runs"].push_back({{"label", r.label}, {"manifest", r.manifest}, {"starts", r.starts}, {"ends", r.ends},
                            {"eval", r.eval}});
    title += (title.empty() ? "" : " vs ") + r.label;
  }
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  h += "<title>dsv4-calib report: " + html_escape(title) + "</title>\n<style>" + std::string(kStyle) + "</style>\n";
  h += "</head><body>\n<h1>dsv4-calib report: " + html_escape(title) + "</h1>\n";
  h += "<p id=\"status\">drawing the plots (this page needs JavaScript, no network)</p>\n";
  const std::pair<const char*, const char*> sections[] = {
      {"facts", "Run facts"},
      {"times", "Time per layer by phase (stacked; write runs in the background, overlapping the next layer)"},
      {"errors", "GPTQ vs round-to-nearest (Hessian-weighted relative error)"},
      {"experts", "Routed tokens per expert (dead and hot experts)"},
      {"methods", "Methods and fallbacks per layer"},
      {"memory", "Memory per rank"}};
  for (const auto& [id, heading] : sections) {
    h += std::string("<h2>") + heading + "</h2>\n<div id=\"" + id + "\" class=\"" +
         (std::string(id) == "facts" ? "" : "grid") + "\"></div>\n";
  }
  h += "<script type=\"application/json\" id=\"dsv4-data\">" + script_safe(data.dump()) + "</script>\n";
  h += "<script>\n" + std::string(kReportChartJs) + "\n</script>\n";
  h += "<script>\n" + std::string(kReportScript) + "\n</script>\n</body></html>\n";
  return h;
}

std::string report_write(const std::vector<std::string>& out_dirs, const std::string& out_file) {
  DSV4_USER_CHECK("report", !out_dirs.empty(), "report: name at least one output directory (OUT)");
  DSV4_USER_CHECK("report", out_dirs.size() == 1 || !out_file.empty(),
                  "report: %zu runs are compared in one page: say where it goes with --out FILE.html",
                  out_dirs.size());
  std::vector<ReportRun> runs;
  for (const std::string& d : out_dirs) runs.push_back(report_run_load(d));
  const std::string path = out_file.empty() ? out_dirs.front() + "/" + kReportFile : out_file;
  write_file_atomic(path, report_html(runs));
  if (out_dirs.size() == 1) model_card_refresh(out_dirs.front(), runs.front());
  return path;
}

}  // namespace dsv4::calib

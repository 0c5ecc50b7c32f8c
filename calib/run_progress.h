// run_progress.h: OUT/progress.jsonl, the run's events for dashboards and scripts (issue 25): one
// JSON object per line, written by rank 0 only. Per run process a `run_start`; per segment one
// `phase` object per phase (decode, forward, reduce, solve, share, wait, write: its seconds) and
// then one `layer` object (layer_report_json, the one source of the manifest's layers too, plus
// the segment's index, output bytes, rank 0's peak host memory, a tokens-per-expert summary and
// the ETA); at the end a `run_end` with every rank's memory.
//
//   ProgressLog log = ProgressLog::open(out_dir + "/progress.jsonl", checkpoint.resuming());
//   log.append_event({{"event", "run_start"}, ...});
//   log.append(progress_segment_events(report, facts));   // the phases and the layer, one write
//
// Appends are whole lines in one write() and fsync'd, as the run journal's (run_journal.h): a kill
// mid-append leaves a fragment without its newline, which the next process (resuming) cuts off
// before it appends, so a resumed run continues the file; a new run (or --restart) starts it over.
// Tests: tests/calib/test_run_progress.cpp, tests/e2e/cli_calibrate.sh, tests/e2e/cli_resume.sh.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "calib/layer_report.h"

namespace dsv4::calib {

inline constexpr const char* kProgressFile = "progress.jsonl";

// What a `layer` event adds to the segment's report.
struct ProgressSegmentFacts {
  int num_segments = 0;
  uint64_t bytes = 0;                // the segment's output tensors (the layout's bytes)
  uint64_t host_rss_peak_bytes = 0;  // rank 0's, so far (0 where the OS does not say)
  double eta_seconds = -1.0;         // the run's time left after this segment (-1: unknown)
};

// The segment's `phase` events (one per phase, in pipeline order) then its `layer` event.
std::vector<nlohmann::ordered_json> progress_segment_events(const LayerReport& layer, const ProgressSegmentFacts& f);

// {"min", "max", "mean", "dead"} over the routed tokens per expert (dead: experts with 0 tokens).
nlohmann::ordered_json expert_tokens_summary(const std::vector<int64_t>& expert_tokens);

// The events of one run's progress file, in order; a line that does not parse (a fragment) is
// skipped (the report reads files of runs still going).
std::vector<nlohmann::ordered_json> progress_read(const std::string& path);

class ProgressLog {
 public:
  // Creates (or truncates) `path` for a new run; for a resumed one cuts a torn last line off and
  // appends after the earlier processes' events.
  static ProgressLog open(const std::string& path, bool resuming);
  // Writes the events as one block of whole lines, one write() then fsync. Throws naming the file.
  void append(const std::vector<nlohmann::ordered_json>& events);
  void append_event(const nlohmann::ordered_json& event) { append(std::vector<nlohmann::ordered_json>{event}); }
  const std::string& path() const { return path_; }

 private:
  explicit ProgressLog(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Seconds since the Unix epoch, for the events' "time" (a dashboard's clock).
double progress_time_now();

}  // namespace dsv4::calib

// run_watch.h: what rank 0 shows and records while a run goes (issue 25): the per-layer log line
// with its ETA (layer_report_line + RunEta), OUT/progress.jsonl (run_progress.h), and on a
// terminal a live bar under the log, redrawn in place twice a second: segments done of all, time
// elapsed, ETA from the measured segment times counting down, and the phase the run is in.
// Without a terminal (a log file, mpirun's forwarding) the log is plain lines, as before.
//
//   std::optional<RunWatch> watch;
//   if (rank == 0) watch.emplace(RunWatchStart{.out_dir = out, .resuming = ck.resuming(), ...});
//   pipeline_run(in, writer, [&](const LayerReport& l) { if (watch) watch->on_layer(l); });
//   if (watch) watch->finish(ranks, seconds);
//
// Tests: tests/calib/test_run_progress.cpp (the bar's text), tests/e2e/cli_calibrate.sh (the
// file, plain lines without a terminal, the bar under `script`).
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "calib/layer_report.h"
#include "calib/run_progress.h"

namespace dsv4::calib {

// What the bar shows.
struct ProgressBarState {
  int done = 0;              // segments finished (this process and the ones before it)
  int total = 0;
  double elapsed_s = 0.0;    // of this process
  double eta_s = -1.0;       // -1: no segment measured yet
  std::string phase;         // "layers.12 solve", or ""
};

// One line of at most `width` - 1 columns (so a terminal never wraps it):
// "[#######.............]  12/45 segments | 3.2 min elapsed | eta 8.1 min | layers.12 solve".
std::string progress_bar_text(const ProgressBarState& state, int width);

struct RunWatchStart {
  std::string out_dir;
  bool resuming = false;       // continue progress.jsonl (else start it over)
  int num_segments = 0;
  int first_segment = 0;       // the first this process computes (> 0 when resumed)
  int world = 1;
  std::string device;          // "cpu" or "cuda"
  std::vector<uint64_t> segment_bytes;  // output bytes per segment (the layout's)
  bool log_lines = true;       // the per-layer log line
  bool bar = false;            // the live bar (stdout is a terminal)
};

class RunWatch {
 public:
  explicit RunWatch(const RunWatchStart& start);  // writes run_start, starts the bar
  ~RunWatch();                                     // stops the bar and erases it
  RunWatch(const RunWatch&) = delete;
  RunWatch& operator=(const RunWatch&) = delete;

  void on_layer(const LayerReport& layer);  // the log line, the segment's events, the bar's state
  // run_end with every rank's report (rank_reports_gather) and the run's seconds; stops the bar.
  void finish(const nlohmann::ordered_json& ranks, double seconds);

 private:
  void bar_loop();
  void bar_stop();
  RunWatchStart start_;
  ProgressLog log_;
  RunEta eta_;
  double started_at_;  // progress_time_now()
  std::mutex mutex_;   // the bar's state, read by its thread
  ProgressBarState state_;
  double state_time_ = 0.0;  // when state_.eta_s was measured
  std::atomic<bool> stop_{false};
  std::thread bar_;
};

}  // namespace dsv4::calib

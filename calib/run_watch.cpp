// run_watch.cpp: the log line, progress.jsonl and the live bar of rank 0 (see run_watch.h).
#include "calib/run_watch.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "calib/run_estimate.h"
#include "common/host_memory.h"
#include "common/log.h"
#include "dist/run_phase.h"

namespace dsv4::calib {
namespace {

// The terminal's columns (80 when it does not say).
int terminal_width() {
  winsize w{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 0) return w.ws_col;
  return 80;
}

}  // namespace

std::string progress_bar_text(const ProgressBarState& s, int width) {
  std::string rest = " " + std::to_string(s.done) + "/" + std::to_string(s.total) + " segments | " +
                     duration_text(s.elapsed_s) + " elapsed | eta " +
                     (s.eta_s >= 0 ? duration_text(s.eta_s) : std::string("..."));
  if (!s.phase.empty()) rest += " | " + s.phase;
  // The bar takes what the text leaves, 10 to 30 cells; the whole line stays under the width.
  const int cells = std::clamp(width - 1 - static_cast<int>(rest.size()) - 2, 10, 30);
  const int filled = s.total > 0 ? static_cast<int>(static_cast<int64_t>(cells) * std::clamp(s.done, 0, s.total) / s.total) : 0;
  std::string line = "[" + std::string(static_cast<size_t>(filled), '#') +
                     std::string(static_cast<size_t>(cells - filled), '.') + "]" + rest;
  if (width > 1 && static_cast<int>(line.size()) > width - 1) line.resize(static_cast<size_t>(width - 1));
  return line;
}

RunWatch::RunWatch(const RunWatchStart& start)
    : start_(start), log_(ProgressLog::open(start.out_dir + "/" + kProgressFile, start.resuming)),
      eta_(start.num_segments), started_at_(progress_time_now()) {
  log_.append_event({{"event", "run_start"},
               {"time", started_at_},
               {"num_segments", start.num_segments},
               {"first_segment", start.first_segment},
               {"resumed", start.resuming},
               {"world_size", start.world},
               {"device", start.device}});
  state_.done = start.first_segment;
  state_.total = start.num_segments;
  if (start_.bar) bar_ = std::thread([this] { bar_loop(); });
}

RunWatch::~RunWatch() { bar_stop(); }

void RunWatch::on_layer(const LayerReport& l) {
  const std::string eta_text = eta_.after(l);
  {  // before the log line, which redraws the bar under it
    std::lock_guard<std::mutex> lock(mutex_);
    state_.done = l.segment + 1;
    state_.eta_s = eta_.seconds_left();
    state_time_ = progress_time_now();
  }
  if (start_.log_lines) log_info("%s%s", layer_report_line(l, start_.num_segments).c_str(), eta_text.c_str());
  ProgressSegmentFacts f;
  f.num_segments = start_.num_segments;
  if (l.segment >= 0 && l.segment < static_cast<int>(start_.segment_bytes.size())) {
    f.bytes = start_.segment_bytes[static_cast<size_t>(l.segment)];
  }
  f.host_rss_peak_bytes = peak_rss_bytes();
  f.eta_seconds = eta_.seconds_left();
  log_.append(progress_segment_events(l, f));
}

void RunWatch::finish(const nlohmann::ordered_json& ranks, double seconds) {
  bar_stop();
  log_.append_event({{"event", "run_end"}, {"time", progress_time_now()}, {"seconds", seconds}, {"ranks", ranks}});
}

void RunWatch::bar_loop() {
  while (!stop_.load()) {
    ProgressBarState s;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      s = state_;
      // The ETA counts down between segments (never below zero while one is still running).
      if (s.eta_s >= 0) s.eta_s = std::max(0.0, s.eta_s - (progress_time_now() - state_time_));
    }
    s.elapsed_s = progress_time_now() - started_at_;
    s.phase = dist::RunPhase::current();
    log_status_set(progress_bar_text(s, terminal_width()));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

void RunWatch::bar_stop() {
  if (!bar_.joinable()) return;
  stop_.store(true);
  bar_.join();
  log_status_set("");
}

}  // namespace dsv4::calib

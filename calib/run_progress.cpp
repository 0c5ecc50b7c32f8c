// run_progress.cpp: progress.jsonl's events and its append-only file (see run_progress.h).
#include "calib/run_progress.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

#include "calib/run_journal.h"
#include "common/check.h"
#include "common/fs.h"

namespace dsv4::calib {

using nlohmann::ordered_json;

ordered_json expert_tokens_summary(const std::vector<int64_t>& t) {
  if (t.empty()) return ordered_json::object();
  const auto [lo, hi] = std::minmax_element(t.begin(), t.end());
  double sum = 0;
  int64_t dead = 0;
  for (int64_t n : t) sum += static_cast<double>(n), dead += n == 0 ? 1 : 0;
  return {{"min", *lo}, {"max", *hi}, {"mean", sum / static_cast<double>(t.size())}, {"dead", dead}};
}

std::vector<ordered_json> progress_segment_events(const LayerReport& l, const ProgressSegmentFacts& f) {
  const double now = progress_time_now();
  std::vector<ordered_json> events;
  // The same phases, in the same order, as the log line and the manifest (layer_report_json).
  const std::pair<const char*, double> phases[] = {
      {"decode", l.seconds_decode}, {"forward", l.seconds_forward}, {"reduce", l.seconds_reduce},
      {"solve", l.seconds_solve},   {"share", l.seconds_share},     {"wait", l.seconds_wait},
      {"write", l.seconds_write}};
  for (const auto& [phase, seconds] : phases) {
    events.push_back({{"event", "phase"}, {"time", now}, {"index", l.segment}, {"segment", l.name},
                      {"phase", phase}, {"seconds", seconds}});
  }
  ordered_json e = {{"event", "layer"}, {"time", now}, {"index", l.segment}, {"num_segments", f.num_segments}};
  const ordered_json report = layer_report_json(l);
  for (const auto& [k, v] : report.items()) e[k] = v;
  e["bytes"] = f.bytes;
  if (f.host_rss_peak_bytes) e["rank0_host_rss_peak_bytes"] = f.host_rss_peak_bytes;
  if (!l.expert_tokens.empty()) e["expert_tokens_summary"] = expert_tokens_summary(l.expert_tokens);
  if (f.eta_seconds >= 0) e["eta_seconds"] = f.eta_seconds;
  events.push_back(std::move(e));
  return events;
}

std::vector<ordered_json> progress_read(const std::string& path) {
  std::vector<ordered_json> events;
  const std::string text = read_file(path);
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) break;  // a fragment: its append did not finish
    ordered_json j = ordered_json::parse(text.begin() + static_cast<std::ptrdiff_t>(pos),
                                         text.begin() + static_cast<std::ptrdiff_t>(end), nullptr, false);
    if (j.is_object()) events.push_back(std::move(j));
    pos = end + 1;
  }
  return events;
}

ProgressLog ProgressLog::open(const std::string& path, bool resuming) {
  std::error_code ec;
  if (resuming && std::filesystem::exists(path, ec)) {
    // The journal's policy for a torn tail (run_journal.h): cut it off before the next append.
    const std::string text = read_file(path);
    const size_t last_newline = text.rfind('\n');
    JournalRead read;
    read.records = progress_read(path);  // for the repair's count of what remains
    read.file_bytes = text.size();
    read.valid_bytes = last_newline == std::string::npos ? 0 : last_newline + 1;
    journal_repair(path, read);
  } else {
    write_file_atomic(path, "");
  }
  return ProgressLog(path);
}

void ProgressLog::append(const std::vector<ordered_json>& events) {
  std::string text;
  for (const ordered_json& e : events) text += e.dump() + "\n";
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  DSV4_CHECK_IN("progress", fd >= 0, "cannot open %s to append to it: %s", path_.c_str(), std::strerror(errno));
  // One write of whole lines: a kill leaves at most a fragment at the end, which the next process cuts off.
  const ssize_t n = ::write(fd, text.data(), text.size());
  const bool ok = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  DSV4_CHECK_IN("progress", ok, "writing %s failed (%zu bytes; disk full or read-only?): %s", path_.c_str(),
                text.size(), std::strerror(err));
}

double progress_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace dsv4::calib

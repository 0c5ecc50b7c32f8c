// log.h: rank-aware logging (STYLE §5).
//
//   set_log_context({.rank = 3, .world = 8, .host = "node07", .device = 3});
//   log_info("layer %d/%d done", l, n);   // rank 0 only, to stdout
//   log_rank("bound to %s", bus_id);      // every rank: "[r3/8 node07 gpu3] bound to ..."
//   log_warn("expert %d saw 0 tokens", e);  // " !! " prefix, every rank, stderr
//   log_error("...");                       // " ## " prefix, every rank, stderr
// (warnings and errors name the rank only when there are several: " ## [r3/8 node07 gpu3] ...").
//
// The context is process-wide and set once by launch/ after MPI init; before that every process
// believes it is rank 0 of 1, which is right for single-process runs and tests.
#pragma once

#include <string>

namespace dsv4 {

struct LogContext {
  int rank = 0;
  int world = 1;
  std::string host;
  int device = -1;  // -1: no device bound
  // " (rank r/w host gpuD)" for multi-rank runs, "" otherwise; appended to Error messages.
  std::string suffix() const;
  // "[r3/8 node07 gpu3] " prefix for log_rank.
  std::string prefix() const;
  // prefix() for multi-rank runs, "" otherwise (log_warn, log_error, log_debug): on one process
  // "[r0/1 host]" says nothing, and a warning or error should open with the user's words.
  std::string speaker() const;
};

void set_log_context(const LogContext& context);
const LogContext& log_context();

// Verbosity: 0 = errors and warnings only, 1 = info (default), 2 = debug.
void set_log_level(int level);
int log_level();

// A status line kept under the log on a terminal (the run's progress bar, calib/run_watch.h): every
// log line first erases it ("\r\033[K" on stdout) and then draws it again below itself, so lines
// scroll above it and it is redrawn in place. "" removes it. Only for a stdout that is a terminal:
// the caller checks (isatty), since escapes in a log file or mpirun's forwarding are noise.
void log_status_set(const std::string& text);

void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_rank(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace dsv4

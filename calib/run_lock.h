// run_lock.h: one run at a time per output directory (issue 26). Two runs on the same --out
// would both append to its journal and write its shards; the second is refused, naming the
// first's host and pid.
//
//   RunLock::probe(out);                      // preflight: refuse early, create nothing
//   RunLock lock = RunLock::acquire(out);     // rank 0, before the run state is opened; held to the end
//
// The lock is OUT/.calib_run/lock: an flock(2) on it, held by the open descriptor, plus the
// holder's "host pid" inside, for the message. The kernel drops an flock when its process dies,
// so a run killed with -9 leaves only the file: the next run takes it over and logs whose it
// was. Where flock is unsupported (some network filesystems), the holder counts as gone when it
// was on this host and its pid no longer runs. The destructor removes the file while still
// holding the lock (a clean exit or an error leaves nothing behind).
// Tests: tests/calib/test_run_lock.cpp, tests/e2e/cli_hostile_inputs.sh.
#pragma once

#include <string>

namespace dsv4::calib {

class RunLock {
 public:
  static constexpr const char* kName = "lock";  // inside OUT/.calib_run

  // Takes the lock (creating OUT/.calib_run), or throws a user error naming the holder's host
  // and pid when a live run holds it.
  static RunLock acquire(const std::string& out);
  // The same refusal without taking the lock or creating anything.
  static void probe(const std::string& out);

  RunLock(RunLock&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) { other.fd_ = -1; }
  RunLock& operator=(RunLock&&) = delete;
  RunLock(const RunLock&) = delete;
  ~RunLock();

 private:
  RunLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

}  // namespace dsv4::calib

// run_lock.cpp: the output directory's run lock (see run_lock.h).
#include "calib/run_lock.h"

#include <cerrno>
#include <cstring>
#include <sstream>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"

namespace dsv4::calib {
namespace {

constexpr const char* kComponent = "writer";

struct Holder {
  std::string host;
  long pid = 0;  // 0: the file names no holder
};

std::string this_host() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

Holder holder_read(int fd) {
  char buf[512] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  Holder h;
  if (n > 0) std::istringstream(std::string(buf, static_cast<size_t>(n))) >> h.host >> h.pid;
  return h;
}

void holder_write(int fd, const std::string& path) {
  const std::string text = this_host() + " " + std::to_string(::getpid()) + "\n";
  const bool ok = ::ftruncate(fd, 0) == 0 &&
                  ::pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  DSV4_CHECK_IN(kComponent, ok, "cannot write the run lock %s: %s", path.c_str(), std::strerror(errno));
}

// Where flock cannot tell: a holder on this host is gone when its pid no longer runs; one on
// another host cannot be checked from here, so it counts as alive.
bool holder_alive(const Holder& h) {
  if (h.pid <= 0) return false;
  if (h.host != this_host()) return true;
  return ::kill(static_cast<pid_t>(h.pid), 0) == 0 || errno == EPERM;
}

// 1: locked; 0: another process holds it; -1: this filesystem has no flock.
int lock_try(int fd, const std::string& path) {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return 1;
  if (errno == EWOULDBLOCK) return 0;
  if (errno == ENOLCK || errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) return -1;
  DSV4_FAIL(kComponent, "flock of the run lock %s failed: %s", path.c_str(), std::strerror(errno));
}

// Whether `fd` is still the file at `path` (its last holder may have removed it meanwhile).
bool same_file(int fd, const std::string& path) {
  struct stat a {}, b {};
  return ::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

[[noreturn]] void refuse(const std::string& out, const std::string& path, const Holder& h) {
  DSV4_USER_FAIL(kComponent,
                 "--out %s is in use by another dsv4-calib run (host %s, pid %ld); two runs on one output directory "
                 "would overwrite each other's files: wait for that run to end, or choose another --out (if that run "
                 "is gone and this persists, remove %s)",
                 out.c_str(), h.host.empty() ? "unknown" : h.host.c_str(), h.pid, path.c_str());
}

std::string lock_path(const std::string& out) { return out + "/.calib_run/" + RunLock::kName; }

}  // namespace

void RunLock::probe(const std::string& out) {
  const std::string path = lock_path(out);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return;  // no lock file: no run holds it
  const int got = lock_try(fd, path);
  const Holder h = holder_read(fd);
  ::close(fd);  // drops the lock if this probe took it
  if (got == 0 || (got < 0 && holder_alive(h))) refuse(out, path, h);
}

RunLock RunLock::acquire(const std::string& out) {
  make_directories(out + "/.calib_run");
  const std::string path = lock_path(out);
  for (int attempt = 0;; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
    DSV4_CHECK_IN(kComponent, fd >= 0, "cannot open the run lock %s: %s", path.c_str(), std::strerror(errno));
    const int got = lock_try(fd, path);
    const Holder h = holder_read(fd);
    if (got == 0 || (got < 0 && holder_alive(h))) {
      ::close(fd);
      refuse(out, path, h);
    }
    if (!same_file(fd, path)) {  // locked a file its holder has just removed: lock the new one
      ::close(fd);
      DSV4_CHECK_IN(kComponent, attempt < 100, "the run lock %s keeps changing under this run", path.c_str());
      continue;
    }
    if (h.pid > 0) {
      log_warn("taking over the run lock %s left by a run that is gone (host %s, pid %ld)", path.c_str(),
               h.host.c_str(), h.pid);
    }
    holder_write(fd, path);
    return RunLock(path, fd);
  }
}

RunLock::~RunLock() {
  if (fd_ < 0) return;
  if (same_file(fd_, path_)) ::unlink(path_.c_str());  // removed while still held: no one can take it half-written
  ::close(fd_);
}

}  // namespace dsv4::calib

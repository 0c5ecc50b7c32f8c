// fs.cpp: crash-safe file output (AtomicFile) and the small POSIX file helpers around it.
// The sequence write temp -> fsync temp -> rename -> fsync directory is what makes a kill or a
// power cut leave either the old file or the complete new one: without the first fsync the
// rename can reach the disk before the data (a zero-length file after a crash on ext4/xfs), and
// without the directory fsync the rename itself may be lost.
#include "common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "common/check.h"

namespace dsv4 {
namespace {

constexpr const char* kComponent = "fs";

std::string errno_text(int err) { return std::string(std::strerror(err)); }

// The directory that holds `path` ("." for a bare file name), which is what commit() must fsync
// for the rename to be durable.
std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void close_quietly(int fd) {
  // close() on Linux releases the descriptor even when it reports EINTR, so never retry it.
  if (fd >= 0) ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  DSV4_CHECK_IN(kComponent, !path_.empty(), "AtomicFile needs a non-empty path");
  // The pid keeps two processes (two ranks sharing a file system) from clobbering each
  // other's temporary; the final rename decides which complete file wins.
  temp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    temp_path_.clear();  // nothing was created, so the destructor must not unlink anything
    DSV4_FAIL(kComponent, "cannot create temporary file for '%s': open('%s.tmp.%d'): %s",
              path_.c_str(), path_.c_str(), static_cast<int>(::getpid()),
              errno_text(err).c_str());
  }
}

AtomicFile::~AtomicFile() {
  // temp_path_ is cleared by commit(); anything left here is an abandoned, incomplete file.
  close_quietly(fd_);
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  DSV4_CHECK_IN(kComponent, fd_ >= 0, "write to '%s' after commit() or a failed commit",
                path_.c_str());
  const char* p = static_cast<const char*>(data);
  size_t left = bytes;
  while (left > 0) {
    // Linux writes at most 0x7ffff000 bytes per call, and a signal can cut a write short, so
    // loop until everything is out.
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      DSV4_FAIL(kComponent, "write to '%s' failed after %llu bytes: %s", temp_path_.c_str(),
                static_cast<unsigned long long>(bytes_written_), errno_text(errno).c_str());
    }
    if (n == 0) {
      DSV4_FAIL(kComponent, "write to '%s' made no progress after %llu bytes",
                temp_path_.c_str(), static_cast<unsigned long long>(bytes_written_));
    }
    p += n;
    left -= static_cast<size_t>(n);
    bytes_written_ += static_cast<uint64_t>(n);
  }
  // Start the kernel's writeback of every 64 MiB written (it does not wait), so commit()'s fsync
  // finds most of a multi-GB shard on disk already instead of flushing all of it at once. A
  // filesystem that refuses the hint loses nothing: fsync still makes the file durable.
  if (bytes_written_ - writeback_started_ >= kWritebackChunk) {
    ::sync_file_range(fd_, static_cast<off_t>(writeback_started_), static_cast<off_t>(bytes_written_ - writeback_started_),
                      SYNC_FILE_RANGE_WRITE);
    writeback_started_ = bytes_written_;
  }
}

void AtomicFile::commit() {
  DSV4_CHECK_IN(kComponent, fd_ >= 0, "commit() of '%s' called twice or after a failure",
                path_.c_str());
  if (::fsync(fd_) != 0) {
    DSV4_FAIL(kComponent, "fsync of '%s' failed: %s", temp_path_.c_str(),
              errno_text(errno).c_str());
  }
  const int fd = fd_;
  fd_ = -1;
  // close() can report a deferred write error (NFS), which would otherwise be lost.
  if (::close(fd) != 0 && errno != EINTR) {
    DSV4_FAIL(kComponent, "close of '%s' failed: %s", temp_path_.c_str(),
              errno_text(errno).c_str());
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    DSV4_FAIL(kComponent, "rename '%s' -> '%s' failed: %s", temp_path_.c_str(), path_.c_str(),
              errno_text(errno).c_str());
  }
  temp_path_.clear();
  fsync_directory(parent_directory(path_));
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicFile file(path);
  file.write(content.data(), content.size());
  file.commit();
}

namespace {

// What a path that is not a regular file is instead (a stream reader would block on a FIFO,
// socket or device, or read it only once).
const char* not_regular_kind(mode_t mode) { return S_ISDIR(mode) ? "a directory" : "a FIFO, socket or device"; }

}  // namespace

void regular_file_require(const std::string& path, const std::string& what, const std::string& why) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return;
  DSV4_USER_FAIL(kComponent, "%s (%s): not a regular file (%s); expected a regular file%s%s", path.c_str(), what.c_str(),
                 not_regular_kind(st.st_mode), why.empty() ? "" : ": ", why.c_str());
}

RegularFileFd regular_file_open(const std::string& path, const char* expected) {
  RegularFileFd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f.fd < 0) DSV4_USER_FAIL(kComponent, "cannot open '%s': %s", path.c_str(), errno_text(errno).c_str());
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    const int err = errno;
    close_quietly(f.fd);
    DSV4_FAIL(kComponent, "fstat of '%s' failed: %s", path.c_str(), errno_text(err).c_str());
  }
  if (!S_ISREG(st.st_mode)) {
    close_quietly(f.fd);
    DSV4_USER_FAIL(kComponent, "%s: not a regular file (%s); expected %s", path.c_str(), not_regular_kind(st.st_mode),
                   expected);
  }
  f.bytes = static_cast<uint64_t>(st.st_size);
  return f;
}

std::string read_file(const std::string& path) {
  const RegularFileFd f = regular_file_open(path, "a file");
  const int fd = f.fd;
  std::string out;
  if (f.bytes > 0) out.reserve(static_cast<size_t>(f.bytes));
  // Read to EOF rather than trusting st_size: /proc files report 0 and files may grow.
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close_quietly(fd);
      DSV4_FAIL(kComponent, "read of '%s' failed after %zu bytes: %s", path.c_str(), out.size(),
                errno_text(err).c_str());
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close_quietly(fd);
  return out;
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    DSV4_FAIL(kComponent, "cannot open directory '%s' to fsync it: %s", dir.c_str(),
              errno_text(errno).c_str());
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    close_quietly(fd);
    // Some file systems (certain FUSE and network mounts) cannot fsync a directory and say so
    // with EINVAL; the rename is as durable there as it can be made, so that is not an error.
    if (err == EINVAL) return;
    DSV4_FAIL(kComponent, "fsync of directory '%s' failed: %s", dir.c_str(),
              errno_text(err).c_str());
  }
  close_quietly(fd);
}

void make_directories(const std::string& dir) {
  DSV4_CHECK_IN(kComponent, !dir.empty(), "make_directories needs a non-empty path");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    DSV4_FAIL(kComponent, "cannot create directory '%s': %s", dir.c_str(),
              ec.message().c_str());
  }
  // create_directories succeeds silently when the path exists, even as a regular file.
  if (!std::filesystem::is_directory(dir, ec)) {
    DSV4_FAIL(kComponent, "cannot create directory '%s': a non-directory is in the way",
              dir.c_str());
  }
}

std::string nearest_existing_path(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) p = path;
  while (!std::filesystem::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  return p.string();
}

int64_t filesystem_available_bytes(const std::string& path) {
  std::error_code ec;
  const std::filesystem::space_info si = std::filesystem::space(nearest_existing_path(path), ec);
  return ec ? -1 : static_cast<int64_t>(si.available);
}

}  // namespace dsv4

// fifo_guard.h: a FIFO for tests of code that must refuse one without blocking (issue 26).
// Opening a FIFO for reading blocks until a writer comes; code that forgets O_NONBLOCK would hang
// the test. FifoGuard makes the FIFO and, if the code under test is still blocked after
// `unblock_after`, opens the write end once, so such code returns (late) and the test fails on
// its elapsed time instead of hanging.
//
//   FifoGuard fifo(dir + "/model.safetensors");
//   EXPECT_THROW(SafetensorsFile::open(fifo.path()), Error);
//   EXPECT_LT(fifo.elapsed(), std::chrono::seconds(2));
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace dsv4::testing {

class FifoGuard {
 public:
  explicit FifoGuard(std::string path, std::chrono::seconds unblock_after = std::chrono::seconds(5))
      : path_(std::move(path)), start_(std::chrono::steady_clock::now()) {
    EXPECT_EQ(::mkfifo(path_.c_str(), 0644), 0) << "mkfifo " << path_;
    writer_ = std::thread([this, unblock_after] {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, unblock_after, [this] { return done_; })) return;
      const int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK);  // a blocked reader exists: succeeds
      if (fd >= 0) ::close(fd);
    });
  }
  ~FifoGuard() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    writer_.join();
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::chrono::steady_clock::duration elapsed() const { return std::chrono::steady_clock::now() - start_; }

 private:
  std::string path_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread writer_;
};

}  // namespace dsv4::testing

// test_run_lock.cpp: one run per output directory (calib/run_lock.h). The properties that matter:
// while a run holds the lock a second is refused naming the holder's host and pid; a lock left by
// a run that is gone (killed: the file remains, the flock does not) is taken over; a run that ends
// leaves no lock behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "calib/run_lock.h"
#include "common/check.h"
#include "common/fs.h"
#include "tests/scratch_dir.h"

namespace dsv4::calib {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string host() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string lock_file(const std::string& out) { return out + "/.calib_run/" + RunLock::kName; }

template <typename F>
std::string user_error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_TRUE(e.user()) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a refusal";
  return "";
}

TEST(RunLock, HolderWrittenAndRemovedAtTheEnd) {
  const std::string out = dsv4::testing::scratch_path("lock_release");
  {
    RunLock lock = RunLock::acquire(out);
    EXPECT_EQ(read_file(lock_file(out)), host() + " " + std::to_string(::getpid()) + "\n");
  }
  EXPECT_FALSE(fs::exists(lock_file(out))) << "a run that ended left its lock";
  EXPECT_TRUE(fs::is_directory(out + "/.calib_run"));
}

TEST(RunLock, SecondRunRefusedNamingHostAndPid) {
  const std::string out = dsv4::testing::scratch_path("lock_held");
  RunLock first = RunLock::acquire(out);
  const std::string holder = "host " + host() + ", pid " + std::to_string(::getpid());
  EXPECT_THAT(user_error_of([&] { RunLock::acquire(out); }),
              AllOf(HasSubstr("--out " + out + " is in use by another dsv4-calib run"), HasSubstr(holder)));
  EXPECT_THAT(user_error_of([&] { RunLock::probe(out); }), HasSubstr(holder));
  EXPECT_EQ(read_file(lock_file(out)), host() + " " + std::to_string(::getpid()) + "\n") << "a refusal changed the lock";
}

TEST(RunLock, StaleLockOfADeadProcessIsTakenOver) {
  const std::string out = dsv4::testing::scratch_path("lock_stale");
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // its pid now names no process
  make_directories(out + "/.calib_run");
  write_file_atomic(lock_file(out), host() + " " + std::to_string(child) + "\n");  // as a kill -9 leaves it
  EXPECT_NO_THROW(RunLock::probe(out));
  RunLock lock = RunLock::acquire(out);
  EXPECT_EQ(read_file(lock_file(out)), host() + " " + std::to_string(::getpid()) + "\n");
}

TEST(RunLock, ProbeCreatesNothing) {
  const std::string out = dsv4::testing::scratch_path("lock_probe");
  EXPECT_NO_THROW(RunLock::probe(out));
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace dsv4::calib

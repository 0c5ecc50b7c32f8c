// scratch_dir.h: one scratch directory per test process under GoogleTest's TempDir(), removed
// when the process exits. ctest runs each test in its own process, in parallel, so the directory
// carries the pid; removing it at exit keeps a suite run from leaving GBs of checkpoints behind
// (a CI disk filled up that way). DSV4_KEEP_TEST_DIRS=1 keeps it for debugging.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

namespace dsv4::testing {

// "<TempDir>/dsv4_test_<pid>", created on first use.
inline const std::string& process_scratch_root() {
  struct Root {
    std::string path;
    ~Root() {
      const char* keep = std::getenv("DSV4_KEEP_TEST_DIRS");
      if (keep != nullptr && std::string(keep) == "1") return;
      std::error_code ec;  // nothing to report from an exiting process
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Root root = [] {
    Root r{::testing::TempDir() + "dsv4_test_" + std::to_string(::getpid())};
    std::filesystem::create_directories(r.path);
    return r;
  }();
  return root.path;
}

// A path under the process root, emptied: "<root>/<name>" does not exist on return.
inline std::string scratch_path(const std::string& name) {
  const std::string p = process_scratch_root() + "/" + name;
  std::filesystem::remove_all(p);
  return p;
}

}  // namespace dsv4::testing

// fuzz_util.h: what every harness in tests/fuzz/ shares: the expected-error rule and a private
// scratch directory for the entry points that only take a path.
//
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
//     dsv4::fuzz::expect_errors([&] { parse(dsv4::fuzz::text(data, size)); });
//     return 0;
//   }
//
// A dsv4::Error is how the tool answers bad input (it names the file and key); every other
// exception escapes expect_errors, so libFuzzer reports it as an uncaught exception (a finding),
// as it does crashes, ASan/UBSan reports and timeouts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "common/check.h"
#include "common/log.h"

namespace dsv4::fuzz {

inline std::string_view text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

template <typename F>
void expect_errors(F&& parse) {
  try {
    parse();
  } catch (const dsv4::Error&) {
    // the expected answer to a bad input
  }
}

// A directory of this process's own under $TMPDIR (or /tmp), made once; harnesses overwrite
// fixed names in it, so a run leaves one small directory behind, not one file per input.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/dsv4_fuzz_XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    return templ;
  }();
  return dir;
}

inline void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) std::abort();  // a full /tmp is the harness's problem, not a finding
}

// Warnings (a repaired journal, a skipped record) would flood the fuzzer's output.
inline void quiet_logs() { set_log_level(0); }

}  // namespace dsv4::fuzz

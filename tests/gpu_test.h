// gpu_test.h: the skip rule of every GPU test. Without a device the test is skipped, unless
// DSV4_REQUIRE_GPU=1 (set on GPU machines by bench/gpu_check.sh), which makes it fail, so a
// broken driver cannot turn the suite green. GPU tests draw their inputs from fresh_rng(), seeded
// from the OS each run, so repeated runs compare the kernels on new data (DSV4_TEST_SEED replays one).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "common/device.h"

#define DSV4_REQUIRE_GPU_OR_SKIP()                                                        \
  do {                                                                                    \
    if (::dsv4::device_count() == 0) {                                                    \
      const char* require = std::getenv("DSV4_REQUIRE_GPU");                              \
      if (require != nullptr && std::string(require) == "1") {                            \
        FAIL() << "DSV4_REQUIRE_GPU=1 but no CUDA device is usable";                      \
      }                                                                                   \
      GTEST_SKIP() << "no CUDA device";                                                   \
    }                                                                                     \
  } while (0)

// Seeded from the OS, or from DSV4_TEST_SEED to replay a failure: the seed is printed once per
// test process, so a failing log carries what reproduces it. The tests of one process draw from
// one sequence, so a replay runs the same tests (ctest runs each test in a process of its own).
inline std::mt19937& fresh_rng() {
  static std::mt19937 g([] {
    const char* fixed = std::getenv("DSV4_TEST_SEED");
    const unsigned seed = fixed != nullptr ? static_cast<unsigned>(std::strtoul(fixed, nullptr, 10)) : std::random_device{}();
    std::printf("fresh_rng seed %u (DSV4_TEST_SEED=%u replays it)\n", seed, seed);
    return seed;
  }());
  return g;
}

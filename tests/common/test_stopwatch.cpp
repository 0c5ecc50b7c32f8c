// test_stopwatch.cpp: seconds_since (common/stopwatch.h) measures the steady clock in seconds.
#include <gtest/gtest.h>

#include <chrono>

#include "common/stopwatch.h"

namespace dsv4 {
namespace {

TEST(Stopwatch, CountsSecondsFromTheGivenInstant) {
  const auto an_hour_ago = SteadyClock::now() - std::chrono::hours(1);
  const double s = seconds_since(an_hour_ago);
  EXPECT_GE(s, 3600.0);
  EXPECT_LT(s, 3660.0) << "a steady clock does not jump a minute within one call";
  EXPECT_GE(seconds_since(SteadyClock::now()), 0.0);
}

}  // namespace
}  // namespace dsv4

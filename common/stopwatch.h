// stopwatch.h: wall-clock seconds since a steady-clock instant, for the phase times of the
// pipeline's reports (decode, forward, reduce, solve, share, wait, write).
//
//   const auto t = SteadyClock::now();
//   ... work ...
//   report.seconds_solve = seconds_since(t);
//
// Tests: tests/common/test_stopwatch.cpp.
#pragma once

#include <chrono>

namespace dsv4 {

using SteadyClock = std::chrono::steady_clock;

inline double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

}  // namespace dsv4

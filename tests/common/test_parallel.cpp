// test_parallel.cpp: parallel_for runs every index exactly once and rethrows item errors.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "common/parallel.h"

namespace dsv4 {
namespace {

TEST(Parallel, EveryIndexRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    std::vector<std::atomic<int>> hits(1000);
    parallel_for(hits.size(), threads, [&](size_t i) { hits[i]++; });
    for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << "i=" << i << " threads=" << threads;
  }
  parallel_for(0, 4, [](size_t) { FAIL() << "no items"; });
}

TEST(Parallel, FirstErrorIsRethrownAfterJoin) {
  std::atomic<int> ran{0};
  EXPECT_THROW(parallel_for(100, 4,
                            [&](size_t i) {
                              ran++;
                              if (i == 7) throw std::runtime_error("item 7");
                            }),
               std::runtime_error);
  EXPECT_GE(ran.load(), 8);
  EXPECT_EQ(parallel_threads(5), 5);
  EXPECT_GE(parallel_threads(0), 1);
}

}  // namespace
}  // namespace dsv4

// test_bandwidth.cpp: the all-reduce sweep on one rank (the mpirun runs are in
// tests/e2e/cli_preflight.sh): sizes double from 1 MiB to the cap, rates follow from bytes and
// time, busbw is 0 for one rank, the text says what one rank cannot measure; device buffers need
// a CUDA build.
#include <gtest/gtest.h>

#include "common/check.h"
#include "common/device.h"
#include "dist/bandwidth.h"
#include "dist/communicator.h"

namespace dsv4::dist {
namespace {

TEST(AllReduceSweep, DoublesFromOneMibToTheCapOnOneRank) {
  auto comm = communicator_self();
  const AllReduceSweep s = all_reduce_sweep(*comm, (8u << 20) + 5, 2, false);
  EXPECT_EQ(s.backend, "self");
  EXPECT_EQ(s.world, 1);
  ASSERT_EQ(s.points.size(), 4u);  // 1, 2, 4, 8 MiB
  for (size_t i = 0; i < s.points.size(); ++i) {
    EXPECT_EQ(s.points[i].bytes, size_t{1} << (20 + i));
    EXPECT_GE(s.points[i].seconds, 0.0);
    if (s.points[i].seconds > 0) {
      EXPECT_DOUBLE_EQ(s.points[i].algbw_gbs, static_cast<double>(s.points[i].bytes) / s.points[i].seconds / 1e9);
    }
    EXPECT_EQ(s.points[i].busbw_gbs, 0.0);
    EXPECT_GE(s.points[i].reduce_seconds, 0.0);
    if (s.points[i].reduce_seconds > 0) {
      EXPECT_DOUBLE_EQ(s.points[i].reduce_algbw_gbs,
                       static_cast<double>(s.points[i].bytes) / s.points[i].reduce_seconds / 1e9);
    }
  }
  const std::string text = all_reduce_sweep_text(s);
  EXPECT_NE(text.find("one rank"), std::string::npos) << text;
  EXPECT_NE(text.find("8388608"), std::string::npos) << text;
  EXPECT_NE(text.find("reduce algbw"), std::string::npos) << text;
  // A cap below 1 MiB still measures 1 MiB; no timed iteration is an error.
  EXPECT_EQ(all_reduce_sweep(*comm, 1000, 1, false).points.size(), 1u);
  EXPECT_THROW(all_reduce_sweep(*comm, 1u << 20, 0, false), Error);
  if (!built_with_cuda()) {
    EXPECT_THROW(all_reduce_sweep(*comm, 1u << 20, 1, true), Error);
  }
}

}  // namespace
}  // namespace dsv4::dist

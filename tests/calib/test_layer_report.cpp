// test_layer_report.cpp: RunEta, the time left after each reported segment: the segments after
// the last one reported at the mean time of those this process reported, nothing after the last.
#include <gtest/gtest.h>

#include "calib/layer_report.h"

namespace dsv4::calib {
namespace {

LayerReport segment(int index, double seconds) {
  LayerReport l;
  l.segment = index;
  l.seconds = seconds;
  return l;
}

TEST(RunEta, ProjectsTheMeanSegmentTimeOverTheSegmentsLeft) {
  RunEta eta(6);
  EXPECT_EQ(eta.after(segment(0, 2.0)), "; 5 left, eta 10.0 s");
  EXPECT_EQ(eta.after(segment(1, 4.0)), "; 4 left, eta 12.0 s");  // mean 3 s
  EXPECT_EQ(eta.after(segment(5, 3.0)), "");
}

TEST(RunEta, AResumedRunCountsOnlyTheSegmentsItComputed) {
  RunEta eta(10);
  EXPECT_EQ(eta.after(segment(7, 60.0)), "; 2 left, eta 2.0 min");
}

}  // namespace
}  // namespace dsv4::calib

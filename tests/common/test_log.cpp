// test_log.cpp: log_info speaks on rank 0 only, log_rank/log_warn/log_error on every rank with
// the "[rR/W host gpuD]" prefix (warnings and errors only when there are several ranks) and the
// " !! " / " ## " markers, and verbosity filters info/debug; the status line (the progress bar)
// is erased before each line and drawn again after it, and removed by "".
#include <gtest/gtest.h>

#include <string>

#include "common/log.h"

namespace dsv4 {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = log_context(), saved_level_ = log_level(); }
  void TearDown() override { set_log_context(saved_), set_log_level(saved_level_); }
  LogContext saved_;
  int saved_level_ = 1;
};

TEST_F(LogTest, InfoOnlyOnRankZeroRankLinesEverywhere) {
  set_log_context({.rank = 0, .world = 8, .host = "node07", .device = 0});
  ::testing::internal::CaptureStdout();
  log_info("layer %d/%d", 12, 43);
  log_rank("bound");
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "layer 12/43\n[r0/8 node07 gpu0] bound\n");

  set_log_context({.rank = 3, .world = 8, .host = "node07", .device = 3});
  ::testing::internal::CaptureStdout();
  log_info("layer %d/%d", 12, 43);  // silent off rank 0
  log_rank("bound");
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "[r3/8 node07 gpu3] bound\n");
}

TEST_F(LogTest, WarningsAndErrorsGoToStderrWithDistinctMarkers) {
  set_log_context({.rank = 5, .world = 8, .host = "h", .device = -1});
  ::testing::internal::CaptureStderr();
  log_warn("expert %d saw 0 tokens", 17);
  log_error("boom");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), " !! [r5/8 h] expert 17 saw 0 tokens\n ## [r5/8 h] boom\n");
}

// One process: "[r0/1 host]" would only push the user's words to the right (issue 28).
TEST_F(LogTest, SingleProcessWarningsAndErrorsNameNoRank) {
  set_log_context({.rank = 0, .world = 1, .host = "h", .device = 0});
  ::testing::internal::CaptureStderr();
  log_warn("careful");
  log_error("no such file");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), " !! careful\n ## no such file\n");
  ::testing::internal::CaptureStdout();
  log_rank("bound");  // a rank line asked for by name keeps its tag
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "[r0/1 h gpu0] bound\n");
}

TEST_F(LogTest, VerbosityFiltersInfoAndDebugButNeverWarnings) {
  set_log_context({});
  set_log_level(0);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  log_info("hidden");
  log_debug("hidden");
  log_warn("shown");
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), " !! shown\n");
  set_log_level(2);
  ::testing::internal::CaptureStdout();
  log_debug("detail %s", "x");
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "detail x\n");
  EXPECT_EQ(LogContext{}.suffix(), "");  // single-process errors carry no rank suffix
}

TEST_F(LogTest, StatusLineStaysUnderTheLines) {
  set_log_context({.rank = 0, .world = 1, .host = "", .device = -1});
  ::testing::internal::CaptureStdout();
  log_status_set("[##..] 1/2");
  log_info("layer 1");
  log_status_set("[####] 2/2");
  log_status_set("[####] 2/2");  // unchanged: nothing drawn
  log_status_set("");
  log_info("done");
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "\r\033[K[##..] 1/2"             // drawn
            "\r\033[Klayer 1\n[##..] 1/2"    // erased, the line, drawn again under it
            "\r\033[K[####] 2/2"             // redrawn in place
            "\r\033[K"                        // removed
            "done\n");                          // plain lines again
}

}  // namespace
}  // namespace dsv4

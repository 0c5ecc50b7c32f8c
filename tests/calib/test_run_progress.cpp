// test_run_progress.cpp: progress.jsonl (calib/run_progress.h): a segment's events carry the
// report's phases and layer_report_json's fields; a resumed log cuts a torn last line off and
// continues the file, a new one starts it over; and the live bar's text (calib/run_watch.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "calib/run_progress.h"
#include "calib/run_watch.h"
#include "common/fs.h"
#include "tests/scratch_dir.h"

namespace dsv4::calib {
namespace {

using nlohmann::ordered_json;

LayerReport report_of(int segment) {
  LayerReport l;
  l.segment = segment;
  l.name = "layers." + std::to_string(segment - 1);
  l.seconds = 3.0;
  l.seconds_decode = 0.5, l.seconds_forward = 1.0, l.seconds_solve = 1.25, l.seconds_write = 0.75;
  l.modules.push_back({"layers.0.ffn.experts.0.w1", SolveMethod::kGptq, 2.0, 0.01, 0.04, 0.01,
                       quant::GptqFallback::kNone, 64, 0.1});
  l.expert_tokens = {0, 10, 30, 0};
  return l;
}

TEST(RunProgress, SegmentEventsArePhasesThenTheLayer) {
  const std::vector<ordered_json> ev = progress_segment_events(report_of(2), {.num_segments = 6, .bytes = 1234,
                                                                              .host_rss_peak_bytes = 99,
                                                                              .eta_seconds = 12.0});
  ASSERT_EQ(ev.size(), 8u);
  const char* phases[] = {"decode", "forward", "reduce", "solve", "share", "wait", "write"};
  const double seconds[] = {0.5, 1.0, 0.0, 1.25, 0.0, 0.0, 0.75};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(ev[i]["event"], "phase") << i;
    EXPECT_EQ(ev[i]["phase"], phases[i]) << i;
    EXPECT_EQ(ev[i]["seconds"].get<double>(), seconds[i]) << phases[i];
    EXPECT_EQ(ev[i]["index"], 2);
  }
  const ordered_json& l = ev[7];
  EXPECT_EQ(l["event"], "layer");
  EXPECT_EQ(l["segment"], "layers.1");
  EXPECT_EQ(l["num_segments"], 6);
  EXPECT_EQ(l["bytes"], 1234);
  EXPECT_EQ(l["rank0_host_rss_peak_bytes"], 99);
  EXPECT_EQ(l["eta_seconds"].get<double>(), 12.0);
  EXPECT_EQ(l["mean_rel_error"].get<double>(), 0.01);   // from layer_report_json
  EXPECT_EQ(l["mean_rtn_rel_error"].get<double>(), 0.04);
  EXPECT_EQ(l["modules"][0]["loss"].get<double>(), 2.0);
  EXPECT_EQ(l["expert_tokens_summary"].dump(), R"({"min":0,"max":30,"mean":10.0,"dead":2})");
}

TEST(RunProgress, AResumedLogCutsATornLineAndContinues) {
  const std::string dir = testing::scratch_path("progress");
  make_directories(dir);
  const std::string path = dir + "/" + kProgressFile;
  {
    ProgressLog log = ProgressLog::open(path, false);
    log.append(progress_segment_events(report_of(1), {.num_segments = 3}));
  }
  ASSERT_EQ(progress_read(path).size(), 8u);
  {
    std::ofstream f(path, std::ios::app);
    f << R"({"event":"layer","ind)";  // a kill mid-append
  }
  EXPECT_EQ(progress_read(path).size(), 8u) << "the fragment is skipped by readers";
  {
    ProgressLog log = ProgressLog::open(path, true);
    log.append_event({{"event", "run_start"}});
  }
  const std::string text = read_file(path);
  EXPECT_EQ(text.find("\"ind)"), std::string::npos) << "the fragment is cut off before the append";
  const std::vector<ordered_json> ev = progress_read(path);
  ASSERT_EQ(ev.size(), 9u);
  EXPECT_EQ(ev.back()["event"], "run_start");
  EXPECT_EQ(text.back(), '\n');
  ProgressLog::open(path, false);  // a new run (or --restart) starts the file over
  EXPECT_TRUE(progress_read(path).empty());
}

TEST(RunProgress, BarTextShowsDoneEtaAndPhaseWithinTheWidth) {
  ProgressBarState s{.done = 3, .total = 12, .elapsed_s = 30.0, .eta_s = 90.0, .phase = "layers.2 solve"};
  const std::string line = progress_bar_text(s, 100);
  EXPECT_EQ(line, "[#######.......................] 3/12 segments | 30.0 s elapsed | eta 1.5 min | layers.2 solve");
  EXPECT_LT(line.size(), 100u);
  s.eta_s = -1, s.phase = "", s.done = 0;
  EXPECT_EQ(progress_bar_text(s, 100), "[..............................] 0/12 segments | 30.0 s elapsed | eta ...");
  s.done = 12;
  EXPECT_EQ(progress_bar_text(s, 40).size(), 39u) << "a narrow terminal never wraps the line";
  EXPECT_EQ(progress_bar_text(s, 40).substr(0, 12), "[##########]");
}

}  // namespace
}  // namespace dsv4::calib

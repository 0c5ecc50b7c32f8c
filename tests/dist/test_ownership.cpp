// test_ownership.cpp: the ownership plan, local ranks, the single-process communicator and the
// run phase with its fault injection (no MPI launch needed).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "common/check.h"
#include "dist/communicator.h"
#include "dist/ownership.h"
#include "dist/run_phase.h"
#include "dist/topology.h"

namespace dsv4::dist {
namespace {

TEST(Ownership, EqualCostsSpreadEvenlyInIndexOrder) {
  const std::vector<double> cost(10, 1.0);
  const std::vector<int> owner = ownership_assign(cost, 4);
  EXPECT_EQ(owner, (std::vector<int>{0, 1, 2, 3, 0, 1, 2, 3, 0, 1}));
}

TEST(Ownership, LargestFirstBalancesLoad) {
  // One big module and many small ones: the big one alone on a rank, the small ones elsewhere.
  std::vector<double> cost = {1, 1, 1, 1, 1, 1, 6};
  const std::vector<int> owner = ownership_assign(cost, 2);
  EXPECT_EQ(owner[6], 0);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(owner[static_cast<size_t>(i)], 1) << i;
}

TEST(Ownership, DeterministicAndEveryModuleOwnedByAValidRank) {
  std::vector<double> cost;
  for (int i = 0; i < 300; ++i) cost.push_back(solve_cost(64 + (i % 7) * 32, 128 + (i % 5) * 64, i % 3 != 0));
  for (int world : {1, 2, 3, 8}) {
    const std::vector<int> a = ownership_assign(cost, world), b = ownership_assign(cost, world);
    EXPECT_EQ(a, b);
    std::vector<double> load(static_cast<size_t>(world), 0.0);
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_GE(a[i], 0);
      ASSERT_LT(a[i], world);
      load[static_cast<size_t>(a[i])] += cost[i];
    }
    // LPT: the most loaded rank exceeds the mean by at most the largest single cost.
    const double mean = std::accumulate(load.begin(), load.end(), 0.0) / world;
    EXPECT_LE(*std::max_element(load.begin(), load.end()), mean + *std::max_element(cost.begin(), cost.end()));
  }
  EXPECT_THROW(ownership_assign(cost, 0), Error);
}

TEST(Ownership, GptqCostsMoreThanRoundingAndGrowsWithColumns) {
  EXPECT_GT(solve_cost(256, 512, true), solve_cost(256, 512, false));
  EXPECT_GT(solve_cost(256, 1024, true), 4 * solve_cost(256, 512, true));
}

TEST(Topology, LocalRankCountsLowerRanksOnTheSameHost) {
  const std::vector<uint64_t> hosts = {7, 9, 7, 7, 9};
  EXPECT_EQ(local_rank_of(hosts, 0), 0);
  EXPECT_EQ(local_rank_of(hosts, 1), 0);
  EXPECT_EQ(local_rank_of(hosts, 2), 1);
  EXPECT_EQ(local_rank_of(hosts, 3), 2);
  EXPECT_EQ(local_rank_of(hosts, 4), 1);
  EXPECT_THROW(local_rank_of(hosts, 5), Error);
}

TEST(SelfCommunicator, CollectivesAreTheIdentity) {
  auto comm = communicator_self();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world(), 1);
  std::vector<float> v = {1.5f, -2.0f};
  comm->reduce(v.data(), v.size(), ElemType::kF32, ReduceOp::kSum, 0);
  comm->all_reduce(v.data(), v.size(), ElemType::kF32, ReduceOp::kMax);
  EXPECT_EQ(v, (std::vector<float>{1.5f, -2.0f}));
  int64_t x = 42, y = 0;
  comm->all_gather(&x, sizeof x, &y);
  EXPECT_EQ(y, 42);
  EXPECT_EQ(comm->all_gather_strings("abc"), (std::vector<std::string>{"abc"}));
  std::string s = "payload";
  comm->broadcast_string(s, 0);
  EXPECT_EQ(s, "payload");
  EXPECT_THROW(comm->broadcast(&x, sizeof x, 1), Error);
}

TEST(RunPhase, DescribesSegmentAndPhase) {
  RunPhase::set("layers.7", "reduce");
  const std::string d = RunPhase::describe();
  EXPECT_NE(d.find("layers.7 reduce"), std::string::npos) << d;
  EXPECT_NE(d.find("s in phase"), std::string::npos) << d;
}

TEST(RunPhase, DescribesTheBackgroundWriterUntilCleared) {
  RunPhase::set("layers.8", "solve");
  RunPhase::set_background("layers.7", "write");
  std::string d = RunPhase::describe();
  EXPECT_NE(d.find("layers.8 solve"), std::string::npos) << d;
  EXPECT_NE(d.find("writing in the background: layers.7 write"), std::string::npos) << d;
  RunPhase::clear_background();
  d = RunPhase::describe();
  EXPECT_EQ(d.find("background"), std::string::npos) << d;
  EXPECT_NE(d.find("layers.8 solve"), std::string::npos) << d;
}

// The DSV4_FAULT spec as launch/ hands it down: checked when set; `throw` fires only on the
// named segment and phase, on this rank (0 in a test process) or "*", for the main and the
// background phase; "" clears it.
TEST(RunPhase, FaultSpecIsCheckedAndFiresOnlyWhereNamed) {
  EXPECT_THROW(RunPhase::set_fault("explode@0@layers.1@solve"), Error);
  EXPECT_THROW(RunPhase::set_fault("kill@0@layers.1"), Error);
  RunPhase::set_fault("throw@*@layers.3@solve");
  EXPECT_NO_THROW(RunPhase::set("layers.3", "reduce"));
  EXPECT_NO_THROW(RunPhase::set("layers.4", "solve"));
  try {
    RunPhase::set("layers.3", "solve");
    ADD_FAILURE() << "the fault did not fire at layers.3 solve";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("injected error at layers.3 solve"), std::string::npos) << e.what();
  }
  EXPECT_THROW(RunPhase::set_background("layers.3", "solve"), Error);
  RunPhase::clear_background();
  RunPhase::set_fault("throw@1@layers.3@solve");  // another rank's fault
  EXPECT_NO_THROW(RunPhase::set("layers.3", "solve"));
  RunPhase::set_fault("");
  EXPECT_NO_THROW(RunPhase::set("layers.3", "solve"));
}

}  // namespace
}  // namespace dsv4::dist

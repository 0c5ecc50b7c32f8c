// test_communicator.cpp: the MPI backend of Communicator under a real launch (ctest runs it with
// `mpirun -n 2` and `-n 4 --oversubscribe`): every collective's result on every rank, the
// in-place reduce leaving non-roots untouched, strings of different lengths, and the ranks
// agreeing on the failure count (one bad rank fails all).
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>

#include "common/check.h"
#include "dist/communicator.h"
#include "dist/topology.h"

namespace dsv4::dist {
namespace {

std::unique_ptr<Communicator> make() { return communicator_mpi(60.0); }

TEST(MpiCommunicator, ReduceSumsOnRootOnlyAndAllReduceEverywhere) {
  auto comm = make();
  const int r = comm->rank(), w = comm->world();
  ASSERT_GE(w, 2) << "run under mpirun -n 2 or more";
  for (int root = 0; root < w; ++root) {
    std::vector<float> v = {static_cast<float>(r + 1), 0.5f};
    comm->reduce(v.data(), v.size(), ElemType::kF32, ReduceOp::kSum, root);
    if (r == root) {
      EXPECT_EQ(v[0], static_cast<float>(w * (w + 1) / 2));
      EXPECT_EQ(v[1], 0.5f * w);
    } else {
      EXPECT_EQ(v[0], static_cast<float>(r + 1)) << "non-root buffer changed";
    }
  }
  std::vector<int64_t> n = {r, 10};
  comm->all_reduce(n.data(), n.size(), ElemType::kI64, ReduceOp::kSum);
  EXPECT_EQ(n[0], static_cast<int64_t>(w * (w - 1) / 2));
  EXPECT_EQ(n[1], 10 * w);
  float m = static_cast<float>(r) * -1.0f + 3.0f;
  comm->all_reduce(&m, 1, ElemType::kF32, ReduceOp::kMax);
  EXPECT_EQ(m, 3.0f);
  std::vector<double> d = {0.25 * r};
  comm->all_reduce(d.data(), 1, ElemType::kF64, ReduceOp::kSum);
  EXPECT_DOUBLE_EQ(d[0], 0.25 * w * (w - 1) / 2);
}

TEST(MpiCommunicator, BroadcastAndGatherStringsOfDifferentLengths) {
  auto comm = make();
  const int r = comm->rank(), w = comm->world();
  for (int root = 0; root < w; ++root) {
    std::string s = r == root ? std::string(static_cast<size_t>(1000 + root), static_cast<char>('a' + root)) : "x";
    comm->broadcast_string(s, root);
    EXPECT_EQ(s, std::string(static_cast<size_t>(1000 + root), static_cast<char>('a' + root)));
  }
  const std::vector<std::string> all = comm->all_gather_strings(std::string(static_cast<size_t>(r), 'z') + "#" + std::to_string(r));
  ASSERT_EQ(static_cast<int>(all.size()), w);
  for (int q = 0; q < w; ++q) EXPECT_EQ(all[static_cast<size_t>(q)], std::string(static_cast<size_t>(q), 'z') + "#" + std::to_string(q));
  std::vector<uint8_t> bytes(static_cast<size_t>(w));
  const uint8_t mine = static_cast<uint8_t>(10 + r);
  comm->all_gather(&mine, 1, bytes.data());
  for (int q = 0; q < w; ++q) EXPECT_EQ(bytes[static_cast<size_t>(q)], 10 + q);
  EXPECT_THROW(comm->reduce(bytes.data(), 1, ElemType::kU8, ReduceOp::kSum, w), Error);
  comm->barrier();
}

}  // namespace
}  // namespace dsv4::dist

// MPI main: init, run, agree on the failure count so every rank reports the same result.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const dsv4::dist::Topology t = dsv4::dist::topology_init(&argc, &argv, {.mpi_launched = true});
  if (t.rank != 0) {  // one rank prints the tally; the others report only failures
    ::testing::TestEventListeners& l = ::testing::UnitTest::GetInstance()->listeners();
    delete l.Release(l.default_result_printer());
  }
  const int local = RUN_ALL_TESTS();
  int failed = local != 0;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (t.rank == 0 && failed) std::fprintf(stderr, "%d rank(s) failed\n", failed);
  dsv4::dist::topology_finalize();
  return failed ? 1 : 0;
}

// test_mpi_check.cpp: DSV4_MPI_CHECK under a real multi-rank launch (ctest runs it with
// `mpirun -n 2 --oversubscribe`). Each rank provokes an MPI error with MPI_ERRORS_RETURN set and
// checks that the thrown message quotes the call, MPI's own text and this rank's context; the
// ranks then agree on the number of failures (nccl-tests style), so one bad rank fails all.
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>

#include "common/check.h"
#include "common/log.h"

namespace dsv4 {
namespace {

TEST(MpiCheck, FailingCallThrowsWithMpiTextAndRankOnEveryRank) {
  int rank = 0, world = 0;
  DSV4_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  DSV4_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
  ASSERT_GE(world, 2) << "run under mpirun -n 2 or more";
  const LogContext saved = log_context();
  set_log_context({.rank = rank, .world = world, .host = "testhost", .device = -1});
  DSV4_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));

  int local_failures = 0;
  try {
    int value = 0;
    // Root out of range: an MPI_ERR_ROOT returned (not aborted) thanks to MPI_ERRORS_RETURN.
    DSV4_MPI_CHECK(MPI_Bcast(&value, 1, MPI_INT, world + 5, MPI_COMM_WORLD));
    ADD_FAILURE() << "MPI_Bcast with a bad root did not fail";
    ++local_failures;
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.find("[mpi]") == std::string::npos || what.find("MPI_Bcast(") == std::string::npos ||
        what.find("MPI error") == std::string::npos ||
        what.find("(rank " + std::to_string(rank) + "/" + std::to_string(world) + " testhost)") ==
            std::string::npos) {
      ADD_FAILURE() << "rank " << rank << " message lacks a part: " << what;
      ++local_failures;
    }
  }
  int total_failures = 0;
  DSV4_MPI_CHECK(MPI_Allreduce(&local_failures, &total_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
  EXPECT_EQ(total_failures, 0) << "failures summed over " << world << " ranks";
  set_log_context(saved);
}

}  // namespace
}  // namespace dsv4

// MPI needs its own main: MPI_Init before the tests, MPI_Finalize after.
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  int worst = 0;
  MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}

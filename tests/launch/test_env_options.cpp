// test_env_options.cpp: launch/env_options.h, the one reader of the environment: each launcher
// variable (and DSV4_MPI) marks an MPI rank; DSV4_MPI_WAIT spin/sleep/unset/empty and a bad
// value; DSV4_FAULT passed through as given (RunPhase::set_fault checks it). Every test sets the
// variables it needs and clears the others, so the outcome does not depend on the caller's shell.
#include <gtest/gtest.h>

#include <cstdlib>

#include "common/check.h"
#include "launch/env_options.h"

namespace dsv4::launch {
namespace {

const char* const kVariables[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                                  "MPI_LOCALNRANKS",      "DSV4_MPI",  "DSV4_MPI_WAIT", "DSV4_FAULT"};

void clear_all() {
  for (const char* v : kVariables) unsetenv(v);
}

TEST(EnvOptions, NothingSetIsASingleProcessWithDefaults) {
  clear_all();
  const EnvOptions o = env_options_read();
  EXPECT_FALSE(o.mpi_launched);
  EXPECT_EQ(o.mpi_wait, dist::MpiWait::kAuto);
  EXPECT_EQ(o.fault, "");
}

TEST(EnvOptions, AnyLauncherVariableMarksAnMpiRank) {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS", "DSV4_MPI"}) {
    clear_all();
    setenv(v, "1", 1);
    EXPECT_TRUE(env_options_read().mpi_launched) << v;
  }
  clear_all();
}

TEST(EnvOptions, MpiWaitTakesSpinOrSleep) {
  clear_all();
  setenv("DSV4_MPI_WAIT", "spin", 1);
  EXPECT_EQ(env_options_read().mpi_wait, dist::MpiWait::kSpin);
  setenv("DSV4_MPI_WAIT", "sleep", 1);
  EXPECT_EQ(env_options_read().mpi_wait, dist::MpiWait::kSleep);
  setenv("DSV4_MPI_WAIT", "", 1);
  EXPECT_EQ(env_options_read().mpi_wait, dist::MpiWait::kAuto) << "empty counts as unset";
  setenv("DSV4_MPI_WAIT", "busy", 1);
  try {
    env_options_read();
    ADD_FAILURE() << "DSV4_MPI_WAIT=busy was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("DSV4_MPI_WAIT='busy': expected spin or sleep"), std::string::npos) << e.what();
  }
  clear_all();
}

TEST(EnvOptions, FaultIsPassedThrough) {
  clear_all();
  setenv("DSV4_FAULT", "kill@1@layers.2@solve", 1);
  EXPECT_EQ(env_options_read().fault, "kill@1@layers.2@solve");
  setenv("DSV4_FAULT", "", 1);
  EXPECT_EQ(env_options_read().fault, "");
  clear_all();
}

}  // namespace
}  // namespace dsv4::launch

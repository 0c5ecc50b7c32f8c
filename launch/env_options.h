// env_options.h: the environment variables dsv4-calib reads, all of them, read and checked once
// at startup and handed down as typed options (STYLE §4: no getenv below launch/).
//
//   const EnvOptions env = env_options_read();                  // throws on a malformed value
//   dist::RunPhase::set_fault(env.fault);
//   dist::Topology t = dist::topology_init(nullptr, nullptr, {.mpi_launched = env.mpi_launched});
//   auto comm = dist::communicator_mpi(timeout_s, env.mpi_wait);
//
// Variables:
//   OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK, PMI_SIZE, MPI_LOCALNRANKS (set by mpirun, srun and
//   other launchers), DSV4_MPI (any value; forces it): this process is one rank of an MPI job.
//   DSV4_MPI_WAIT=spin|sleep: how MPI collectives wait (default: spin when the host has a core
//   per rank). DSV4_FAULT=ACTION@RANK@SEGMENT@PHASE: fault injection for the failure tests
//   (dist/run_phase.h). An empty value counts as unset.
// Tests: tests/launch/test_env_options.cpp.
#pragma once

#include <string>

#include "dist/communicator.h"

namespace dsv4::launch {

struct EnvOptions {
  bool mpi_launched = false;                      // a launcher's rank variables, or DSV4_MPI
  dist::MpiWait mpi_wait = dist::MpiWait::kAuto;  // DSV4_MPI_WAIT
  std::string fault;                              // DSV4_FAULT, "" when unset; checked by RunPhase::set_fault
};

// Reads the variables above; throws dsv4::Error("cli", ...) for a DSV4_MPI_WAIT other than spin
// or sleep.
EnvOptions env_options_read();

}  // namespace dsv4::launch

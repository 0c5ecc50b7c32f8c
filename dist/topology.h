// topology.h: who this process is in the job (STYLE §6 steps 1-3): MPI init, rank and world,
// local rank from hostname hashes (no launcher environment variables), the device to bind to.
//
//   Topology t = topology_init(&argc, &argv, {.mpi_launched = true});  // MPI_Init_thread; log context
//   ... cudaSetDevice(t.local_rank) before any CUDA/NCCL call (GPU builds)
//   topology_finalize();                        // MPI_Finalize at the end of main
//
// A process started without mpirun is rank 0 of 1 (MPI singleton init).
// Tests: tests/dist/test_communicator.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::dist {

struct Topology {
  int rank = 0;
  int world = 1;
  int local_rank = 0;   // index among the ranks on this host
  int local_world = 1;  // ranks on this host
  std::string host;
};

struct TopologyOptions {
  // Whether a launcher started this process as one rank of a job: launch/ reads the launchers'
  // variables (env_options.h). Decides only whether to call MPI_Init at all (a plain
  // `dsv4-calib --recipe R` runs without MPI); rank and local rank come from MPI itself.
  bool mpi_launched = false;
};

Topology topology_init(int* argc, char*** argv, const TopologyOptions& options);
void topology_finalize();
bool topology_mpi_active();  // MPI initialized and not finalized

// Local rank of `rank` given every rank's host hash (lower ranks with the same hash).
int local_rank_of(const std::vector<uint64_t>& host_hashes, int rank);

}  // namespace dsv4::dist

// bandwidth.h: the all-reduce bandwidth sweep of `dsv4-calib preflight` (issue 10), in the
// manner of nccl-tests' all_reduce_perf: f32 sums of doubling sizes through the run's own
// communicator (MPI on host buffers, NCCL on device buffers), timed as the slowest rank sees them.
//
//   AllReduceSweep s = all_reduce_sweep(*comm, 256ull << 20, 10, /*on_device=*/true);
//   std::printf("%s", all_reduce_sweep_text(s).c_str());
//
// algbw = bytes / time; busbw = algbw · 2(n-1)/n, the bus bandwidth a ring all-reduce needs, which
// is comparable across rank counts (0 for one rank). Each size is also timed as a reduce to rank 0,
// the collective that carries the pipeline's Hessians (a slow reduce path once cost 600x; see
// topology.cpp). Before timing, one all-reduce of ones is
// checked to give the rank count everywhere, so a broken fabric fails rather than reports.
// Tests: tests/dist/test_bandwidth.cpp (one rank), tests/e2e/cli_preflight.sh (mpirun).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace dsv4::dist {

struct AllReducePoint {
  size_t bytes = 0;
  double seconds = 0.0;  // per all-reduce, the slowest rank's mean over the timed iterations
  double algbw_gbs = 0.0, busbw_gbs = 0.0;
  // The same bytes reduced to rank 0 (the pipeline's Hessian collective): seconds, bytes / time.
  double reduce_seconds = 0.0, reduce_algbw_gbs = 0.0;
};

struct AllReduceSweep {
  std::string backend;
  bool on_device = false;
  int world = 1;
  int iters = 0;
  std::vector<AllReducePoint> points;  // 1 MiB doubling up to max_bytes (at least one point)
};

// Every rank calls it with the same arguments. on_device allocates the buffer on the current
// device (CUDA builds; the NCCL backend); otherwise host memory.
AllReduceSweep all_reduce_sweep(Communicator& comm, size_t max_bytes, int iters, bool on_device);
std::string all_reduce_sweep_text(const AllReduceSweep& sweep);

}  // namespace dsv4::dist

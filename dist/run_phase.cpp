// run_phase.cpp: the process-wide phase marker and the fail-and-abort path (see run_phase.h).
#include "dist/run_phase.h"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "common/log.h"
#include "dist/communicator.h"
#include "dist/topology.h"

namespace dsv4::dist {
namespace {

struct PhaseState {
  std::mutex mutex;
  std::string segment, phase;
  std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
};
PhaseState& state() {
  static PhaseState s;
  return s;
}

}  // namespace

void RunPhase::set(const std::string& segment, const std::string& phase) {
  PhaseState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.segment = segment;
  s.phase = phase;
  s.since = std::chrono::steady_clock::now();
}

std::string RunPhase::describe() {
  PhaseState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.segment.empty() && s.phase.empty()) return "startup";
  const double in_phase = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.since).count();
  char buf[64];
  std::snprintf(buf, sizeof buf, " (%.1f s in phase)", in_phase);
  return s.segment + " " + s.phase + buf;
}

void run_phase_fail(Communicator* comm, const std::string& message, int exit_code) {
  const LogContext& c = log_context();
  std::fprintf(stderr, " ## rank %d/%d on %s at %s: %s\n", c.rank, c.world, c.host.empty() ? "?" : c.host.c_str(),
               RunPhase::describe().c_str(), message.c_str());
  std::fflush(stderr);
  if (comm) comm->abort_job(exit_code);
  if (topology_mpi_active()) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::fflush(stdout);
  std::_Exit(exit_code);
}

}  // namespace dsv4::dist

// run_phase.cpp: the process-wide phase marker and the fail-and-abort path (see run_phase.h).
#include "dist/run_phase.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "common/check.h"
#include "common/log.h"
#include "dist/communicator.h"
#include "dist/topology.h"

namespace dsv4::dist {
namespace {

struct PhaseState {
  std::mutex mutex;
  std::string segment, phase;
  std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
  std::string background;  // "<segment> <phase>" of the background writer; empty when idle
  std::chrono::steady_clock::time_point background_since;
};
PhaseState& state() {
  static PhaseState s;
  return s;
}

struct Fault {
  std::string action, rank, segment, phase;
};

// The DSV4_FAULT spec given to RunPhase::set_fault; action empty when none.
Fault& fault() {
  static Fault f;
  return f;
}

void maybe_inject(const std::string& segment, const std::string& phase) {
  const Fault& f = fault();
  if (f.action.empty() || f.segment != segment || f.phase != phase) return;
  if (f.rank != "*" && f.rank != std::to_string(log_context().rank)) return;
  std::fprintf(stderr, " !! DSV4_FAULT: %s at %s %s\n", f.action.c_str(), segment.c_str(), phase.c_str());
  std::fflush(stderr);
  if (f.action == "kill") std::raise(SIGKILL);
  if (f.action == "throw") DSV4_FAIL("fault", "injected error at %s %s", segment.c_str(), phase.c_str());
  if (f.action == "delay") {  // a slow rank: the others run ahead
    std::this_thread::sleep_for(std::chrono::seconds(3));
    return;
  }
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // stall
}

}  // namespace

void RunPhase::set(const std::string& segment, const std::string& phase) {
  {
    PhaseState& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.segment = segment;
    s.phase = phase;
    s.since = std::chrono::steady_clock::now();
  }
  maybe_inject(segment, phase);
}

void RunPhase::set_background(const std::string& segment, const std::string& phase) {
  {
    PhaseState& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.background = segment + " " + phase;
    s.background_since = std::chrono::steady_clock::now();
  }
  maybe_inject(segment, phase);
}

void RunPhase::set_fault(const std::string& spec) {
  if (spec.empty()) {
    fault() = Fault{};
    return;
  }
  std::vector<std::string> parts;
  std::stringstream in(spec);
  for (std::string p; std::getline(in, p, '@');) parts.push_back(p);
  DSV4_CHECK_IN("dist",
                parts.size() == 4 &&
                    (parts[0] == "stall" || parts[0] == "kill" || parts[0] == "throw" || parts[0] == "delay"),
                "DSV4_FAULT='%s': expected ACTION@RANK@SEGMENT@PHASE with ACTION stall|kill|throw|delay", spec.c_str());
  fault() = Fault{parts[0], parts[1], parts[2], parts[3]};
}

void RunPhase::clear_background() {
  PhaseState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.background.clear();
}

std::string RunPhase::describe() {
  PhaseState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  const auto now = std::chrono::steady_clock::now();
  std::string out = "startup";
  if (!s.segment.empty() || !s.phase.empty()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " (%.1f s in phase)", std::chrono::duration<double>(now - s.since).count());
    out = s.segment + " " + s.phase + buf;
  }
  if (!s.background.empty()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " (%.1f s)", std::chrono::duration<double>(now - s.background_since).count());
    out += "; writing in the background: " + s.background + buf;
  }
  return out;
}

std::string RunPhase::current() {
  PhaseState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.segment.empty() && s.phase.empty() ? "" : s.segment + " " + s.phase;
}

void run_phase_wait(Communicator* comm, double timeout_s, const std::string& what, const std::function<bool()>& done,
                    int max_pause_us) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto pause = std::chrono::microseconds(1);
  while (!done()) {
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (timeout_s > 0 && waited > timeout_s) {
      run_phase_fail(comm, what + " did not complete within " + std::to_string(static_cast<int>(timeout_s)) +
                               " s (run.collective_timeout_s): another rank is lost, stuck, or failed");
    }
    if (max_pause_us <= 0) {
      std::this_thread::yield();
      continue;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(max_pause_us));
  }
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

void run_rank_job(int world, std::unique_ptr<Communicator>& comm, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    if (world > 1) run_phase_fail(comm.get(), e.what());
    comm.reset();
    topology_finalize();
    throw;
  }
  comm.reset();
  topology_finalize();
}

}  // namespace dsv4::dist

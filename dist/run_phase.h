// run_phase.h: where this rank is (layer and phase), process-wide, so that a watchdog timeout or
// an error can say where every rank was when the job stopped (DESIGN §2, seed_pipelines §2.1:
// the field's hangs were diagnosed from py-spy dumps; ours print it).
//
//   RunPhase::set("layers.22", "reduce");          // the pipeline marks each step
//   RunPhase::set_background("layers.21", "write"); // the background writer's step
//   RunPhase::describe();                           // "layers.22 reduce (12.3 s in phase); writing ..."
//   run_phase_fail(comm, "collective timed out");   // prints rank, host, phase; aborts the job
//
// Fault injection for the failure tests (tests/e2e): DSV4_FAULT="ACTION@RANK@SEGMENT@PHASE" makes
// RunPhase::set on that rank ("*": every rank), entering that segment and phase, do ACTION:
// `stall` (sleep forever: a stuck rank), `kill` (SIGKILL itself: a lost rank), `throw` (an
// error), `delay` (sleep 3 s, then go on: a slow rank). Unset in normal runs. launch/ reads the variable once at startup and hands it to
// RunPhase::set_fault (STYLE §4: no getenv below launch/).
// Tests: tests/dist/test_communicator.cpp, tests/e2e/cli_calibrate_mpi.sh.
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace dsv4::dist {

class Communicator;

struct RunPhase {
  static void set(const std::string& segment, const std::string& phase);
  // The phase of the background writer thread (the pipeline writes and commits a segment while it
  // computes the next): described after the main phase; DSV4_FAULT applies to it the same way.
  static void set_background(const std::string& segment, const std::string& phase);
  static void clear_background();
  // The DSV4_FAULT spec ("" for none), checked here: throws dsv4::Error when it is not
  // ACTION@RANK@SEGMENT@PHASE with ACTION stall|kill|throw|delay. Set once at startup, before any
  // thread marks a phase.
  static void set_fault(const std::string& spec);
  // "<segment> <phase> (N s in phase)" or "startup", then "; writing in the background: <segment>
  // <phase> (N s)" while the writer works.
  static std::string describe();
  // "<segment> <phase>" of the main thread ("" before the first set): the progress bar's phase.
  static std::string current();
};

// Polls `done` until it returns true, sleeping between polls (1 µs doubling up to max_pause_us,
// so oversubscribed CPU ranks leave the cores to the ranks still computing). Past `timeout_s`
// (> 0) it fails the run through run_phase_fail: "<what> did not complete within N s". Both
// communicator backends wait for their collectives through this. max_pause_us <= 0: no sleeps,
// only a yield between polls.
void run_phase_wait(Communicator* comm, double timeout_s, const std::string& what, const std::function<bool()>& done,
                    int max_pause_us);

// Prints "rank R/W on HOST at <phase>: <message>" to stderr (every rank that calls it), then
// aborts the job through `comm` (or exits with `exit_code` when comm is null).
[[noreturn]] void run_phase_fail(Communicator* comm, const std::string& message, int exit_code = 1);

// A rank's whole part of a job, after topology_init: an error on a job of several ranks is printed
// with the phase and ends the whole job (run_phase_fail) rather than leaving the other ranks in a
// collective; on one rank it is rethrown. Either way `comm` (which `body` may create) is released
// and MPI finalized (topology_finalize).
void run_rank_job(int world, std::unique_ptr<Communicator>& comm, const std::function<void()>& body);

}  // namespace dsv4::dist

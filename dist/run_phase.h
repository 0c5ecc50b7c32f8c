// run_phase.h: where this rank is (layer and phase), process-wide, so that a watchdog timeout or
// an error can say where every rank was when the job stopped (DESIGN §2, seed_pipelines §2.1:
// the field's hangs were diagnosed from py-spy dumps; ours print it).
//
//   RunPhase::set("layers.22", "reduce");          // the pipeline marks each step
//   RunPhase::describe();                           // "layers.22 reduce (12.3 s in phase)"
//   run_phase_fail(comm, "collective timed out");   // prints rank, host, phase; aborts the job
//
// Fault injection for the failure tests (tests/e2e): DSV4_FAULT="ACTION@RANK@SEGMENT@PHASE" makes
// RunPhase::set on that rank ("*": every rank), entering that segment and phase, do ACTION:
// `stall` (sleep forever: a stuck rank), `kill` (SIGKILL itself: a lost rank), `throw` (an
// error). Unset in normal runs; parsed once.
// Tests: tests/dist/test_communicator.cpp, tests/e2e/cli_calibrate_mpi.sh.
#pragma once

#include <string>

namespace dsv4::dist {

class Communicator;

struct RunPhase {
  static void set(const std::string& segment, const std::string& phase);
  static std::string describe();  // "<segment> <phase> (N s in phase)", or "startup"
};

// Prints "rank R/W on HOST at <phase>: <message>" to stderr (every rank that calls it), then
// aborts the job through `comm` (or exits with `exit_code` when comm is null).
[[noreturn]] void run_phase_fail(Communicator* comm, const std::string& message, int exit_code = 1);

}  // namespace dsv4::dist

// layer_report.h: what one segment of the pipeline reports: per module its solve method, loss,
// H-weighted error against RTN and fallback; per segment its time split (decode, forward, reduce,
// solve, share, wait, background write), Hessians, methods and routed tokens per expert. The
// journal and the manifest store it as JSON; the log prints it as one line per segment.
//
//   std::puts(layer_report_line(report, num_segments).c_str());
//   manifest["layers"].push_back(layer_report_json(report));
//
// Tests: tests/calib/test_pipeline.cpp, tests/calib/test_layer_report.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "calib/module_solve.h"
#include "quant/gptq.h"

namespace dsv4::calib {

struct ModuleReport {
  std::string module;
  SolveMethod method = SolveMethod::kRtn;
  double loss = 0.0;
  double rel_error = -1.0;      // tr(ΔHΔᵀ)/tr(WHWᵀ), -1 without a Hessian
  double rtn_rel_error = -1.0;  // the same for RTN (GPTQ modules)
  double dampening_frac = 0.0;
  quant::GptqFallback fallback = quant::GptqFallback::kNone;
  int64_t tokens = 0;
  double seconds = 0.0;
  HeldoutChoice heldout;  // calibration.heldout's candidates and choice (not validated: chosen -1)
};

struct LayerReport {
  int segment = 0;
  std::string name;  // "layers.3", "mtp.0", "top"
  // `seconds`: this thread's wall time for the segment, which includes `seconds_wait` (waiting for
  // the previous segment's background write and committing it) but not `seconds_write` (this
  // segment's write and commit files, on the background thread while the next segment computes).
  // `seconds_reduce`: the Hessian reduce to the owners; `seconds_share`: the solved modules to every
  // rank and their put into the executor's block for pass B (decoded there when another rank
  // solved them; LayerExecutor::put).
  double seconds = 0.0, seconds_decode = 0.0, seconds_forward = 0.0, seconds_solve = 0.0, seconds_reduce = 0.0,
         seconds_share = 0.0, seconds_wait = 0.0, seconds_write = 0.0;
  int64_t hessians = 0;
  std::vector<ModuleReport> modules;
  std::vector<int64_t> expert_tokens;  // routed tokens per expert in pass A (empty without one)
  int count(SolveMethod m) const;
  int fallbacks() const;               // modules whose GPTQ raised damping or fell back to RTN
  double mean_rel_error() const;       // over modules with a Hessian; -1 if none
  double mean_rtn_rel_error() const;
  int heldout_validated() const;       // modules held-out validation chose for
  int heldout_rtn() const;             // of which it chose RTN
};

// The report as the manifest and the journal store it.
nlohmann::ordered_json layer_report_json(const LayerReport& layer);

// One line per layer: time split, modules by method, mean H-weighted error vs RTN, fallbacks,
// expert token range.
std::string layer_report_line(const LayerReport& layer, int num_segments);

// The time left of a run, from the segments reported so far: the segments after the last one
// reported, at the mean wall time of the ones this process computed (a resumed run skips the
// committed ones: their time is not counted).
//
//   RunEta eta(num_segments);
//   log_info("%s%s", layer_report_line(l, n).c_str(), eta.after(l).c_str());   // "; 4 left, eta 12.3 s"
class RunEta {
 public:
  explicit RunEta(int num_segments) : num_segments_(num_segments) {}
  // "; N left, eta T" after this segment ("" after the last one).
  std::string after(const LayerReport& layer);
  // The time left as of the last after() (-1 before the first; 0 after the last segment).
  double seconds_left() const { return seconds_left_; }

 private:
  int num_segments_;
  int reported_ = 0;
  double seconds_ = 0.0;
  double seconds_left_ = -1.0;
};

}  // namespace dsv4::calib

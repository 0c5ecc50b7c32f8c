// state_finite.h: the non-finite scan of the HC states per layer and pass (issue 26). The source
// weights are scanned as they are decoded (common/finite_scan.h), but finite weights can still
// overflow the forward (a norm weight near the format's largest value, calibration text that drives
// an activation past it, a quantized block that does): NaN would then reach a Hessian and come out
// as "GPTQ fallbacks" with exit 0. Each executor counts the NaN and infinite values of the states
// it loads and of every block output it computes (the CPU one on the host, the CUDA one on the GPU:
// common/finite_scan_cuda.h), and the CPU's pass A also every linear's input as its taps hand it to
// a Hessian; a count above zero stops the run, naming layer (or module), pass and count, before
// pass A's statistics reach a solve or pass B's output reaches the next layer.
//
//   states_require_finite("layers.3", StatePass::kPassA, count, values);  // throws when count > 0
//
// Tests: tests/calib/test_state_finite.cpp; tests/e2e/cli_hostile_inputs.sh §9 through the binary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::calib {

enum class StatePass {
  kLoaded,  // the states a run starts from: the embeddings, or a resume's snapshot
  kPassA,   // a block's output in pass A, whose taps feed the solves' statistics
  kPassB,   // a block's output in pass B (through the quantized block): the next layer's input
};

// A user error when `count` > 0: `layer`'s (e.g. "layers.3"; ignored for kLoaded) states after
// `pass` hold that many NaN or infinite values of `values`.
void states_require_finite(const std::string& layer, StatePass pass, int64_t count, int64_t values);

// The same for the input pass A's taps hand to a Hessian (LayerStats::on_tap, the CPU forward):
// `module` (e.g. "layers.3.attn.wq_a") and the `others` reading the same input. Checked there,
// before the sum, because an exact Hessian sum refuses a NaN itself, as an internal error.
void tap_input_require_finite(const std::string& module, size_t others, int64_t count, int64_t values);

// The NaN and infinite values among host states (one vector per sample), and how many values there are.
struct StateCount {
  int64_t non_finite = 0, values = 0;
};
StateCount states_non_finite(const std::vector<std::vector<float>>& states);

}  // namespace dsv4::calib

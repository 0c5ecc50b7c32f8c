// forward_context.h: what every block of the CPU forward needs besides weights and input: the
// numeric mode, the calibration taps, and where in the model it is.
#pragma once

#include <string>

#include "model/taps.h"

namespace dsv4::model {

// kFp32: everything in float32 (compared with transformers in fp32). kBf16: the reference's bf16
// storage points (§3.4): block inputs/outputs, GEMM outputs, norm outputs, q after RoPE, expert
// gate/up outputs and h, the HC residual state; HC, Sinkhorn, router, softmax and sink math stay
// fp32 in both modes.
enum class NumericMode { kFp32, kBf16 };

struct ForwardContext {
  NumericMode mode = NumericMode::kFp32;
  TapSink* taps = nullptr;        // null: no taps (zero cost)
  std::string prefix;             // "layers.3." or "mtp.0.": module names for taps
  // All-experts mode: every routed expert also runs on every token so its taps see all tokens;
  // the block output still uses the real routing.
  bool all_experts = false;

  bool bf16() const { return mode == NumericMode::kBf16; }
  std::string module(const char* suffix) const { return prefix + suffix; }
};

}  // namespace dsv4::model

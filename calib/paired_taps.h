// paired_taps.h: pass A's taps of GPTAQ's two streams paired row for row (calibration.gptq.
// asymmetric, quant/gptaq.h). The CPU executor runs each sample's block forward twice with the
// source weights: first on the full-precision stream X̃ (a TapRecorder keeps the inputs that a
// wanted Hessian reads), then on the quantized stream X (a PairedTapSink hands each tap to the
// LayerStats, as a plain pass A does, and then the recorded X̃ rows of the same tap to
// LayerStats::on_paired_tap, which sums ΔX·Xᵀ).
//
//   TapRecorder full(stats);
//   block_forward(..., x_tilde, ..., ForwardContext{mode, &full, prefix, all_experts});
//   PairedTapSink paired(stats, full);
//   block_forward(..., x, ..., ForwardContext{mode, &paired, prefix, all_experts});
//   paired.finish();                                  // every recorded tap was paired
//
// The forward emits its taps in an order fixed by the block's structure, so the k-th tap of one
// pass pairs with the k-th of the other; the same tokens reach the same rows of every module only
// where every expert sees every token (all-experts mode; the recipe refuses GPTAQ without it). A
// pair that names other modules, groups, experts or shapes is an error, never summed.
// Memory: the recorder keeps, per sample, the inputs of the wanted Hessians once each (the
// all-experts w1/w3 input once per pass, every w2's hidden state).
// Tests: tests/calib/test_paired_taps.cpp.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "calib/layer_stats.h"
#include "model/taps.h"

namespace dsv4::calib {

class TapRecorder final : public model::TapSink {
 public:
  explicit TapRecorder(const LayerStats& stats) : stats_(stats) {}
  struct Tap {
    std::vector<std::string> modules;
    int group = -1, expert = -1;
    int64_t rows = 0, cols = 0;
    std::vector<float> x;  // [rows, cols]; empty where no pair reads it (unwanted, or a repeat)
  };
  void on_tap(const model::TapEvent& event) override;
  const std::vector<Tap>& taps() const { return taps_; }

 private:
  const LayerStats& stats_;
  std::vector<Tap> taps_;
  std::set<HessianKey> all_experts_kept_;  // all-experts Hessians whose layer input is kept (once a pass)
};

class PairedTapSink final : public model::TapSink {
 public:
  PairedTapSink(LayerStats& stats, const TapRecorder& full) : stats_(stats), full_(full) {}
  void on_tap(const model::TapEvent& event) override;
  void on_expert_tokens(const std::string& block_prefix, int expert, int64_t count) override {
    stats_.on_expert_tokens(block_prefix, expert, count);
  }
  // Fails unless every recorded tap was paired (the two passes emitted the same taps).
  void finish() const;

 private:
  LayerStats& stats_;
  const TapRecorder& full_;
  size_t next_ = 0;
};

}  // namespace dsv4::calib

// layer_executor_cpu.cpp: the CPU executor (see layer_executor.h): the reference block forward
// (model/block.h) sample by sample on host fp32 states, a host block decoded per layer, every
// solve on the host. The states it loads and every block output it computes are scanned for NaN
// and infinity (calib/state_finite.h). With GPTAQ (calibration.gptq.asymmetric) it also carries
// the full-precision stream X̃ (the same samples advanced with the source block), whose pass A
// taps pair with the quantized stream's (calib/paired_taps.h).
#include <optional>

#include "calib/block_linear.h"
#include "calib/host_solve.h"
#include "calib/layer_executor.h"
#include "calib/paired_taps.h"
#include "calib/state_finite.h"
#include "common/check.h"
#include "common/finite_scan.h"
#include "common/parallel.h"
#include "model/block.h"
#include "model/rope.h"

namespace dsv4::calib {
namespace {

class CpuLayerExecutor final : public LayerExecutor {
 public:
  explicit CpuLayerExecutor(const LayerExecutorSetup& s) : s_(s), gptaq_(s.recipe && s.recipe->gptaq()) {
    if (!s.forward) return;
    for (const auto& ids : *s.samples) {  // per sample length, built once for the run
      main_rope_.push_back(model::rope_table_build(*s.config, false, static_cast<int64_t>(ids.size())));
      compress_rope_.push_back(model::rope_table_build(*s.config, true, static_cast<int64_t>(ids.size())));
    }
  }

  void load_states(std::vector<std::vector<float>> states) override {
    const StateCount n = states_non_finite(states);
    states_require_finite("", StatePass::kLoaded, n.non_finite, n.values);
    states_ = std::move(states);
    // Embeddings (or a replay's start): X̃ = X until the first quantized layer. GPTAQ runs take no
    // snapshot (pipeline.cpp), so a resume loads embeddings and replays both streams.
    if (gptaq_) full_ = states_;
  }

  void decode(int layer) override {
    block_.reset();
    full_advanced_ = false;
    if (layer < 0) return;
    block_.emplace(model::block_weights_load(*s_.source, *s_.config, "layers." + std::to_string(layer) + ".", layer));
  }


  void pass_a(LayerStats& stats, PassAOutput output) override {
    if (gptaq_) {
      DSV4_CHECK_IN("pipeline", output == PassAOutput::kDiscard && stats.cross() && !stats.heldout(),
                    "GPTAQ's pass A needs propagate_error, ΔX·Xᵀ sums and no held-out split");
      run_paired(stats);
      return;
    }
    if (output == PassAOutput::kDiscard) {
      run(states_, &stats, stats.all_experts(), /*write_back=*/false);
      return;
    }
    // Pass A's outputs are the next layer's input; states_ keep this layer's input meanwhile (the
    // previous layer's snapshot may still be reading them). GBs: copied on all cores.
    states_a_.resize(states_.size());
    parallel_for(states_.size(), s_.threads, [&](size_t k) { states_a_[k] = states_[k]; });
    run(states_a_, &stats, stats.all_experts(), /*write_back=*/true);
  }

  void solve(const std::vector<const PlannedModule*>& modules, const std::vector<size_t>& mine, LayerStats& stats,
             std::vector<SolvedModule>& solved) override {
    const HostSolveContext ctx{s_.recipe, s_.config, s_.source, &stats, block_ ? &*block_ : nullptr, s_.threads};
    host_solve(ctx, modules, mine, solved);
  }

  void put(const std::vector<const PlannedModule*>& modules, std::vector<SolvedModule>& solved) override {
    if (modules.empty()) return;
    DSV4_CHECK_IN("pipeline", block_.has_value(), "solved modules put into a block that was not decoded");
    full_advance();  // X̃ through the source block, before the solved weights replace it
    solved_dequant_rebuild(solved, modules, s_.threads, [](size_t) { return true; });
    block_substitute(*block_, *s_.config, modules, solved);
  }

  void pass_b(bool reuse_pass_a) override {
    if (reuse_pass_a) {
      states_.swap(states_a_);
      return;
    }
    full_advance();  // a layer with no module to put: the block is still the source's
    run(states_, nullptr, /*all_experts=*/false, /*write_back=*/true);
  }

  const std::vector<std::vector<float>>* states_for_snapshot(bool) override { return &states_; }

 private:
  // out <- block(in) for sample s, its taps to `sink` (may be null); returns the non-finite outputs.
  int64_t forward_one(size_t s, const float* in, std::vector<float>& out, model::TapSink* sink, bool all_experts) const {
    const model::BlockWeights& w = *block_;
    const auto& ids = (*s_.samples)[s];
    model::ForwardContext ctx{s_.mode, sink, w.prefix, all_experts};
    const model::RopeTable& rope = model::rope_is_compressed(w.spec) ? compress_rope_[s] : main_rope_[s];
    model::block_forward(w, *s_.config, rope, in, ids.data(), static_cast<int64_t>(ids.size()), out.data(), ctx);
    return non_finite_scan(out.data(), out.size()).count;
  }

  std::string layer_name() const {
    return block_->prefix.substr(0, block_->prefix.size() - 1);  // "layers.3." -> "layers.3"
  }

  // states[s] <- block(states[s]) for every sample; write_back = false: only the statistics.
  void run(std::vector<std::vector<float>>& states, LayerStats* stats, bool all_experts, bool write_back) const {
    DSV4_CHECK_IN("pipeline", block_.has_value(), "CPU forward without a block");
    int64_t non_finite = 0, values = 0;  // of the block's outputs, pass A's discarded ones too
    for (size_t s = 0; s < states.size(); ++s) {
      // A held-out sample feeds the held-out statistics (calibration.heldout), by global index.
      LayerStats* sink = stats ? &stats->sink_for(s_.first_sample + static_cast<int64_t>(s)) : nullptr;
      if (sink) sink->next_pass();
      std::vector<float> next(states[s].size());
      non_finite += forward_one(s, states[s].data(), next, sink, all_experts);
      values += static_cast<int64_t>(next.size());
      if (write_back) states[s].swap(next);
    }
    states_require_finite(layer_name(), stats ? StatePass::kPassA : StatePass::kPassB, non_finite, values);
  }

  // GPTAQ's pass A, sample by sample: the source block on X̃ (its output is the next X̃), its taps
  // recorded; then on X, whose taps feed H and, paired with the recorded ones, ΔX·Xᵀ.
  void run_paired(LayerStats& stats) {
    DSV4_CHECK_IN("pipeline", block_.has_value() && full_.size() == states_.size(), "GPTAQ forward without a block");
    int64_t non_finite = 0, values = 0;
    for (size_t s = 0; s < states_.size(); ++s) {
      stats.next_pass();
      TapRecorder full(stats);
      std::vector<float> next_full(full_[s].size()), next(states_[s].size());
      non_finite += forward_one(s, full_[s].data(), next_full, &full, stats.all_experts());
      PairedTapSink paired(stats, full);
      non_finite += forward_one(s, states_[s].data(), next, &paired, stats.all_experts());
      paired.finish();
      values += static_cast<int64_t>(next.size() + next_full.size());
      full_[s].swap(next_full);
    }
    full_advanced_ = true;
    states_require_finite(layer_name(), StatePass::kPassA, non_finite, values);
  }

  // X̃ <- source block(X̃), once per layer, where pass A did not (a layer that needs no data).
  void full_advance() {
    if (!gptaq_ || full_advanced_) return;
    DSV4_CHECK_IN("pipeline", block_.has_value(), "GPTAQ forward without a block");
    int64_t non_finite = 0, values = 0;
    for (size_t s = 0; s < full_.size(); ++s) {
      std::vector<float> next(full_[s].size());
      non_finite += forward_one(s, full_[s].data(), next, nullptr, /*all_experts=*/false);
      values += static_cast<int64_t>(next.size());
      full_[s].swap(next);
    }
    full_advanced_ = true;
    states_require_finite(layer_name(), StatePass::kPassB, non_finite, values);
  }

  LayerExecutorSetup s_;
  bool gptaq_ = false;           // calibration.gptq.asymmetric: the full-precision stream full_ runs too
  std::vector<std::vector<float>> full_;  // X̃: this layer's input along the source weights (GPTAQ)
  bool full_advanced_ = false;   // full_ already holds the next layer's input
  std::vector<model::RopeTable> main_rope_, compress_rope_;  // per sample length
  std::vector<std::vector<float>> states_, states_a_;        // the layer's input; pass A's kept output
  std::optional<model::BlockWeights> block_;                 // this layer's, when it runs a forward
};

}  // namespace

std::unique_ptr<LayerExecutor> layer_executor_cpu_create(const LayerExecutorSetup& setup) {
  return std::make_unique<CpuLayerExecutor>(setup);
}

std::unique_ptr<LayerExecutor> layer_executor_create(const LayerExecutorSetup& setup) {
  if (setup.cuda && setup.forward) return layer_executor_cuda_create(setup);
  return layer_executor_cpu_create(setup);
}

}  // namespace dsv4::calib

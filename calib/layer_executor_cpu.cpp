// layer_executor_cpu.cpp: the CPU executor (see layer_executor.h): the reference block forward
// (model/block.h) sample by sample on host fp32 states, a host block decoded per layer, every
// solve on the host. The states it loads and every block output it computes are scanned for NaN
// and infinity (calib/state_finite.h).
#include <optional>

#include "calib/block_linear.h"
#include "calib/host_solve.h"
#include "calib/layer_executor.h"
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
  explicit CpuLayerExecutor(const LayerExecutorSetup& s) : s_(s) {
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
  }

  void decode(int layer) override {
    block_.reset();
    if (layer < 0) return;
    block_.emplace(model::block_weights_load(*s_.source, *s_.config, "layers." + std::to_string(layer) + ".", layer));
  }


  void pass_a(LayerStats& stats, PassAOutput output) override {
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
    solved_dequant_rebuild(solved, modules, s_.threads, [](size_t) { return true; });
    block_substitute(*block_, *s_.config, modules, solved);
  }

  void pass_b(bool reuse_pass_a) override {
    if (reuse_pass_a) {
      states_.swap(states_a_);
      return;
    }
    run(states_, nullptr, /*all_experts=*/false, /*write_back=*/true);
  }

  const std::vector<std::vector<float>>* states_for_snapshot(bool) override { return &states_; }

 private:
  // states[s] <- block(states[s]) for every sample; write_back = false: only the statistics.
  void run(std::vector<std::vector<float>>& states, LayerStats* stats, bool all_experts, bool write_back) const {
    DSV4_CHECK_IN("pipeline", block_.has_value(), "CPU forward without a block");
    const model::BlockWeights& w = *block_;
    const auto& samples = *s_.samples;
    int64_t non_finite = 0, values = 0;  // of the block's outputs, pass A's discarded ones too
    for (size_t s = 0; s < samples.size(); ++s) {
      // A held-out sample feeds the held-out statistics (calibration.heldout), by global index.
      LayerStats* sink = stats ? &stats->sink_for(s_.first_sample + static_cast<int64_t>(s)) : nullptr;
      if (sink) sink->next_pass();
      model::ForwardContext ctx{s_.mode, sink, w.prefix, all_experts};
      std::vector<float> next(states[s].size());
      const model::RopeTable& rope = model::rope_is_compressed(w.spec) ? compress_rope_[s] : main_rope_[s];
      model::block_forward(w, *s_.config, rope, states[s].data(), samples[s].data(),
                           static_cast<int64_t>(samples[s].size()), next.data(), ctx);
      non_finite += non_finite_scan(next.data(), next.size()).count;
      values += static_cast<int64_t>(next.size());
      if (write_back) states[s].swap(next);
    }
    const std::string layer = w.prefix.substr(0, w.prefix.size() - 1);  // "layers.3." -> "layers.3"
    states_require_finite(layer, stats ? StatePass::kPassA : StatePass::kPassB, non_finite, values);
  }

  LayerExecutorSetup s_;
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

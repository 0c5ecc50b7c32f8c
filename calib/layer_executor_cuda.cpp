// layer_executor_cuda.cpp: the CUDA executor (see layer_executor.h) over one GpuForwarder
// (calib/gpu_forwarder.h): the block decoded on the GPU, the HC states kept there from the first
// layer to the last, pass A's Hessian sums left there for the solves, the GPTQ solves the GPU
// sweep takes batched by scheme, shape and Hessian (straight into the block for pass B), the
// rest on the host. The states it loads (on the host) and every block output (on the GPU) are
// scanned for NaN and infinity (calib/state_finite.h). Plain C++: a CPU build links
// gpu_forwarder_none.cpp, whose create() says the build has no CUDA.
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "calib/gpu_forwarder.h"
#include "calib/host_solve.h"
#include "calib/layer_executor.h"
#include "calib/run_estimate.h"
#include "calib/state_finite.h"
#include "common/check.h"
#include "common/stopwatch.h"
#include "common/log.h"
#include "common/parallel.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {
namespace {

// One GPU GPTQ batch: modules of one scheme and shape sharing one Hessian (all-experts w1/w3), or
// each with its own (w2).
struct GpuBatch {
  std::vector<size_t> members;  // indexes into the layer's modules
  bool shared_hessian = false;
};

class CudaLayerExecutor final : public LayerExecutor {
 public:
  explicit CudaLayerExecutor(const LayerExecutorSetup& s) : s_(s) {
    DSV4_CHECK_IN("pipeline", s.mode == model::NumericMode::kBf16,
                  "the GPU forward runs the bf16 numeric mode; the pipeline was asked for fp32");
    int64_t longest = 0, tokens = 0;
    for (const auto& ids : *s.samples) {
      longest = std::max<int64_t>(longest, static_cast<int64_t>(ids.size()));
      tokens += static_cast<int64_t>(ids.size());
    }
    const RunEstimate need = run_estimate(*s.recipe, *s.plan, *s.config, static_cast<int64_t>(s.samples->size()),
                                          longest, 1.0);
    gpu_ = gpu_forwarder_create(
        *s.config, {.hessian_bytes = need.gpu.hessians,
                    .state_tokens = tokens,
                    .device = s.gpu,
                    .hessians_on_device = s.hessians_on_device,
                    .sample_block = forward_sample_block(true, s.recipe->calibration.hessian_sums),
                    .first_sample = s.first_sample,
                    .memory_limit = s.gpu_memory});
  }

  void load_states(std::vector<std::vector<float>> states) override {
    const StateCount n = states_non_finite(states);  // on the host, where they come from
    states_require_finite("", StatePass::kLoaded, n.non_finite, n.values);
    host_states_ = std::move(states);
    gpu_->load_states(*s_.samples, host_states_);  // they stay there from here on
  }

  void decode(int layer) override {
    in_block_.clear();
    layer_ = "layers." + std::to_string(layer);
    if (layer >= 0) gpu_->decode_block(*s_.source, "layers." + std::to_string(layer) + ".", layer);
  }

  // With kKeep pass A's outputs are the next layer's input, on the GPU; the host states (the
  // previous layer's snapshot may still be reading them) are not touched.

  void pass_a(LayerStats& stats, PassAOutput output) override {
    // The GPU forward batches samples by length, so it cannot route a held-out sample's taps
    // (calibrate refuses --device cuda with calibration.heldout before any work; this is the backstop).
    DSV4_CHECK_IN("pipeline", !stats.heldout(), "held-out validation (calibration.heldout) runs on the CPU executor only");
    const int64_t non_finite = gpu_->run(*s_.samples, &stats, output == PassAOutput::kKeep);
    states_require_finite(layer_, StatePass::kPassA, non_finite, state_values());
  }

  void solve(const std::vector<const PlannedModule*>& modules, const std::vector<size_t>& mine, LayerStats& stats,
             std::vector<SolvedModule>& solved) override;
  void put(const std::vector<const PlannedModule*>& modules, std::vector<SolvedModule>& solved) override;

  void pass_b(bool reuse_pass_a) override {
    if (reuse_pass_a) return;  // pass A's output, counted there
    const int64_t non_finite = gpu_->run(*s_.samples, nullptr, true);
    states_require_finite(layer_, StatePass::kPassB, non_finite, state_values());
  }

  // The GPU's states come down only for the snapshot that reads them.
  const std::vector<std::vector<float>>* states_for_snapshot(bool snapshot_due) override {
    if (!snapshot_due) return nullptr;
    const auto t = SteadyClock::now();
    gpu_->store_states(host_states_);
    log_info("HC states to the host for the snapshot in %.2f s", seconds_since(t));
    return &host_states_;
  }

  Memory memory() const override {
    return {s_.gpu, gpu_->kept_bytes(), gpu_->arena_bytes(), gpu_->arena_high_water()};
  }

 private:
  std::vector<GpuBatch> batches(const std::vector<const PlannedModule*>& modules, const std::vector<size_t>& on_gpu,
                                const LayerStats& stats) const;
  void solve_batch(const GpuBatch& batch, const std::vector<const PlannedModule*>& modules, const LayerStats& stats,
                   std::vector<SolvedModule>& solved);

  LayerExecutorSetup s_;
  std::unique_ptr<GpuForwarder> gpu_;
  std::vector<std::vector<float>> host_states_;  // the loaded states, refreshed for snapshots
  std::vector<char> in_block_;                   // [module] solved straight into the block (this layer)
  std::string layer_;                            // the decoded block's name, "layers.3"

  int64_t state_values() const {  // the values of every sample's states (a block output's size)
    int64_t tokens = 0;
    for (const auto& ids : *s_.samples) tokens += static_cast<int64_t>(ids.size());
    return tokens * s_.config->hc_dim();
  }
};

// Splits this rank's modules into the GPU's share of the solves, the GPTQ modules its sweep takes
// (module_solve_gpu_eligible) and the turboquant profile's data-free encodes (quant/turboquant_cuda.h,
// whose bytes equal the host encoder's: TurboquantCuda.* and the tq3 artifact pin on an H100), and
// the CPU's, the rest. Eligibility reads the scheme, the options and the number of Hessians, not
// their values.
void gpu_split(const std::vector<size_t>& mine, const std::vector<const PlannedModule*>& mods,
               std::vector<size_t>& on_gpu, std::vector<size_t>& on_tq, std::vector<size_t>& on_cpu) {
  for (size_t i : mine) {
    const PlannedModule& m = *mods[i];
    if (module_solve_turboquant_data_free(m)) {
      on_tq.push_back(i);
      continue;
    }
    const quant::HessianResult placeholder;
    ModuleSolveInput probe{&m, nullptr, {&placeholder}};
    if (m.role == model::LinearRole::kAttnWoA) probe.hessians.push_back(&placeholder);  // one per output group
    (module_solve_gpu_eligible(probe) ? on_gpu : on_cpu).push_back(i);
  }
}

void CudaLayerExecutor::solve(const std::vector<const PlannedModule*>& mods, const std::vector<size_t>& mine,
                              LayerStats& stats, std::vector<SolvedModule>& solved) {
  in_block_.assign(mods.size(), 0);
  std::vector<size_t> on_gpu, on_tq, on_cpu;
  gpu_split(mine, mods, on_gpu, on_tq, on_cpu);
  if (stats.sums_on_device()) {  // the CPU solves read host Hessians: these come over (GPU thread)
    std::set<HessianKey> keys;
    for (size_t i : on_cpu) {
      if (mods[i]->scheme->gptq_solved()) keys.insert(mods[i]->scheme->hessian);
    }
    stats.hessians_to_host(keys);
  }
  // The GPU's solved weights never come to the host: pass B reads them in the block, the
  // writer, the other ranks and a replay take the encoded tensors. The CPU's solves follow:
  // overlapping them with the GPU batches was measured slower (their all-core rounding starves
  // the batches' host side; docs/PERFORMANCE.md, run F).
  for (const GpuBatch& b : batches(mods, on_gpu, stats)) solve_batch(b, mods, stats, solved);
  for (size_t i : on_tq) {  // turboquant, data-free: from the block's weights; put() uploads the dequant
    const auto t = SteadyClock::now();
    const PlannedModule& m = *mods[i];
    const quant::QuantArgs& a = m.scheme->scheme.weights;
    solved[i] = module_solve_from_turboquant(ModuleSolveInput{&m},
                                             gpu_->turboquant_encode(m.names.release, a.num_bits,
                                                                     static_cast<int>(a.group_size)));
    solved[i].seconds = seconds_since(t);
  }
  const HostSolveContext ctx{s_.recipe, s_.config, s_.source, &stats, nullptr, s_.threads};
  host_solve(ctx, mods, on_cpu, solved);
}

// The GPU's share batched by scheme and shape, one batch per Hessian shared by several modules
// (all-experts w1/w3) and one batch of the rest, each with its own Hessian (w2). Batches come in
// (modifier, group, rows, cols) order, shared ones before the rest, as the reports list them.
std::vector<GpuBatch> CudaLayerExecutor::batches(const std::vector<const PlannedModule*>& mods,
                                                 const std::vector<size_t>& on_gpu, const LayerStats& stats) const {
  // One scheme (its recipe group) and shape per batch; within it, the modules of each Hessian.
  struct BatchShape {
    int modifier = -1, group = -1;
    int64_t rows = 0, cols = 0;
    auto operator<=>(const BatchShape&) const = default;
  };
  // The modules of each Hessian pass A holds; one no token reached is each module's own all-zero H.
  using HessianOf = std::pair<std::optional<HessianKey>, size_t>;  // (key, 0) or (none, module)
  using ByHessian = std::map<HessianOf, std::vector<size_t>>;
  std::map<BatchShape, ByHessian> by_shape;
  for (size_t i : on_gpu) {
    const PlannedModule& m = *mods[i];
    const HessianKey& key = m.scheme->hessian;
    const HessianOf h = stats.holds(HessianId{key}) ? HessianOf{key, 0} : HessianOf{std::nullopt, i};
    by_shape[{m.modifier, m.group, m.rows, m.cols}][h].push_back(i);
  }
  std::vector<GpuBatch> out;
  for (auto& [shape, by_hessian] : by_shape) {
    GpuBatch singles;
    for (auto& [key, members] : by_hessian) {
      if (members.size() > 1) {
        out.push_back({members, true});
      } else {
        singles.members.push_back(members[0]);
      }
    }
    if (!singles.members.empty()) out.push_back(std::move(singles));
  }
  return out;
}

// One batch from the GPU's block, finished like module_solve (statistics, encoded tensors) on the
// host threads. With propagate_error the solved weights replace the source ones in the block.
void CudaLayerExecutor::solve_batch(const GpuBatch& batch, const std::vector<const PlannedModule*>& mods,
                                    const LayerStats& stats, std::vector<SolvedModule>& solved) {
  const std::vector<size_t>& members = batch.members;
  const bool shared = batch.shared_hessian;
  const auto t0 = SteadyClock::now();
  const PlannedModule& first = *mods[members[0]];
  // The Hessians: pass A's sums where they stay on the GPU (finalized there; the host keeps only
  // their token counts), else finalized on the host and uploaded by the batch.
  const bool on_device = stats.sums_on_device();
  std::vector<std::vector<quant::HessianResult>> hs(members.size());
  std::vector<const float*> h_ptrs;
  std::vector<int64_t> sum_tokens;
  std::vector<std::string> names;
  for (size_t k = 0; k < members.size(); ++k) {
    names.push_back(mods[members[k]]->names.release);
    if ((shared && k > 0) || !on_device) continue;
    const LayerStats::DeviceSum d = stats.device_hessian(HessianId{mods[members[k]]->scheme->hessian}, first.cols);
    quant::HessianResult meta;  // what the solve's report reads: no values
    meta.dim = first.cols, meta.num_tokens = d.tokens, meta.no_tokens = d.tokens == 0;
    hs[k].push_back(std::move(meta));
    h_ptrs.push_back(d.sum);
    sum_tokens.push_back(d.tokens);
  }
  if (!on_device) {
    parallel_for(members.size(), s_.threads, [&](size_t k) {
      if (!shared || k == 0) hs[k].push_back(stats.hessian(HessianId{mods[members[k]]->scheme->hessian}, first.cols));
    });
    for (size_t k = 0; k < members.size(); ++k) {
      if (!shared || k == 0) h_ptrs.push_back(hs[k][0].h.data());
    }
  }
  const double load = seconds_since(t0);
  const HostSolveContext ctx{s_.recipe, s_.config, s_.source, &stats, nullptr, s_.threads};
  const ModuleScheme& scheme = *first.scheme;
  const bool into_block = s_.recipe->calibration.propagate_error;
  // The GPU encodes the weight tensors (its codes never come to the host); the dequantized
  // weights stay there (pass B reads them in the block; others rebuild them from the tensors).
  GpuGptqBatchOptions batch_opts{.into_block = into_block, .host_dequant = false,
                                 .encode = scheme.format,
                                 .hessian_sum_tokens = std::move(sum_tokens)};
  GpuGptqBatchResult b = gpu_->gptq_batch(scheme.scheme.weights, scheme.gptq, names, h_ptrs, first.rows, first.cols,
                                          batch_opts);
  const double solve = seconds_since(t0) - load;
  parallel_for(members.size(), s_.threads, [&](size_t k) {
    ModuleSolveInput si = module_solve_input(ctx, *mods[members[k]], hs[shared ? 0 : k]);
    solved[members[k]] = module_solve_from_gptq(si, std::move(b.results[k]), &b.rel_error[k], &b.rtn_rel_error[k],
                                                &b.encoded[k]);
    in_block_[members[k]] = into_block;
  });
  const double total = seconds_since(t0);
  for (size_t k : members) solved[k].seconds = total / static_cast<double>(members.size());
  log_info("GPU GPTQ of %zu [%lld, %lld] modules (%s): Hessians %.2f s, solve %.2f s, encode %.2f s", members.size(),
           static_cast<long long>(first.rows), static_cast<long long>(first.cols),
           shared ? "one shared Hessian" : "one Hessian each", load, solve, total - load - solve);
}

// Puts the solved modules not already in the block into it: a host dequant as is (a CPU solve of
// this rank), else the GPU decode of the encoded tensors (solved by another rank, or staged for a
// replay); tensors the GPU does not decode (act-order g_idx) are decoded on the host first. An
// FP8 re-encode keeps the source's codes and e8m0 scales, so its dequant is the decode of the
// source, which the block already holds in bf16 (the GPU decode is the CPU decode rounded to
// bf16, tests/model/test_weight_decode_cuda.cu).
void CudaLayerExecutor::put(const std::vector<const PlannedModule*>& mods, std::vector<SolvedModule>& solved) {
  std::vector<char> skip = in_block_;
  skip.resize(mods.size(), 0);  // a replay: nothing solved into the block
  std::vector<EncodedWeight> encoded;
  std::vector<size_t> encoded_index;
  for (size_t i = 0; i < mods.size(); ++i) {
    if (solved[i].method == SolveMethod::kFp8Reencode) skip[i] = 1;
    if (skip[i]) continue;
    const PlannedModule& m = *mods[i];
    if (solved[i].dequant.size() == static_cast<size_t>(m.rows * m.cols)) {
      gpu_->put_weight(m.names.release, solved[i].dequant);
      skip[i] = 1;
      continue;
    }
    const ModuleScheme& scheme = *m.scheme;
    encoded.push_back({m.names.release, scheme.format, scheme.scheme.weights, &solved[i].tensors});
    encoded_index.push_back(i);
  }
  const std::vector<char> put = gpu_->put_encoded(encoded);
  for (size_t k = 0; k < put.size(); ++k) skip[encoded_index[k]] = put[k];
  solved_dequant_rebuild(solved, mods, s_.threads, [&](size_t i) { return !skip[i]; });
  for (size_t i = 0; i < mods.size(); ++i) {
    if (skip[i]) continue;
    gpu_->put_weight(mods[i]->names.release, solved[i].dequant);
    std::vector<float>().swap(solved[i].dequant);  // GBs over a layer: not kept past the upload
  }
}

}  // namespace

std::unique_ptr<LayerExecutor> layer_executor_cuda_create(const LayerExecutorSetup& setup) {
  return std::make_unique<CudaLayerExecutor>(setup);
}

}  // namespace dsv4::calib

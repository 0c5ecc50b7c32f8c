// pipeline.cpp: decode -> pass A -> solve -> pass B -> write, layer by layer (see pipeline.h).
#include "calib/pipeline.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>

#include "calib/artifact_decode.h"
#include "calib/gpu_forwarder.h"
#include "calib/layer_stats.h"
#include "calib/run_estimate.h"
#include "calib/solved_share.h"
#include "common/check.h"
#include "common/log.h"
#include "common/parallel.h"
#include "dist/ownership.h"
#include "dist/run_phase.h"
#include "model/block.h"
#include "model/block_weights.h"
#include "model/forward.h"
#include "model/rope.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const RecipeGroup& group_of(const Recipe& r, const PlannedModule& m) {
  return r.modifiers[static_cast<size_t>(m.modifier)].groups[static_cast<size_t>(m.group)];
}
const RecipeModifier& modifier_of(const Recipe& r, const PlannedModule& m) {
  return r.modifiers[static_cast<size_t>(m.modifier)];
}

bool static_acts(const RecipeGroup& g) {
  return g.scheme.input_activations && quant::activation_needs_calibration(*g.scheme.input_activations);
}
bool needs_data(const Recipe& r, const PlannedModule& m) {
  return m.quantized() && (modifier_of(r, m).kind == ModifierKind::kGptq || static_acts(group_of(r, m)));
}

// The linear of a block that a release module name refers to (routed experts excluded).
model::DenseLinear* block_linear(model::BlockWeights& w, const std::string& module) {
  DSV4_CHECK_IN("pipeline", module.starts_with(w.prefix), "%s is not in block %s", module.c_str(), w.prefix.c_str());
  const std::string leaf = module.substr(w.prefix.size());
  model::AttentionWeights& a = w.attn;
  if (leaf == "attn.wq_a") return &a.wq_a;
  if (leaf == "attn.wq_b") return &a.wq_b;
  if (leaf == "attn.wkv") return &a.wkv;
  if (leaf == "attn.wo_a") return &a.wo_a;
  if (leaf == "attn.wo_b") return &a.wo_b;
  if (a.compressor && leaf == "attn.compressor.wkv") return &a.compressor->wkv;
  if (a.compressor && leaf == "attn.compressor.wgate") return &a.compressor->wgate;
  if (a.indexer && leaf == "attn.indexer.wq_b") return &a.indexer->wq_b;
  if (a.indexer && leaf == "attn.indexer.weights_proj") return &a.indexer->weights_proj;
  if (a.indexer && leaf == "attn.indexer.compressor.wkv") return &a.indexer->compressor.wkv;
  if (a.indexer && leaf == "attn.indexer.compressor.wgate") return &a.indexer->compressor.wgate;
  if (w.ffn.shared && leaf == "ffn.shared_experts.w1") return &w.ffn.shared->w1;
  if (w.ffn.shared && leaf == "ffn.shared_experts.w2") return &w.ffn.shared->w2;
  if (w.ffn.shared && leaf == "ffn.shared_experts.w3") return &w.ffn.shared->w3;
  DSV4_FAIL("pipeline", "%s is not a linear the block forward uses", module.c_str());
}

// `E` is ExpertWeights or const ExpertWeights (reading a decoded source expert).
template <typename E>
auto* expert_linear(E& e, const std::string& module) {
  if (module.ends_with(".w1")) return &e.w1;
  if (module.ends_with(".w2")) return &e.w2;
  return &e.w3;
}

// Replaces the block's weights of the solved modules by their dequantized values (pass B).
void substitute(model::BlockWeights& w, const model::ModelConfig& c, const std::vector<const PlannedModule*>& mods,
                std::vector<SolvedModule>& solved) {
  bool any_expert = false;
  for (size_t i = 0; i < mods.size(); ++i) {
    if (mods[i]->expert >= 0) {
      any_expert = true;
      continue;
    }
    block_linear(w, mods[i]->names.release)->w = solved[i].dequant;
  }
  if (!any_expert) return;
  // Each expert's linears: the solved ones from their dequantized weights, any other decoded from
  // the source; an expert whose three linears were all solved is never decoded (at full width
  // that decode is 24 MB of MXFP4 per expert). Experts on all cores.
  std::vector<std::array<const SolvedModule*, 3>> by_expert(static_cast<size_t>(c.n_routed_experts), {nullptr, nullptr, nullptr});
  for (size_t i = 0; i < mods.size(); ++i) {
    if (mods[i]->expert < 0) continue;
    const std::string& name = mods[i]->names.release;
    const int slot = name.ends_with(".w1") ? 0 : name.ends_with(".w3") ? 1 : 2;
    by_expert[static_cast<size_t>(mods[i]->expert)][static_cast<size_t>(slot)] = &solved[i];
  }
  std::vector<model::ExpertWeights> experts(static_cast<size_t>(c.n_routed_experts));
  parallel_for(experts.size(), 0, [&](size_t e) {
    const auto& mine = by_expert[e];
    const int64_t D = c.hidden_size, I = c.moe_intermediate_size;
    const std::string stem = w.prefix + "ffn.experts." + std::to_string(e) + ".";
    model::ExpertWeights& x = experts[e];
    if (mine[0] && mine[1] && mine[2]) {
      x = {{stem + "w1", I, D, {}}, {stem + "w3", I, D, {}}, {stem + "w2", D, I, {}}};
    } else {
      x = *w.ffn.experts.get(static_cast<int>(e));
    }
    model::DenseLinear* linears[3] = {&x.w1, &x.w3, &x.w2};
    for (int k = 0; k < 3; ++k) {
      if (mine[static_cast<size_t>(k)]) linears[k]->w = mine[static_cast<size_t>(k)]->dequant;
    }
  });
  w.ffn.experts = model::ExpertSource::from_memory(std::move(experts));
}

// The module's fused partner for the NVFP4 global scale (vLLM keeps one for w1 and w3).
std::string fused_partner(const std::string& module) {
  if (module.ends_with(".w1")) return module.substr(0, module.size() - 1) + "3";
  if (module.ends_with(".w3")) return module.substr(0, module.size() - 1) + "1";
  return {};
}

// The dequantized weights of the solved modules `want(i)` selects that lack them (shared by
// another rank, or staged for a replay: both carry only the encoded tensors), decoded from those
// tensors; bit-identical to what the owner's solve computed (tests/calib/test_module_solve.cpp).
template <typename Want>
void rebuild_dequant(std::vector<SolvedModule>& solved, const std::vector<const PlannedModule*>& mods, int threads,
                     const Want& want) {
  parallel_for(solved.size(), threads, [&](size_t i) {
    const PlannedModule& m = *mods[i];
    if (!want(i) || solved[i].dequant.size() == static_cast<size_t>(m.rows * m.cols)) return;
    solved[i].dequant = encoded_linear_decode(solved[i].tensors, m.names.release, m.rows, m.cols);
  });
}

// Puts the solved modules not `skip`ped into the GPU's block for a forward: a host dequant as is
// (a CPU solve of this rank), else the GPU decode of the encoded tensors (solved by another rank,
// or staged for a replay); tensors the GPU does not decode (act-order g_idx) are decoded on the
// host first. An FP8 re-encode keeps the source's codes and e8m0 scales, so its dequant is the
// decode of the source, which the block already holds in bf16 (the GPU decode is the CPU decode
// rounded to bf16, tests/model/test_weight_decode_cuda.cu).
void put_solved(GpuForwarder& gpu, const Recipe& r, const std::vector<const PlannedModule*>& mods,
                std::vector<SolvedModule>& solved, std::vector<char> skip, int threads) {
  std::vector<EncodedWeight> encoded;
  std::vector<size_t> encoded_index;
  for (size_t i = 0; i < mods.size(); ++i) {
    if (solved[i].method == SolveMethod::kFp8Reencode) skip[i] = 1;
    if (skip[i]) continue;
    const PlannedModule& m = *mods[i];
    if (solved[i].dequant.size() == static_cast<size_t>(m.rows * m.cols)) {
      gpu.put_weight(m.names.release, solved[i].dequant);
      skip[i] = 1;
      continue;
    }
    const quant::QuantScheme& scheme = group_of(r, m).scheme;
    encoded.push_back({m.names.release, quant::quant_scheme_format(scheme), scheme.weights, &solved[i].tensors});
    encoded_index.push_back(i);
  }
  const std::vector<char> put = gpu.put_encoded(encoded);
  for (size_t k = 0; k < put.size(); ++k) skip[encoded_index[k]] = put[k];
  rebuild_dequant(solved, mods, threads, [&](size_t i) { return !skip[i]; });
  for (size_t i = 0; i < mods.size(); ++i) {
    if (skip[i]) continue;
    gpu.put_weight(mods[i]->names.release, solved[i].dequant);
    std::vector<float>().swap(solved[i].dequant);  // GBs over a layer: not kept past the upload
  }
}

float absmax(const std::vector<float>& v) {
  float a = 0.0f;
  for (float x : v) a = std::max(a, std::fabs(x));
  return a;
}

struct Forwarder {
  const model::ModelConfig& c;
  const std::vector<std::vector<int64_t>>& samples;
  model::NumericMode mode;
  std::vector<model::RopeTable> main_rope, compress_rope;  // per sample length (CPU)
  GpuForwarder* gpu = nullptr;  // set: the passes run there, on its block and its states

  // states[s] <- block(states[s]) for every sample: block `w` on the CPU; on the GPU its own block
  // and states (`states` are not read there: the GPU's come down only for snapshots).
  // write_back = false: only the statistics; the states are left as they were.
  void run(const model::BlockWeights* w, std::vector<std::vector<float>>& states, LayerStats* stats,
           bool all_experts, bool write_back = true) const {
    if (gpu) {
      gpu->run(samples, stats, write_back);
      return;
    }
    DSV4_CHECK_IN("pipeline", w != nullptr, "CPU forward without a block");
    for (size_t s = 0; s < samples.size(); ++s) {
      if (stats) stats->next_pass();
      model::ForwardContext ctx{mode, stats, w->prefix, all_experts};
      std::vector<float> next(states[s].size());
      const model::RopeTable& rope = model::rope_is_compressed(w->spec) ? compress_rope[s] : main_rope[s];
      model::block_forward(*w, c, rope, states[s].data(), samples[s].data(), static_cast<int64_t>(samples[s].size()),
                           next.data(), ctx);
      if (write_back) states[s].swap(next);
    }
  }
};

// Mean of one error field over the modules that have it (>= 0); -1 when none does.
double mean_known(const std::vector<ModuleReport>& modules, double ModuleReport::*field) {
  double s = 0;
  int n = 0;
  for (const ModuleReport& m : modules) {
    if (m.*field >= 0) s += m.*field, ++n;
  }
  return n ? s / n : -1.0;
}


// Splits this rank's modules into the GPU's share of the solves, the GPTQ modules its sweep takes
// (module_solve_gpu_eligible), and the CPU's, the rest. Eligibility reads the scheme, the options
// and the number of Hessians, not their values.
void gpu_split(const Recipe& r, const std::vector<size_t>& mine, const std::vector<const PlannedModule*>& mods,
               std::vector<size_t>& on_gpu, std::vector<size_t>& on_cpu) {
  for (size_t i : mine) {
    const PlannedModule& m = *mods[i];
    const RecipeModifier& mod = modifier_of(r, m);
    const quant::HessianResult placeholder;
    ModuleSolveInput probe{&m, &group_of(r, m), mod.kind, &mod.gptq, nullptr, {&placeholder}};
    if (m.names.release.ends_with(".wo_a")) probe.hessians.push_back(&placeholder);  // one per output group
    (module_solve_gpu_eligible(probe) ? on_gpu : on_cpu).push_back(i);
  }
}

// The GPU's share of a layer's solves (gpu_split), batched by scheme and shape, one batch per
// Hessian shared by several modules (all-experts w1/w3) and one batch of the rest, each with its
// own Hessian (w2), from the GPU's block. With `into_block` the solved weights replace the source
// ones there (pass B) and in_block[i] is set. Finished like module_solve (statistics, encoded
// tensors) on `threads` host threads.
template <typename SolveInputFn>
void gpu_solve(GpuForwarder& gpu, const Recipe& r, const std::vector<size_t>& on_gpu,
               const std::vector<const PlannedModule*>& mods, const LayerStats& stats, int threads,
               const SolveInputFn& solve_input, bool into_block, std::vector<char>& in_block,
               std::vector<SolvedModule>& solved) {
  // (modifier, group, rows, cols) -> Hessian key -> modules
  std::map<std::tuple<int, int, int64_t, int64_t>, std::map<std::string, std::vector<size_t>>> batches;
  for (size_t i : on_gpu) {
    const PlannedModule& m = *mods[i];
    std::string key = stats.hessian_key(m.names.release);
    if (key.empty()) key = "#none:" + m.names.release;  // no tokens: its own all-zero H
    batches[{m.modifier, m.group, m.rows, m.cols}][key].push_back(i);
  }
  for (auto& [shape, by_key] : batches) {
    std::vector<std::vector<size_t>> runs;  // each: modules sharing one H, or (last) one H each
    std::vector<size_t> singles;
    for (auto& [key, members] : by_key) {
      if (members.size() > 1) {
        runs.push_back(members);
      } else {
        singles.push_back(members[0]);
      }
    }
    const size_t shared_runs = runs.size();
    if (!singles.empty()) runs.push_back(singles);
    for (size_t run = 0; run < runs.size(); ++run) {
      const std::vector<size_t>& members = runs[run];
      const bool shared = run < shared_runs;
      const auto t0 = Clock::now();
      const PlannedModule& first = *mods[members[0]];
      double load = 0, solve = 0;
      // The Hessians: pass A's sums where they stay on the GPU (finalized there; the host keeps
      // only their token counts), else finalized on the host and uploaded by the batch.
      const bool on_device = stats.sums_on_device();
      std::vector<std::vector<quant::HessianResult>> hs(members.size());
      std::vector<const float*> h_ptrs;
      std::vector<int64_t> sum_tokens;
      std::vector<std::string> names;
      for (size_t k = 0; k < members.size(); ++k) {
        names.push_back(mods[members[k]]->names.release);
        if (shared && k > 0) continue;
        if (on_device) {
          const LayerStats::DeviceSum d = stats.device_hessian(names.back(), first.cols);
          quant::HessianResult meta;  // what the solve's report reads: no values
          meta.dim = first.cols, meta.num_tokens = d.tokens, meta.no_tokens = d.tokens == 0;
          hs[k].push_back(std::move(meta));
          h_ptrs.push_back(d.sum);
          sum_tokens.push_back(d.tokens);
        }
      }
      if (!on_device) {
        parallel_for(members.size(), threads, [&](size_t k) {
          if (!shared || k == 0) hs[k].push_back(stats.hessian(mods[members[k]]->names.release, first.cols));
        });
        for (size_t k = 0; k < members.size(); ++k) {
          if (!shared || k == 0) h_ptrs.push_back(hs[k][0].h.data());
        }
      }
      load = since(t0);
      const std::vector<float> no_host_weight;  // the GPU computes the statistics that would read it
      const ModuleSolveInput base = solve_input(members[0], no_host_weight, hs[0]);
      quant::GptqOptions opts = *base.gptq;
      opts.actorder = base.group->actorder;
      // The GPU encodes the weight tensors (its codes never come to the host); the dequantized
      // weights stay there (pass B reads them in the block; others rebuild them from the tensors).
      GpuGptqBatchOptions batch_opts{.into_block = into_block, .host_dequant = false,
                                     .encode = quant::quant_scheme_format(base.group->scheme),
                                     .hessian_sum_tokens = std::move(sum_tokens)};
      GpuGptqBatchResult b = gpu.gptq_batch(base.group->scheme.weights, opts, names, h_ptrs, first.rows, first.cols,
                                            batch_opts);
      solve = since(t0) - load;
      parallel_for(members.size(), threads, [&](size_t k) {
        ModuleSolveInput si = solve_input(members[k], no_host_weight, hs[shared ? 0 : k]);
        solved[members[k]] = module_solve_from_gptq(si, std::move(b.results[k]), &b.rel_error[k], &b.rtn_rel_error[k],
                                                    &b.encoded[k]);
        in_block[members[k]] = into_block;
      });
      const double total = since(t0);
      for (size_t k : members) solved[k].seconds = total / static_cast<double>(members.size());
      log_info("GPU GPTQ of %zu [%lld, %lld] modules (%s): Hessians %.2f s, solve %.2f s, encode %.2f s",
               members.size(), static_cast<long long>(first.rows), static_cast<long long>(first.cols),
               shared ? "one shared Hessian" : "one Hessian each", load, solve, total - load - solve);
    }
  }
}
}  // namespace

int LayerReport::count(SolveMethod m) const {
  return static_cast<int>(std::count_if(modules.begin(), modules.end(), [&](const ModuleReport& r) { return r.method == m; }));
}
int LayerReport::fallbacks() const {
  return static_cast<int>(std::count_if(modules.begin(), modules.end(),
                                        [](const ModuleReport& r) { return r.fallback != quant::GptqFallback::kNone; }));
}
double LayerReport::mean_rel_error() const { return mean_known(modules, &ModuleReport::rel_error); }
double LayerReport::mean_rtn_rel_error() const { return mean_known(modules, &ModuleReport::rtn_rel_error); }

nlohmann::ordered_json layer_report_json(const LayerReport& l) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["segment"] = l.name;
  j["seconds"] = {{"total", l.seconds},         {"decode", l.seconds_decode}, {"forward", l.seconds_forward},
                  {"reduce", l.seconds_reduce}, {"solve", l.seconds_solve},   {"share", l.seconds_share},
                  {"wait", l.seconds_wait},     {"write", l.seconds_write}};
  j["hessians"] = l.hessians;
  ordered_json methods = ordered_json::object();
  for (SolveMethod m : kSolveMethods) {
    if (const int k = l.count(m)) methods[std::string(solve_method_name(m))] = k;
  }
  j["methods"] = methods;
  j["fallbacks"] = l.fallbacks();
  if (l.mean_rel_error() >= 0) {
    j["mean_rel_error"] = l.mean_rel_error();
    j["mean_rtn_rel_error"] = l.mean_rtn_rel_error();
  }
  if (!l.expert_tokens.empty()) j["expert_tokens"] = l.expert_tokens;
  ordered_json mods = ordered_json::array();
  for (const ModuleReport& m : l.modules) {
    ordered_json x;
    x["module"] = m.module;
    x["method"] = solve_method_name(m.method);
    if (m.method == SolveMethod::kGptq) {
      x["loss"] = m.loss;
      x["rel_error"] = m.rel_error;
      x["rtn_rel_error"] = m.rtn_rel_error;
      x["dampening_frac"] = m.dampening_frac;
      x["fallback"] = quant::gptq_fallback_name(m.fallback);
      x["tokens"] = m.tokens;
    }
    mods.push_back(std::move(x));
  }
  j["modules"] = std::move(mods);
  return j;
}


std::string layer_report_line(const LayerReport& l, int num_segments) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf,
                        "[%d/%d] %-9s %6.2fs (decode %.2f fwd %.2f reduce %.2f solve %.2f share %.2f wait %.2f; write %.2f "
                        "in the background)",
                        l.segment + 1, num_segments, l.name.c_str(), l.seconds, l.seconds_decode, l.seconds_forward,
                        l.seconds_reduce, l.seconds_solve, l.seconds_share, l.seconds_wait, l.seconds_write);
  std::string s(buf, static_cast<size_t>(n));
  if (!l.modules.empty()) {
    s += " modules " + std::to_string(l.modules.size());
    for (SolveMethod m : kSolveMethods) {
      if (const int k = l.count(m)) s += " " + std::string(solve_method_name(m)) + "=" + std::to_string(k);
    }
  }
  if (l.mean_rel_error() >= 0) {
    n = std::snprintf(buf, sizeof buf, " err %.3e (rtn %.3e)", l.mean_rel_error(), l.mean_rtn_rel_error());
    s.append(buf, static_cast<size_t>(n));
  }
  if (l.fallbacks()) s += " fallbacks " + std::to_string(l.fallbacks());
  if (!l.expert_tokens.empty()) {
    const auto [lo, hi] = std::minmax_element(l.expert_tokens.begin(), l.expert_tokens.end());
    s += " tokens/expert " + std::to_string(*lo) + ".." + std::to_string(*hi);
  }
  return s;
}

PipelineReport pipeline_run(const PipelineInputs& in, ArtifactWriter* writer,
                            const std::function<void(const LayerReport&)>& on_layer) {
  DSV4_CHECK_IN("pipeline", in.recipe && in.plan && in.config && in.source && in.layout, "incomplete inputs");
  const Recipe& r = *in.recipe;
  const model::ModelConfig& c = *in.config;
  const Checkpoint& src = *in.source;
  const auto run_start = Clock::now();
  std::unique_ptr<dist::Communicator> self;
  dist::Communicator* comm = in.comm;
  if (!comm) {
    self = dist::communicator_self();
    comm = self.get();
  }
  const int rank = comm->rank();

  // Modules by segment, their owners, and how far the forward must go.
  std::vector<std::vector<const PlannedModule*>> by_segment(static_cast<size_t>(in.layout->num_segments));
  int last_data_layer = -1;
  for (const PlannedModule& m : in.plan->modules) {
    if (!m.quantized()) continue;
    const int seg = artifact_segment(m.names.release, c);
    DSV4_CHECK_IN("pipeline", seg < in.layout->num_segments, "%s has no segment in the layout", m.names.release.c_str());
    by_segment[static_cast<size_t>(seg)].push_back(&m);
    if (!needs_data(r, m)) continue;
    DSV4_CHECK_IN("pipeline", seg >= 1 && seg <= c.num_layers,
                  "%s (%s) needs calibration data, which is supported for the main layers only so far; quantize it "
                  "data-free (QuantizationModifier without static activations) or exclude it",
                  m.names.release.c_str(), group_of(r, m).key_path.c_str());
    last_data_layer = std::max(last_data_layer, seg - 1);
  }
  std::vector<std::vector<int>> owners(by_segment.size());
  for (size_t seg = 0; seg < by_segment.size(); ++seg) {
    std::vector<double> cost;
    for (const PlannedModule* m : by_segment[seg]) {
      cost.push_back(dist::solve_cost(m->rows, m->cols, modifier_of(r, *m).kind == ModifierKind::kGptq));
    }
    owners[seg] = dist::ownership_assign(cost, comm->world());
  }

  PipelineReport report;
  int64_t counts[2] = {static_cast<int64_t>(in.samples.size()), 0};
  for (const auto& ids : in.samples) counts[1] += static_cast<int64_t>(ids.size());
  comm->all_reduce(counts, 2, dist::ElemType::kI64, dist::ReduceOp::kSum);
  report.samples = counts[0];
  report.tokens = counts[1];
  DSV4_CHECK_IN("pipeline", last_data_layer < 0 || report.samples > 0,
                "the recipe needs calibration data (GPTQ or static activation scales) but there are no samples");

  RunCheckpoint* ck = in.checkpoint;
  const int first_segment = ck ? ck->first_segment() : 0;
  std::vector<std::vector<float>> states;
  Forwarder fwd{c, in.samples, in.mode, {}, {}};
  std::unique_ptr<GpuForwarder> gpu;
  if (in.device == ComputeDevice::kCuda && last_data_layer >= 0) {
    DSV4_CHECK_IN("pipeline", in.mode == model::NumericMode::kBf16,
                  "the GPU forward runs the bf16 numeric mode; the pipeline was asked for fp32");
    int64_t longest = 0, tokens = 0;
    for (const auto& ids : in.samples) {
      longest = std::max<int64_t>(longest, static_cast<int64_t>(ids.size()));
      tokens += static_cast<int64_t>(ids.size());
    }
    const RunEstimate need = run_estimate(r, *in.plan, c, static_cast<int64_t>(in.samples.size()), longest, 1.0);
    // Pass A's Hessians stay on the GPU for its solves when the reduce can take device buffers
    // (one rank, or NCCL): no 4.4 GB round trip through the host per full-width layer.
    gpu = gpu_forwarder_create(c, {.hessian_bytes = need.hessian_bytes_layer_peak,
                                   .state_tokens = tokens,
                                   .device = in.gpu,
                                   .hessians_on_device = comm->world() == 1 || comm->backend() == "nccl",
                                   .memory_limit = in.gpu_memory});
    fwd.gpu = gpu.get();
  }
  if (last_data_layer >= 0 && !fwd.gpu) {
    for (const auto& ids : in.samples) {
      fwd.main_rope.push_back(model::rope_table_build(c, false, static_cast<int64_t>(ids.size())));
      fwd.compress_rope.push_back(model::rope_table_build(c, true, static_cast<int64_t>(ids.size())));
    }
  }
  // The input of the first segment to compute: embeddings, or the newest snapshot, then the
  // committed layers after it replayed with their quantized weights (staged by the journal).
  if (last_data_layer >= 0 && first_segment - 1 <= last_data_layer) {
    dist::RunPhase::set("resume", "replay");
    int replay_from = 1;  // segment of layer 0
    if (ck && ck->snapshot_segment() >= 1) {
      states = ck->load_snapshot(in.first_sample, static_cast<int64_t>(in.samples.size()), in.sample_lengths,
                                 c.hc_dim());
      replay_from = ck->snapshot_segment() + 1;
    } else {
      for (const auto& ids : in.samples) states.push_back(model::model_embed_state(src, c, ids));
    }
    if (fwd.gpu) fwd.gpu->load_states(in.samples, states);  // they stay there from here on
    for (int seg = replay_from; seg < first_segment; ++seg) {
      const int layer = seg - 1;
      const std::string prefix = "layers." + std::to_string(layer) + ".";
      const std::vector<const PlannedModule*>& mods = by_segment[static_cast<size_t>(seg)];
      const bool quantized = !mods.empty() && r.calibration.propagate_error;
      std::vector<SolvedModule> ordered(mods.size());
      if (quantized) {
        std::vector<SolvedModule> staged = ck->staged(seg);
        for (size_t i = 0; i < mods.size(); ++i) {
          for (SolvedModule& m : staged) {
            if (m.module == mods[i]->names.release) ordered[i] = std::move(m);
          }
          DSV4_CHECK_IN("resume", ordered[i].module == mods[i]->names.release, "staged segment %d lacks %s", seg,
                        mods[i]->names.release.c_str());
        }
      }
      if (fwd.gpu) {  // decoded there, the committed modules put back from their encoded tensors
        fwd.gpu->decode_block(src, prefix, layer);
        if (quantized) put_solved(*fwd.gpu, r, mods, ordered, std::vector<char>(mods.size(), 0), in.threads);
        fwd.run(nullptr, states, nullptr, false);
      } else {
        model::BlockWeights w = model::block_weights_load(src, c, prefix, layer);
        if (quantized) {
          rebuild_dequant(ordered, mods, in.threads, [](size_t) { return true; });
          substitute(w, c, mods, ordered);
        }
        fwd.run(&w, states, nullptr, false);
      }
      log_info("replayed %s from its committed weights", artifact_segment_name(seg, c).c_str());
    }
  }

  // One segment's write and commit files run on a background thread while the next segment
  // computes (the writer and the journal see segments in order: one job at a time). settle()
  // waits for it and commits it on this thread, which runs every collective; the wait counts in
  // the segment that waits (for the last job, in its own segment).
  struct SegmentJob {
    RunCheckpoint::SegmentFiles files;
    int open_from_segment = 0;
    double seconds = 0.0;
  };
  struct Pending {
    LayerReport report;
    std::future<SegmentJob> job;
  };
  std::optional<Pending> pending;  // destroyed before `states`: an unsettled job is waited for
  auto settle = [&](bool last) {
    if (!pending) return;
    const auto waited_from = Clock::now();
    SegmentJob j = pending->job.get();  // rethrows the job's error here
    LayerReport lr = std::move(pending->report);
    pending.reset();
    lr.seconds_write = j.seconds;
    if (last) {
      lr.seconds_wait += since(waited_from);
      lr.seconds += since(waited_from);
    }
    if (ck) ck->commit_segment(layer_report_json(lr), j.files, j.open_from_segment);
    if (on_layer) on_layer(lr);
    report.layers.push_back(std::move(lr));
  };

  std::vector<char> share_wire;  // solved_share's wire image, kept from layer to layer
  for (int seg = first_segment; seg < in.layout->num_segments; ++seg) {
    const auto seg_start = Clock::now();
    LayerReport lr;
    lr.segment = seg;
    lr.name = artifact_segment_name(seg, c);
    const std::vector<const PlannedModule*>& mods = by_segment[static_cast<size_t>(seg)];
    const std::vector<int>& owner = owners[static_cast<size_t>(seg)];
    std::map<std::string, int> owner_of;
    for (size_t i = 0; i < mods.size(); ++i) owner_of[mods[i]->names.release] = owner[i];
    const int layer = seg - 1;
    const bool forward = layer >= 0 && layer <= last_data_layer;
    // The journal's commit of this segment: a snapshot of the next layer's input, or else (with
    // error propagation) the solved weights staged, so that a resume can replay this layer.
    const bool more_forward = forward && layer < last_data_layer;
    const bool snapshot_due = ck && more_forward && (layer + 1) % r.run.checkpoint_every == 0;
    const bool replay_needs_weights = ck && more_forward && r.calibration.propagate_error && !snapshot_due;

    // Decode (only what the forward needs; solves decode their own source weights). On the GPU
    // the block is decoded there and the GPU solves read it too.
    dist::RunPhase::set(lr.name, "decode");
    auto t = Clock::now();
    std::optional<model::BlockWeights> w;
    if (forward && fwd.gpu) {
      fwd.gpu->decode_block(src, "layers." + std::to_string(layer) + ".", layer);
    } else if (forward) {
      w.emplace(model::block_weights_load(src, c, "layers." + std::to_string(layer) + ".", layer));
    }
    lr.seconds_decode = since(t);
    // The next segment's source bytes start coming from disk while this one computes (at full
    // width a layer is ~3.7 GB of FP8/MXFP4, and a cold checkpoint is read at disk speed).
    if (seg + 1 < in.layout->num_segments) src.prefetch(artifact_segment_name(seg + 1, c) + ".");

    // Pass A: partial Hessians, input absmax, expert token counts over this rank's samples.
    dist::RunPhase::set(lr.name, "pass A");
    LayerStats stats(r.calibration.all_experts, r.calibration.w2_input);
    bool pass_a = false;
    for (const PlannedModule* m : mods) {
      if (!needs_data(r, *m)) continue;
      pass_a = true;
      if (modifier_of(r, *m).kind == ModifierKind::kGptq) stats.want_hessian(m->names.release);
      if (static_acts(group_of(r, *m))) stats.want_amax(m->names.release);
    }
    std::vector<std::vector<float>> states_a;
    t = Clock::now();
    if (pass_a && r.calibration.propagate_error) {
      // Pass B recomputes the layer's output with the quantized weights: pass A's outputs are
      // never read, only its statistics (and `states` stay the layer's input for pass B).
      fwd.run(w ? &*w : nullptr, states, &stats, r.calibration.all_experts, /*write_back=*/false);
    } else if (pass_a && fwd.gpu) {
      // Pass A's outputs are the next layer's input, on the GPU; the host states (the previous
      // layer's snapshot may still be reading them) are not touched.
      fwd.run(nullptr, states, &stats, r.calibration.all_experts);
    } else if (pass_a) {
      // Pass A's outputs are the next layer's input; `states` keep this layer's input meanwhile
      // (the previous layer's snapshot may still be reading them). GBs: copied on all cores.
      states_a.resize(states.size());
      parallel_for(states.size(), in.threads, [&](size_t k) { states_a[k] = states[k]; });
      fwd.run(w ? &*w : nullptr, states_a, &stats, r.calibration.all_experts);
    }
    lr.seconds_forward = since(t);

    // Reduce: each partial to its owner.
    t = Clock::now();
    if (pass_a) {
      dist::RunPhase::set(lr.name, "reduce");
      report.hessian_bytes_partial_peak = std::max<uint64_t>(report.hessian_bytes_partial_peak, stats.hessian_bytes());
      stats.reduce_to_owners(
          *comm,
          [&](const std::string& module) {
            const auto it = owner_of.find(module);
            return it == owner_of.end() ? -1 : it->second;
          },
          c.n_routed_experts);
      report.hessian_bytes_owned_peak = std::max<uint64_t>(report.hessian_bytes_owned_peak, stats.hessian_bytes());
      lr.hessians = static_cast<int64_t>(stats.num_hessians());
      lr.expert_tokens.assign(static_cast<size_t>(c.n_routed_experts), 0);
      for (const auto& [e, n] : stats.expert_tokens()) lr.expert_tokens[static_cast<size_t>(e)] = n;
    }
    lr.seconds_reduce = since(t);

    // Solve this rank's modules.
    dist::RunPhase::set(lr.name, "solve");
    t = Clock::now();
    std::vector<SolvedModule> solved(mods.size());
    std::vector<size_t> mine;
    for (size_t i = 0; i < mods.size(); ++i) {
      if (owner[i] == rank) mine.push_back(i);
    }
    // A module's source weight: from the block the forward already decoded, else from the checkpoint.
    auto source_weight = [&](const std::string& module, int expert, int64_t rows, int64_t cols) {
      if (!w) return model::linear_load(src, c, module, rows, cols).w;
      if (expert < 0) return block_linear(*w, module)->w;
      auto e = w->ffn.experts.get(expert);
      return expert_linear(*e, module)->w;
    };
    // A module's solve input (its Hessians go to `hs`, which must outlive the input).
    auto solve_input = [&](size_t i, const std::vector<float>& weight, std::vector<quant::HessianResult>& hs) {
      const PlannedModule& m = *mods[i];
      const RecipeModifier& mod = modifier_of(r, m);
      ModuleSolveInput si{&m, &group_of(r, m), mod.kind, &mod.gptq, weight.data(), {}, 0.0f, stats.amax(m.names.release)};
      if (mod.kind == ModifierKind::kGptq && hs.empty()) {
        if (m.names.release.ends_with(".wo_a")) {
          for (int gi = 0; gi < c.o_groups; ++gi) hs.push_back(stats.hessian(m.names.release, m.cols, gi));
        } else {
          hs.push_back(stats.hessian(m.names.release, m.cols));
        }
      }
      for (const quant::HessianResult& h : hs) si.hessians.push_back(&h);
      return si;
    };
    std::vector<size_t> on_gpu, on_cpu = mine;
    std::vector<char> in_block(mods.size(), 0);  // solved straight into the GPU's block (pass B)
    if (fwd.gpu) {
      on_cpu.clear();
      gpu_split(r, mine, mods, on_gpu, on_cpu);
    }
    if (stats.sums_on_device()) {  // the CPU solves read host Hessians: these come over (GPU thread)
      std::vector<std::string> names;
      for (size_t i : on_cpu) names.push_back(mods[i]->names.release);
      stats.hessians_to_host(names);
    }
    // The GPU's solved weights never come to the host: pass B reads them in the block, the
    // writer, the other ranks and a replay take the encoded tensors. The CPU's solves follow:
    // overlapping them with the GPU batches was measured slower (their all-core rounding starves
    // the batches' host side; docs/PERFORMANCE.md, run F).
    if (fwd.gpu) {
      gpu_solve(*fwd.gpu, r, on_gpu, mods, stats, in.threads, solve_input, r.calibration.propagate_error, in_block,
                solved);
    }
    parallel_for(on_cpu.size(), in.threads, [&](size_t j) {
      const size_t i = on_cpu[j];
      const PlannedModule& m = *mods[i];
      const RecipeGroup& g = group_of(r, m);
      std::vector<float> weight;
      std::vector<quant::HessianResult> hs;
      ModuleSolveInput si = solve_input(i, weight, hs);
      if (module_solve_needs_weight(si, src)) {
        weight = source_weight(m.names.release, m.expert, m.rows, m.cols);
        si.weight = weight.data();
      }
      if (g.scheme.weights.strategy == quant::Strategy::kTensorGroup) {
        const std::string partner = fused_partner(m.names.release);
        si.amax_tensor = absmax(weight);
        if (!partner.empty()) si.amax_tensor = std::max(si.amax_tensor, absmax(source_weight(partner, m.expert, m.rows, m.cols)));
      }
      solved[i] = module_solve(si, src);
    });
    for (size_t i : mine) {
      if (solved[i].fallback == quant::GptqFallback::kNone) continue;
      log_warn("%s: %s (%lld tokens)", solved[i].module.c_str(),
               std::string(quant::gptq_fallback_name(solved[i].fallback)).c_str(),
               static_cast<long long>(solved[i].tokens));
    }
    lr.seconds_solve = since(t);

    // Share: every rank gets every solved module (pass B needs them all, the writer too).
    dist::RunPhase::set(lr.name, "share");
    t = Clock::now();
    const SolvedShareStats shared = solved_share(solved, owner, *comm, in.threads, share_wire);
    if (comm->world() > 1 && !mods.empty()) {
      log_info("%s: shared %.2f GB of solved modules: pack %.2f s, broadcast %.2f s (%.2f GB/s), unpack %.2f s",
               lr.name.c_str(), shared.bytes / 1e9, shared.seconds_pack, shared.seconds_transfer,
               shared.seconds_transfer > 0 ? shared.bytes / 1e9 / shared.seconds_transfer : 0.0, shared.seconds_unpack);
    }
    // Pass B reads every module's weight (unless it reuses pass A's output); the ones other ranks
    // solved came as encoded tensors. The GPU decodes them into its block in pass B; the CPU
    // forward needs them in fp32 here.
    if (forward && !fwd.gpu && !(pass_a && !r.calibration.propagate_error)) {
      rebuild_dequant(solved, mods, in.threads, [&](size_t i) { return owner[i] != rank; });
    }
    lr.seconds_share = since(t);
    for (const SolvedModule& s : solved) {
      lr.modules.push_back({s.module, s.method, s.loss, s.rel_error, s.rtn_rel_error, s.dampening_frac_used,
                            s.fallback, s.tokens, s.seconds});
    }

    // The previous segment's files are durable once its background job ends; its journal line
    // goes in now (a collective), before pass B overwrites the states its snapshot reads.
    t = Clock::now();
    settle(false);
    lr.seconds_wait = since(t);

    // Pass B: the next layer's input from the quantized layer (or the source layer's output).
    dist::RunPhase::set(lr.name, "pass B");
    t = Clock::now();
    if (forward) {
      if (pass_a && !r.calibration.propagate_error) {
        if (!fwd.gpu) states.swap(states_a);
      } else {
        if (fwd.gpu) {
          put_solved(*fwd.gpu, r, mods, solved, in_block, in.threads);
        } else if (!mods.empty()) {
          substitute(*w, c, mods, solved);
        }
        fwd.run(w ? &*w : nullptr, states, nullptr, false);
      }
    }
    lr.seconds_forward += since(t);

    // The GPU's states come down only for the snapshot that reads them.
    if (forward && fwd.gpu && snapshot_due) {
      t = Clock::now();
      fwd.gpu->store_states(states);
      log_info("%s: HC states to the host for the snapshot in %.2f s", lr.name.c_str(), since(t));
      lr.seconds_forward += since(t);
    }

    // Write the segment and its commit files in the background while the next segment computes;
    // `states` stay untouched until the next pass B, which settles this job first.
    lr.seconds = since(seg_start);
    const std::string name = lr.name;
    const std::vector<std::vector<float>>* out_states = forward && (!fwd.gpu || snapshot_due) ? &states : nullptr;
    pending.emplace(std::move(lr), std::async(std::launch::async, [&, seg, name, out_states, snapshot_due,
                                                                   replay_needs_weights, solved = std::move(solved)] {
      struct ClearPhase {
        ~ClearPhase() { dist::RunPhase::clear_background(); }
      } clear_phase;
      const auto t0 = Clock::now();
      SegmentJob j;
      dist::RunPhase::set_background(name, "write");
      std::set<std::string> writer_needs;
      if (writer) {
        std::map<std::string, const SolvedModule*> by_name;
        for (const SolvedModule& m : solved) by_name[m.module] = &m;
        writer->write_segment(seg, by_name);
        j.open_from_segment = writer->open_from_segment();
        writer_needs = writer->modules_in_open_shard(seg);
      }
      if (ck) {
        j.files = ck->write_segment_files(seg, solved, out_states, in.first_sample, snapshot_due, replay_needs_weights,
                                          writer_needs);
      }
      j.seconds = since(t0);
      return j;
    }));
  }
  settle(true);
  if (gpu) {  // the arena is sized to the GPU; its high water is what the run used of it
    log_info("GPU %d memory: arena high water %.1f of %.1f GB, besides the planned block, Hessians and states",
             in.gpu, gpu->arena_high_water() / 1e9, gpu->arena_bytes() / 1e9);
    report.gpu = in.gpu;
    report.gpu_kept_bytes = gpu->kept_bytes();
    report.gpu_arena_bytes = gpu->arena_bytes();
    report.gpu_arena_high_water = gpu->arena_high_water();
  }
  dist::RunPhase::set("finish", "");
  report.seconds = since(run_start);
  return report;
}

}  // namespace dsv4::calib

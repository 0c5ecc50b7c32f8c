// run_estimate.cpp: FLOP and byte counts of a calibration run, and the sgemm probe (see
// run_estimate.h).
#include "calib/run_estimate.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "calib/device_hessian_sum.h"
#include "common/check.h"
#include "common/parallel.h"
#include "model/ops.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {
namespace {

// Bytes of a Linear weight and its scales as the release stores it (model/inventory.h).
uint64_t source_bytes(const PlannedModule& m, const model::ModelConfig& c) {
  const uint64_t n = static_cast<uint64_t>(m.rows) * static_cast<uint64_t>(m.cols);
  switch (m.source) {
    case model::TensorEncoding::kFp8Block: {
      const uint64_t b = static_cast<uint64_t>(c.fp8_block);
      return n + (static_cast<uint64_t>(m.rows) + b - 1) / b * ((static_cast<uint64_t>(m.cols) + b - 1) / b);
    }
    case model::TensorEncoding::kMxfp4: return n / 2 + n / 32;  // two e2m1 per byte + one e8m0 per 32
    default: return n * 2;                                      // BF16
  }
}

// Score and value FLOPs of the core attention (and the indexer's scores) of one sequence of L
// tokens, beyond the Linears: per query, q·Kᵀ and P·K over its n keys cost 2·H·dh·n each, with n
// = the sliding window so far + the compressed entries it uses (HCA: every visible one; CSA: the
// indexer's min(index_topk, visible) picks). The indexer scores every query against all W
// entries (model/attention_indexer.cpp masks afterwards). Left out as small next to these: the
// compressor's per-channel softmax pooling, the sink softmax, norms and RoPE.
double attention_flops(const model::ModelConfig& c, const model::LayerSpec& spec, int64_t len) {
  const int m = spec.compress_ratio;
  const int64_t windows = m > 0 ? len / m : 0;
  double keys = 0;
  for (int64_t t = 0; t < len; ++t) {
    int64_t n = std::min<int64_t>(t + 1, c.sliding_window);
    if (m > 0) {
      const int64_t visible = std::min<int64_t>((t + 1) / m, windows);
      n += spec.has_indexer() ? std::min<int64_t>(visible, c.index_topk) : visible;
    }
    keys += static_cast<double>(n);
  }
  double f = 4.0 * c.num_heads * c.head_dim * keys;
  if (spec.has_indexer()) {
    f += 2.0 * static_cast<double>(len) * c.index_n_heads * c.index_head_dim * static_cast<double>(windows);
  }
  return f;
}

// A Hessian's use (ModuleScheme::hessian says which modules share one).
struct HessianUse {
  int64_t cols = 0;
  int groups = 1;             // wo_a: one H per output group
  double token_share = 1.0;   // fraction of the run's tokens that reach it
};

std::string flops_text(double f) {
  if (f >= 1e15) return strfmt("%.3g PFLOP", f / 1e15);
  if (f >= 1e12) return strfmt("%.3g TFLOP", f / 1e12);
  return strfmt("%.3g GFLOP", f / 1e9);
}

std::string bytes_text(double b) {
  if (b >= 1e9) return strfmt("%.3g GB", b / 1e9);
  return strfmt("%.3g MB", b / 1e6);
}

}  // namespace

std::string duration_text(double s) {
  if (s < 60) return strfmt(s < 10 ? "%.2f s" : "%.1f s", s);
  if (s < 3600) return strfmt("%.1f min", s / 60);
  if (s < 2 * 86400) return strfmt("%.1f h", s / 3600);
  return strfmt("%.1f days", s / 86400);
}

GpuMemoryPlan gpu_memory_plan(const model::ModelConfig& c, uint64_t hessian_bytes, int64_t state_tokens) {
  // block_weights_upload's allocations: attention (wq_a, wq_b, wkv, grouped wo_a, wo_b), the
  // compressor and indexer linears, the HC mixers, the router, every routed expert and the shared
  // expert, all bf16.
  const uint64_t D = c.hidden_size, I = c.moe_intermediate_size, E = c.n_routed_experts, Q = c.q_lora_rank;
  const uint64_t attn = Q * D + static_cast<uint64_t>(c.q_dim()) * Q + static_cast<uint64_t>(c.head_dim) * D +
                        static_cast<uint64_t>(c.o_dim()) * c.o_group_in() + D * c.o_dim();
  const uint64_t compress = 2 * 2 * static_cast<uint64_t>(c.head_dim) * D +
                            static_cast<uint64_t>(c.index_n_heads) * c.index_head_dim * Q + c.index_n_heads * D +
                            2 * 2 * static_cast<uint64_t>(c.index_head_dim) * D;
  const uint64_t hc = 2 * 3 * static_cast<uint64_t>(c.hc_mix()) * c.hc_dim();
  GpuMemoryPlan p;
  p.block_weights = 2 * (attn + compress + hc + E * D + (E + 1) * 3 * I * D);
  p.weights = p.block_weights + (p.block_weights >> 3);
  p.hessians = hessian_bytes;
  p.states = static_cast<uint64_t>(state_tokens) * static_cast<uint64_t>(c.hc_dim()) * 2;
  return p;
}

RunEstimate run_estimate(const Recipe& recipe, const ModulePlan& plan, const model::ModelConfig& config,
                         int64_t samples, int64_t seq_len, double gflops) {
  DSV4_CHECK_IN("estimate", samples >= 0 && seq_len >= 0, "samples %lld, seq_len %lld", static_cast<long long>(samples),
                static_cast<long long>(seq_len));
  DSV4_CHECK_IN("estimate", gflops > 0, "sgemm rate %g GFLOP/s must be positive", gflops);
  RunEstimate e;
  e.samples = samples;
  e.seq_len = seq_len;
  e.tokens = samples * seq_len;
  e.all_experts = recipe.calibration.all_experts;
  e.gptaq = recipe.gptaq();
  e.gflops = gflops;
  e.output_bytes = plan.output_bytes;
  const int num_layers = config.num_layers;
  const double tokens = static_cast<double>(e.tokens);
  const double routed_share = static_cast<double>(config.num_experts_per_tok) / config.n_routed_experts;

  // How far the forward goes, and which layers run pass A.
  int last_data_layer = -1;
  std::set<int> pass_a;
  int64_t outside = 0;
  for (const PlannedModule& m : plan.modules) {
    if (!m.needs_data()) continue;
    if (m.layer < 0 || m.layer >= num_layers) {
      ++outside;
      continue;
    }
    last_data_layer = std::max(last_data_layer, m.layer);
    pass_a.insert(m.layer);
  }
  e.forward_layers = last_data_layer + 1;
  e.pass_a_layers = static_cast<int>(pass_a.size());
  if (outside) {
    e.notes.push_back(strfmt("%lld module(s) outside the main layers need data; the pipeline refuses them, so they are "
                             "not counted", static_cast<long long>(outside)));
  }
  if (last_data_layer < 0) e.notes.push_back("data-free recipe: no forward, no Hessians");
  if (last_data_layer >= 0 && e.tokens == 0) {
    e.notes.push_back("no tokens (dataset.num_samples or seq_len is 0): pass --num-samples N --seq-len L");
  }

  // Forward, per sequence of seq_len tokens, then times the samples. Per token: 2·params of every
  // Linear of the block but the routed experts (attention, compressor, indexer, shared expert), the
  // router, and HC_pre's mixing projection at both sites (HC's O(hc²·D) mixes are left out).
  std::map<int, double> dense_params;  // layer -> Σ rows·cols of its non-routed Linears
  for (const PlannedModule& m : plan.modules) {
    if (m.layer >= 0 && m.layer < num_layers && m.expert < 0) {
      dense_params[m.layer] += static_cast<double>(m.rows) * static_cast<double>(m.cols);
    }
  }
  const double hidden = config.hidden_size, inter = config.moe_intermediate_size;
  const double per_token_other = 2.0 * hidden * config.n_routed_experts + 2.0 * 2.0 * config.hc_mix() * config.hc_dim();
  const double routed_topk = 2.0 * 3.0 * hidden * inter * config.num_experts_per_tok;  // w1, w3, w2 of k experts
  const double all_experts_w13 = 2.0 * 2.0 * hidden * inter * config.n_routed_experts;  // every expert's w1, w3
  const double len = static_cast<double>(seq_len), n = static_cast<double>(samples);
  for (int l = 0; l <= last_data_layer; ++l) {
    const double base =
        len * (2.0 * dense_params[l] + per_token_other) + attention_flops(config, config.layer(l), seq_len);
    const double routed = len * routed_topk;
    const bool a = pass_a.count(l) > 0;
    if (a) {
      const double extra = e.all_experts ? len * all_experts_w13 : 0.0;
      e.forward_pass_a_flops += n * (base + routed + extra);
      e.routed_expert_flops += n * (routed + extra);
    }
    if (!a || recipe.calibration.propagate_error) {  // else pass A's output is the next layer's input
      e.forward_pass_b_flops += n * (base + routed);
      e.routed_expert_flops += n * routed;
    }
    if (e.gptaq) {  // X̃ through the source block: with pass A's taps (all experts) where pass A runs
      const double taps = a && e.all_experts ? len * all_experts_w13 : 0.0;
      e.forward_full_stream_flops += n * (base + routed + taps);
      e.routed_expert_flops += n * (routed + taps);
    }
  }

  // Held-out validation (calib/heldout_solve.cpp) solves each GPTQ module once per candidate
  // damping and once more on the merged Hessian (refit), each with its report; the RTN candidate
  // adds its 2 forms on the calibration H, and every candidate (RTN too) 2 on the held-out H.
  const HeldoutOptions& ho = recipe.calibration.heldout;
  const double solves = ho.enabled() ? static_cast<double>(ho.dampings.size()) + (ho.refit ? 1 : 0) : 1.0;
  const double heldout_forms = ho.enabled() ? 2.0 + 2.0 * (static_cast<double>(ho.dampings.size()) + 1) : 0.0;

  // Hessians and GPTQ solves of the GPTQ modules of the main layers.
  std::map<HessianKey, HessianUse> hess;
  std::set<HessianKey> cross;                // the GPTAQ modules' Hessians: ΔX·Xᵀ summed beside them
  std::map<int, double> recorded_cols;       // layer -> Σ cols·groups of its GPTAQ Hessians' inputs
  for (const PlannedModule& m : plan.modules) {
    if (!m.quantized() || !m.scheme->gptq_solved() || m.layer < 0 || m.layer >= num_layers) continue;
    HessianUse u;
    u.cols = m.cols;
    if (m.role == model::LinearRole::kAttnWoA) u.groups = config.o_groups;
    if (m.expert >= 0) {
      // Routed w1/w3 see the rows routed to them, or every row in all-experts mode; w2 sees every
      // row in all-experts mode unless the weighted convention drops the unrouted (weight 0) rows.
      const bool w2 = m.role == model::LinearRole::kExpertW2;
      const bool every_row = e.all_experts && (!w2 || recipe.calibration.w2_input == W2Input::kUnweighted);
      u.token_share = every_row ? 1.0 : routed_share;
    }
    hess[m.scheme->hessian] = u;
    if (m.scheme->gptq.asymmetric && cross.insert(m.scheme->hessian).second) {
      recorded_cols[m.layer] += static_cast<double>(u.cols) * u.groups;
    }

    // One solve per H (wo_a: per output group of rows/groups rows): the damped Cholesky, inverse
    // and second Cholesky (≈ cols³ together) and the blocked column sweep (≈ 2·rows·cols²). Every
    // module factors its own H, shared or not, as module_solve does. The report computes
    // tr(ΔHΔᵀ) and tr(WHWᵀ) for GPTQ and for RTN: 4 quadratic forms of 2·rows·cols² (held-out
    // validation: `solves` and `heldout_forms` above).
    const double rows = static_cast<double>(m.rows), cols = static_cast<double>(m.cols);
    e.gptq_flops += solves * (u.groups * cols * cols * cols + 2.0 * rows * cols * cols);
    e.gptq_report_flops += (4.0 * solves + heldout_forms) * 2.0 * rows * cols * cols;
    ++e.gptq_modules;
  }
  // 2·tokens·cols² is the full XᵀX as a GEMM (or DESIGN §5) counts it; the CPU accumulator
  // (quant/hessian.cpp) computes the upper triangle only, half of that, in a plain loop.
  for (const auto& [key, u] : hess) {
    const double cols = static_cast<double>(u.cols);
    e.hessian_flops += (cross.count(key) ? 2 : 1) * u.groups * 2.0 * tokens * u.token_share * cols * cols;
    e.hessians += u.groups;
  }
  e.hessian_bytes_layer_peak = static_cast<uint64_t>(plan.hessian_bytes_peak_layer);  // the plan counts them
  // GPTAQ: the recorder's inputs of one sample (ΔX·Xᵀ's bytes: below, after the GPU plan, which
  // a GPTAQ run never uses).
  for (const auto& [layer, cols] : recorded_cols) {
    e.gptaq_recorder_bytes =
        std::max<uint64_t>(e.gptaq_recorder_bytes, static_cast<uint64_t>(cols * static_cast<double>(seq_len)) * sizeof(float));
  }
  // Exact sums (issue 29) hold three int64 limbs per entry on the GPU, 6x the fp32 bytes, and
  // round one Hessian at a time to fp32 (its 4 bytes per entry come on top, transiently).
  const bool exact = recipe.calibration.hessian_sums == HessianSums::kExact;
  const uint64_t entries = e.hessian_bytes_layer_peak / hessian_sum_entry_bytes(false);  // the plan counts fp32
  e.gpu = gpu_memory_plan(config, entries * hessian_sum_entry_bytes(exact), e.tokens);
  // GPTAQ's ΔX·Xᵀ beside each of its Hessians, of the same size (an upper bound when only some of
  // a layer's Hessians are GPTAQ's).
  if (!cross.empty()) e.hessian_bytes_layer_peak *= 2;
  // Held-out validation keeps a second set of the same Hessians for the held-out samples.
  if (ho.enabled() && !hess.empty()) e.hessian_bytes_layer_peak *= 2;
  e.state_bytes = static_cast<uint64_t>(e.tokens) * static_cast<uint64_t>(config.hc_dim()) * sizeof(float);
  if (e.gptaq && e.forward_layers > 0) {
    e.notes.push_back(strfmt("GPTAQ (calibration.gptq.asymmetric; the CPU runs it, --device cuda refuses it): the "
                             "full-precision stream runs every forward layer's source block too (in the forward "
                             "above), the host holds both streams' states (%s, twice the HC states above), the "
                             "Hessian sums double with ΔX·Xᵀ beside them, and pass A's tap recorder holds %s "
                             "for the sample in flight",
                             bytes_text(2.0 * static_cast<double>(e.state_bytes)).c_str(),
                             bytes_text(static_cast<double>(e.gptaq_recorder_bytes)).c_str()));
  }

  // Bytes decoded: the whole block of every forward layer, and every quantized module elsewhere
  // (its solve decodes, or for the exact re-encodings reads, its source).
  for (const PlannedModule& m : plan.modules) {
    const bool forward_layer = m.layer >= 0 && m.layer <= last_data_layer;
    if (forward_layer || m.quantized()) e.decode_bytes += source_bytes(m, config);
  }

  const double rate = gflops * 1e9;
  e.seconds_forward = e.forward_flops() / rate;
  e.seconds_hessian = e.hessian_flops / rate;
  e.seconds_gptq = (e.gptq_flops + e.gptq_report_flops) / rate;
  return e;
}

double measure_sgemm_gflops(int threads) {
  // Large enough to leave OpenBLAS's small-matrix path and use every thread, small enough (5 MB)
  // that the probe takes ~0.2 s on any machine; values in [-0.5, 0.5] (no denormals).
  constexpr int64_t kRows = 256, kIn = 1024, kOut = 1024;
  std::vector<float> x(static_cast<size_t>(kRows * kIn)), w(static_cast<size_t>(kOut * kIn));
  std::vector<float> y(static_cast<size_t>(kRows * kOut));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 17) - 8) / 16.0f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(static_cast<int>(i % 13) - 6) / 12.0f;
  model::linear_forward(x.data(), kRows, kIn, w.data(), kOut, y.data(), threads);  // warm-up: caches
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  int64_t calls = 0;
  double elapsed = 0;
  do {
    model::linear_forward(x.data(), kRows, kIn, w.data(), kOut, y.data(), threads);
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < 0.2);
  return 2.0 * kRows * kIn * kOut * static_cast<double>(calls) / elapsed / 1e9;
}

int sgemm_probe_threads(int threads) { return parallel_threads(threads); }

std::string run_estimate_text(const RunEstimate& e) {
  std::string out = strfmt("time estimate: %lld samples x %lld tokens = %lld tokens (at most: shorter records are not "
                           "padded); forward through %d main layer(s), pass A in %d, all-experts %s\n",
                           static_cast<long long>(e.samples), static_cast<long long>(e.seq_len),
                           static_cast<long long>(e.tokens), e.forward_layers, e.pass_a_layers,
                           e.all_experts ? "on" : "off");
  const std::string full_stream =
      e.gptaq ? ", full-precision stream " + flops_text(e.forward_full_stream_flops) : std::string();
  out += strfmt("  forward   %-10s %s: pass A %s, pass B %s%s; routed experts %s\n",
                duration_text(e.seconds_forward).c_str(), flops_text(e.forward_flops()).c_str(),
                flops_text(e.forward_pass_a_flops).c_str(), flops_text(e.forward_pass_b_flops).c_str(),
                full_stream.c_str(), flops_text(e.routed_expert_flops).c_str());
  out += strfmt("  hessians  %-10s %s: %lld distinct\n", duration_text(e.seconds_hessian).c_str(),
                flops_text(e.hessian_flops).c_str(), static_cast<long long>(e.hessians));
  out += strfmt("  gptq      %-10s %s: %lld modules, + error report %s\n", duration_text(e.seconds_gptq).c_str(),
                flops_text(e.gptq_flops).c_str(), static_cast<long long>(e.gptq_modules),
                flops_text(e.gptq_report_flops).c_str());
  out += strfmt("  total     %-10s %s at %.1f GFLOP/s: a lower bound (sgemm rate for every FLOP; decode and I/O not "
                "timed)\n", duration_text(e.seconds()).c_str(), flops_text(e.total_flops()).c_str(), e.gflops);
  out += strfmt("  bytes                %s of source Linears decoded; %s of Linear weights written\n",
                bytes_text(static_cast<double>(e.decode_bytes)).c_str(),
                bytes_text(static_cast<double>(e.output_bytes)).c_str());
  if (e.forward_layers > 0) {
    out += strfmt("memory: GPU per rank (--device cuda): one block's bf16 weights %s (+1/8 staging), one layer's "
                  "Hessians %s, the HC states %s (bf16, all samples; a rank holds its share), workspace %s = %s kept; "
                  "the rest is the arena for activations and solves (at least %s, so a GPU needs %s free)\n",
                  bytes_text(static_cast<double>(e.gpu.block_weights)).c_str(),
                  bytes_text(static_cast<double>(e.gpu.hessians)).c_str(),
                  bytes_text(static_cast<double>(e.gpu.states)).c_str(),
                  bytes_text(static_cast<double>(e.gpu.workspace)).c_str(),
                  bytes_text(static_cast<double>(e.gpu.kept())).c_str(),
                  bytes_text(static_cast<double>(e.gpu.min_arena)).c_str(),
                  bytes_text(static_cast<double>(e.gpu.minimum())).c_str());
    out += strfmt("        host: HC states %s over all ranks, split by samples (fp32; twice that during pass A), "
                  "each rank's pass-A Hessians up to %s a layer; disk: a snapshot of the states every "
                  "run.checkpoint_every layers, %s (half as bf16 from the GPU forward), two kept while the newer "
                  "one commits\n",
                  bytes_text(static_cast<double>(e.state_bytes)).c_str(),
                  bytes_text(static_cast<double>(e.hessian_bytes_layer_peak)).c_str(),
                  bytes_text(static_cast<double>(e.state_bytes)).c_str());
  }
  for (const std::string& n : e.notes) out += "  note: " + n + "\n";
  return out;
}

nlohmann::ordered_json run_estimate_json(const RunEstimate& e) {
  nlohmann::ordered_json j;
  j["samples"] = e.samples;
  j["seq_len"] = e.seq_len;
  j["tokens"] = e.tokens;
  j["forward_layers"] = e.forward_layers;
  j["pass_a_layers"] = e.pass_a_layers;
  j["all_experts"] = e.all_experts;
  j["forward_pass_a_flops"] = e.forward_pass_a_flops;
  j["forward_pass_b_flops"] = e.forward_pass_b_flops;
  j["forward_full_stream_flops"] = e.forward_full_stream_flops;
  j["gptaq"] = e.gptaq;
  j["routed_expert_flops"] = e.routed_expert_flops;
  j["hessian_flops"] = e.hessian_flops;
  j["hessians"] = e.hessians;
  j["gptq_flops"] = e.gptq_flops;
  j["gptq_report_flops"] = e.gptq_report_flops;
  j["gptq_modules"] = e.gptq_modules;
  j["total_flops"] = e.total_flops();
  j["decode_bytes"] = e.decode_bytes;
  j["output_linear_bytes"] = e.output_bytes;
  j["gflops"] = e.gflops;
  j["memory"] = {{"gpu_block_weights", e.gpu.block_weights}, {"gpu_weights_with_staging", e.gpu.weights},
                 {"gpu_hessians", e.gpu.hessians},           {"gpu_states", e.gpu.states},
                 {"gpu_workspace", e.gpu.workspace},
                 {"gpu_kept", e.gpu.kept()},                 {"gpu_minimum", e.gpu.minimum()},
                 {"host_states", e.state_bytes},             {"snapshot", e.state_bytes},
                 {"gptaq_recorder", e.gptaq_recorder_bytes}};
  j["seconds"] = {{"forward", e.seconds_forward},
                  {"hessian", e.seconds_hessian},
                  {"gptq", e.seconds_gptq},
                  {"total", e.seconds()}};
  j["notes"] = e.notes;
  return j;
}

}  // namespace dsv4::calib

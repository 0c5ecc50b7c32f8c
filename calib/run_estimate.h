// run_estimate.h: the work and time a calibration run of a recipe would take, from the plan and
// the model's shape alone (`dsv4-calib plan` prints it): forward FLOPs of pass A (with taps) and
// pass B, Hessian accumulation FLOPs per distinct Hessian, GPTQ solve FLOPs, bytes decoded and
// written, and seconds = FLOPs / a measured sgemm rate.
//
//   const double gflops = measure_sgemm_gflops(0);   // every hardware thread, as the forward
//   RunEstimate e = run_estimate(recipe, plan, config, recipe.dataset.num_samples, recipe.dataset.seq_len, gflops);
//   std::fputs(run_estimate_text(e).c_str(), stdout);  // a few lines; run_estimate_json for --json
//
// What it follows (calib/pipeline.cpp): the forward runs the main layers 0..L, L the last layer
// with a module that needs data (GPTQ, or a static input-activation scheme); a data-free recipe
// runs no forward. Pass A runs in the layers with such a module; in all-experts mode it pushes
// every token through every routed expert's w1/w3 (model/moe.cpp, for the taps) besides the
// routed top-k. Pass B (top-k only) runs in every forward layer unless pass A's output is kept
// (propagate_error false). Hessians follow the taps' sharing (calib/layer_stats.h). Tokens are
// samples·seq_len, an upper bound: records shorter than seq_len are not padded.
//
// The seconds are a lower bound: the CPU reference also runs non-GEMM loops (Hessian
// accumulation, GPTQ's double-precision Cholesky and sweep, softmax, RoPE, weight decode, writing)
// slower than sgemm, and small GEMMs below the probe's rate. Measured on the 2-core build machine
// (tiny model, w4a16_mtp, 32 samples × 64 tokens, one thread): the run took 3.5 s against 0.50-0.61 s
// estimated, ≈ 6-7× (forward with Hessians ≈ 3-3.7×, GPTQ solves ≈ 15-20×); docs/PERFORMANCE.md
// ("Plan's time estimate") has the commands.
// Tests: tests/calib/test_run_estimate.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "calib/module_plan.h"
#include "calib/recipe.h"
#include "model/config.h"

namespace dsv4::calib {

// What --device cuda keeps on each rank's GPU before the arena takes the rest (the forwarder
// refuses a GPU without `minimum()` free): one block's bf16 weights with 1/8 more for decode
// staging, one layer's fp32 Hessians (the largest layer), the rank's HC states in bf16 (they
// stay on the GPU from layer to layer), cuBLAS/cub workspace; the arena holds activations and
// solves and must have at least `min_arena`.
struct GpuMemoryPlan {
  uint64_t block_weights = 0;  // bf16 bytes of one block's weights on the device
  uint64_t weights = 0;        // block_weights + 1/8 for staging
  uint64_t hessians = 0;
  uint64_t states = 0;         // bf16 [tokens, hc_dim] of the rank's samples
  uint64_t workspace = 512ull << 20;
  uint64_t min_arena = 1ull << 30;
  uint64_t kept() const { return weights + hessians + states + workspace; }
  uint64_t minimum() const { return kept() + min_arena; }
};
GpuMemoryPlan gpu_memory_plan(const model::ModelConfig& config, uint64_t hessian_bytes, int64_t state_tokens);

struct RunEstimate {
  int64_t samples = 0, seq_len = 0;
  int64_t tokens = 0;             // samples·seq_len
  int forward_layers = 0;         // main layers the forward runs through (0: data-free)
  int pass_a_layers = 0;          // of those, the ones with a module that needs data
  bool all_experts = true;

  double forward_pass_a_flops = 0;  // block forwards with taps
  double forward_pass_b_flops = 0;  // block forwards of the quantized layers
  // GPTAQ (calibration.gptq.asymmetric, CPU only): the full-precision stream X̃ through every
  // forward layer's source block (with pass A's taps where pass A runs), beside the two passes.
  double forward_full_stream_flops = 0;
  bool gptaq = false;
  double routed_expert_flops = 0;   // the routed-expert GEMMs inside both passes
  double hessian_flops = 0;         // 2·tokens·cols² per distinct Hessian (GPTAQ: again for its ΔX·Xᵀ)
  int64_t hessians = 0;             // distinct Hessians over the run (wo_a: one per output group)
  uint64_t hessian_bytes_layer_peak = 0;  // fp32 bytes of one layer's distinct Hessians, largest layer
                                          // (GPTAQ: with the ΔX·Xᵀ sums of the same size beside them;
                                          // held-out validation: with the held-out set, twice again)
  // GPTAQ: pass A's tap recorder (calib/paired_taps.h), one sample's inputs of every wanted
  // Hessian of a layer (fp32, seq_len rows each), largest layer.
  uint64_t gptaq_recorder_bytes = 0;
  double gptq_flops = 0;            // cols³ (Cholesky/inverse) + 2·rows·cols² (sweep) per solve
                                    // (held-out validation: a solve per candidate damping, + refit)
  double gptq_report_flops = 0;     // the GPTQ and RTN error vs H of every GPTQ module (8·rows·cols²
                                    // per solve; held-out validation adds its candidates' errors)
  int64_t gptq_modules = 0;
  uint64_t decode_bytes = 0;        // source bytes of the Linears decoded to fp32
  uint64_t output_bytes = 0;        // Linear weights written (ModulePlan::output_bytes)
  GpuMemoryPlan gpu;                // per rank with --device cuda
  uint64_t state_bytes = 0;         // fp32 HC states of all samples (one copy; pass A holds two;
                                    // a GPTAQ run twice that: the X̃ stream beside X)

  double gflops = 0;  // the rate the seconds use
  double seconds_forward = 0, seconds_hessian = 0, seconds_gptq = 0;
  std::vector<std::string> notes;  // what the estimate leaves out for this recipe

  double forward_flops() const { return forward_pass_a_flops + forward_pass_b_flops + forward_full_stream_flops; }
  double total_flops() const { return forward_flops() + hessian_flops + gptq_flops + gptq_report_flops; }
  double seconds() const { return seconds_forward + seconds_hessian + seconds_gptq; }
};

// Pure: no I/O, no timing. gflops > 0 is the rate every FLOP count is divided by.
RunEstimate run_estimate(const Recipe& recipe, const ModulePlan& plan, const model::ModelConfig& config,
                         int64_t samples, int64_t seq_len, double gflops);

// sgemm rate of model::linear_forward on [256, 1024] x [1024, 1024]ᵀ: one warm-up call, then
// repeated for ~0.2 s, its column blocks on `threads` threads (<= 0: every hardware thread, as
// the calibration forward runs them).
double measure_sgemm_gflops(int threads);
// The thread count measure_sgemm_gflops(threads) runs with.
int sgemm_probe_threads(int threads);

std::string run_estimate_text(const RunEstimate& e);
nlohmann::ordered_json run_estimate_json(const RunEstimate& e);
// "0.42 s", "14.2 min", "2.1 h", "3.5 days".
std::string duration_text(double seconds);

}  // namespace dsv4::calib

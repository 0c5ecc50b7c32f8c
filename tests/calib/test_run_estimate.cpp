// test_run_estimate.cpp: the run estimate's FLOP counts against hand computations on the tiny
// shape (one sliding layer's forward, the Hessians of a mixed recipe in both expert modes, GPTQ
// solves), the rules (data-free runs no forward, the forward stops at the last data layer,
// propagate_error false drops pass B), linearity in samples, seconds = FLOPs / rate, the flash
// Hessian count against DESIGN §5, and the probe.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "calib/module_plan.h"
#include "calib/run_estimate.h"
#include "common/check.h"

namespace dsv4::calib {
namespace {

Recipe shipped(const std::string& file) { return recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/" + file); }
Recipe parse(const std::string& body) { return recipe_parse("q_stage:\n  q_modifiers:\n" + body, "r.yaml"); }

RunEstimate estimate(const Recipe& r, const model::ModelConfig& c, int64_t samples, int64_t seq_len,
                     double gflops = 100) {
  return run_estimate(r, module_plan_build(r, c, 1), c, samples, seq_len, gflops);
}

TEST(RunEstimate, DataFreeRecipeRunsNoForward) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  const RunEstimate e = estimate(shipped("int4_int8.yaml"), c, 32, 64);
  EXPECT_EQ(e.forward_layers, 0);
  EXPECT_EQ(e.pass_a_layers, 0);
  EXPECT_EQ(e.forward_flops(), 0.0);
  EXPECT_EQ(e.hessian_flops, 0.0);
  EXPECT_EQ(e.hessians, 0);
  EXPECT_EQ(e.gptq_flops, 0.0);
  EXPECT_EQ(e.gptq_report_flops, 0.0);
  EXPECT_EQ(e.seconds(), 0.0);
  EXPECT_GT(e.decode_bytes, 0u);  // the quantized modules still decode their source
  EXPECT_GT(e.output_bytes, 0u);
  ASSERT_FALSE(e.notes.empty());
  EXPECT_NE(e.notes[0].find("data-free"), std::string::npos) << e.notes[0];
}

TEST(RunEstimate, AllExpertsAddsEveryExpertsW13ToPassA) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  Recipe r = shipped("w4a16_mtp.yaml");  // GPTQ on the routed experts of every main layer
  ASSERT_TRUE(r.calibration.all_experts);
  const RunEstimate all = estimate(r, c, 32, 64);
  r.calibration.all_experts = false;
  const RunEstimate routed = estimate(r, c, 32, 64);
  EXPECT_EQ(all.forward_layers, c.num_layers);
  EXPECT_EQ(all.pass_a_layers, c.num_layers);
  EXPECT_GT(all.forward_flops(), routed.forward_flops());
  // Exactly every token through every expert's w1 and w3 (2·D·I each), in pass A of each layer.
  const double extra =
      32.0 * 64 * c.num_layers * c.n_routed_experts * 2 * (2.0 * c.hidden_size * c.moe_intermediate_size);
  EXPECT_DOUBLE_EQ(all.forward_pass_a_flops - routed.forward_pass_a_flops, extra);
  EXPECT_DOUBLE_EQ(all.routed_expert_flops - routed.routed_expert_flops, extra);
  EXPECT_DOUBLE_EQ(all.forward_pass_b_flops, routed.forward_pass_b_flops);  // pass B is top-k either way
  EXPECT_DOUBLE_EQ(all.gptq_flops, routed.gptq_flops);
  // One shared w1/w3 H per layer instead of one per expert.
  EXPECT_EQ(all.hessians, int64_t{c.num_layers} * (1 + c.n_routed_experts));
  EXPECT_EQ(routed.hessians, int64_t{c.num_layers} * 2 * c.n_routed_experts);
}

TEST(RunEstimate, FlopsScaleLinearlyInSamplesAndSecondsAreFlopsOverRate) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  const Recipe r = shipped("w4a16_mtp.yaml");
  const RunEstimate a = estimate(r, c, 16, 64, 50.0);
  const RunEstimate b = estimate(r, c, 48, 64, 50.0);
  ASSERT_GT(a.forward_flops(), 0.0);
  ASSERT_GT(a.hessian_flops, 0.0);
  ASSERT_GT(a.gptq_flops, 0.0);
  EXPECT_DOUBLE_EQ(b.forward_flops(), 3 * a.forward_flops());
  EXPECT_DOUBLE_EQ(b.hessian_flops, 3 * a.hessian_flops);
  EXPECT_DOUBLE_EQ(b.gptq_flops, a.gptq_flops);  // solves do not depend on the token count
  EXPECT_EQ(b.tokens, 48 * 64);
  EXPECT_DOUBLE_EQ(a.seconds_forward, a.forward_flops() / 50e9);
  EXPECT_DOUBLE_EQ(a.seconds_hessian, a.hessian_flops / 50e9);
  EXPECT_DOUBLE_EQ(a.seconds_gptq, (a.gptq_flops + a.gptq_report_flops) / 50e9);
  const RunEstimate fast = estimate(r, c, 16, 64, 200.0);
  EXPECT_DOUBLE_EQ(fast.seconds(), a.seconds() / 4);
  EXPECT_DOUBLE_EQ(fast.total_flops(), a.total_flops());
}

TEST(RunEstimate, SlidingLayerForwardByHand) {
  // GPTQ on layer 0's wq_a only, no all-experts, pass A output kept: the run is one pass A
  // through layer 0 (sliding window, no compressor) and nothing else.
  const model::ModelConfig c = model::ModelConfig::tiny();
  Recipe r = parse(R"(
    GPTQModifier:
      config_groups:
        group_0:
          targets: ["layers.0.attn.wq_a"]
          weights: {num_bits: 4, type: int, group_size: 128}
)");
  r.calibration.all_experts = false;
  r.calibration.propagate_error = false;
  const int64_t samples = 3, len = 64;
  const RunEstimate e = estimate(r, c, samples, len);
  EXPECT_EQ(e.forward_layers, 1);
  EXPECT_EQ(e.pass_a_layers, 1);
  EXPECT_EQ(e.forward_pass_b_flops, 0.0);
  const double D = c.hidden_size, Q = c.q_lora_rank, H = c.num_heads, dh = c.head_dim, I = c.moe_intermediate_size;
  // Linears of a sliding block: wq_a, wq_b, wkv, wo_a (G blocks), wo_b, shared w1/w3/w2.
  const double params = Q * D + H * dh * Q + dh * D + c.o_groups * c.o_lora_rank * c.o_group_in() +
                        D * c.o_groups * c.o_lora_rank + 3 * D * I;
  const double router = 2 * D * c.n_routed_experts;
  const double hc = 2 * 2.0 * c.hc_mix() * c.hc_dim();                   // HC_pre projection at both sites
  const double routed = c.num_experts_per_tok * 2 * 3 * D * I;           // top-k experts
  double keys = 0;
  for (int64_t t = 0; t < len; ++t) keys += static_cast<double>(std::min<int64_t>(t + 1, c.sliding_window));
  EXPECT_EQ(keys, 136 + 48 * 16);  // window 16: 1..16, then 16 for the remaining 48 queries
  const double per_sample = len * (2 * params + router + hc + routed) + 4 * H * dh * keys;
  EXPECT_DOUBLE_EQ(e.forward_pass_a_flops, samples * per_sample);
  EXPECT_DOUBLE_EQ(e.routed_expert_flops, samples * len * routed);
}

TEST(RunEstimate, HessiansAndSolvesByHand) {
  // Layer 1 (CSA): wq_a + wkv + compressor.wkv share x_attn's H; wo_a has one H per output group;
  // layer 2's routed experts; layer 3's wq_b by a static-activation group (data, no Hessian).
  const model::ModelConfig c = model::ModelConfig::tiny();
  Recipe r = parse(R"(
    GPTQModifier:
      config_groups:
        group_0:
          targets: ["re:^layers\\.1\\.attn\\.(wq_a|wkv|wo_a|compressor\\.wkv)$",
                    "re:^layers\\.2\\.ffn\\.experts\\.\\d+\\.w[123]$"]
          weights: {num_bits: 4, type: int, strategy: channel}
    QuantizationModifier:
      config_groups:
        group_1:
          targets: ["layers.3.attn.wq_b"]
          weights: {num_bits: 8, type: float, strategy: tensor}
          input_activations: {num_bits: 8, type: float, strategy: tensor, dynamic: false}
)");
  const int64_t samples = 5, len = 32;
  const double T = static_cast<double>(samples * len);
  const double D = c.hidden_size, I = c.moe_intermediate_size, E = c.n_routed_experts, G = c.o_groups;
  const double gin = c.o_group_in(), k = c.num_experts_per_tok;
  const double attn_h = 2 * T * D * D + G * 2 * T * gin * gin;
  ASSERT_TRUE(r.calibration.all_experts);
  const RunEstimate all = estimate(r, c, samples, len);
  EXPECT_EQ(all.forward_layers, 4);
  EXPECT_EQ(all.pass_a_layers, 3);
  EXPECT_EQ(all.hessians, 1 + c.o_groups + 1 + c.n_routed_experts);
  // all-experts: one w1/w3 H and E w2 Hessians, each over every token.
  EXPECT_DOUBLE_EQ(all.hessian_flops, attn_h + 2 * T * D * D + E * 2 * T * I * I);
  r.calibration.w2_input = W2Input::kWeighted;  // the unrouted rows (weight 0) drop out of w2's H
  EXPECT_DOUBLE_EQ(estimate(r, c, samples, len).hessian_flops, attn_h + 2 * T * D * D + E * 2 * (T * k / E) * I * I);
  r.calibration.all_experts = false;
  const RunEstimate routed = estimate(r, c, samples, len);
  EXPECT_EQ(routed.hessians, 1 + c.o_groups + 2 * c.n_routed_experts);
  EXPECT_DOUBLE_EQ(routed.hessian_flops, attn_h + E * 2 * (T * k / E) * (D * D + I * I));

  // Solves: every GPTQ module factors its H (wo_a: per group), then sweeps its rows.
  const double Q = c.q_lora_rank, dh = c.head_dim, R = c.o_lora_rank;
  const double cw = c.layer(1).compressor_series() * dh;  // CSA compressor width
  auto solve = [](double rows, double cols, double groups) {
    return groups * cols * cols * cols + 2 * rows * cols * cols;
  };
  const double gptq = solve(Q, D, 1) + solve(dh, D, 1) + solve(cw, D, 1) + solve(G * R, gin, G) +
                      E * (2 * solve(I, D, 1) + solve(D, I, 1));
  EXPECT_DOUBLE_EQ(all.gptq_flops, gptq);
  EXPECT_EQ(all.gptq_modules, 4 + 3 * c.n_routed_experts);
  const double report = 8 * (Q * D * D + dh * D * D + cw * D * D + G * R * gin * gin + E * (2 * I * D * D + D * I * I));
  EXPECT_DOUBLE_EQ(all.gptq_report_flops, report);
}

// GPTAQ (calibration.gptq.asymmetric): the full-precision stream runs every forward layer's
// source block, with pass A's taps where pass A runs; ΔX·Xᵀ doubles the Hessian work and bytes;
// the tap recorder holds one sample's inputs of a layer's Hessians.
TEST(RunEstimate, GptaqCountsTheSecondStream) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  Recipe r = parse(R"(
    GPTQModifier:
      config_groups:
        group_0:
          targets: ["re:^layers\\.2\\.ffn\\.experts\\.\\d+\\.w[123]$"]
          weights: {num_bits: 4, type: int, strategy: channel}
)");
  const int64_t samples = 5, len = 32;
  const RunEstimate plain = estimate(r, c, samples, len);
  for (RecipeModifier& m : r.modifiers) m.gptq.asymmetric = true;
  ASSERT_TRUE(r.gptaq());
  const RunEstimate g = estimate(r, c, samples, len);
  EXPECT_TRUE(g.gptaq);
  EXPECT_FALSE(plain.gptaq);
  EXPECT_EQ(plain.forward_full_stream_flops, 0.0);
  EXPECT_EQ(g.forward_layers, 3);
  EXPECT_EQ(g.pass_a_layers, 1);
  EXPECT_DOUBLE_EQ(g.forward_pass_a_flops, plain.forward_pass_a_flops);
  EXPECT_DOUBLE_EQ(g.forward_pass_b_flops, plain.forward_pass_b_flops);
  // X̃ through layers 0-2 as pass B runs them, plus every expert's w1/w3 taps in layer 2.
  const double T = static_cast<double>(samples * len), D = c.hidden_size, I = c.moe_intermediate_size,
               E = c.n_routed_experts;
  EXPECT_NEAR(g.forward_full_stream_flops, plain.forward_pass_b_flops + T * E * 2 * (2 * D * I),
              1e-12 * g.forward_full_stream_flops);
  EXPECT_DOUBLE_EQ(g.hessian_flops, 2 * plain.hessian_flops);
  EXPECT_EQ(g.hessian_bytes_layer_peak, 2 * plain.hessian_bytes_layer_peak);
  // One sample's w1/w3 input (D columns) and every expert's w2 input (I), len rows, fp32.
  EXPECT_EQ(g.gptaq_recorder_bytes, static_cast<uint64_t>(4 * len * (D + E * I)));
  EXPECT_EQ(plain.gptaq_recorder_bytes, 0u);
  const std::string text = run_estimate_text(g);
  EXPECT_NE(text.find("full-precision stream"), std::string::npos) << text;
  EXPECT_NE(text.find("note: GPTAQ"), std::string::npos) << text;
  EXPECT_EQ(run_estimate_text(plain).find("GPTAQ"), std::string::npos);
}

// Held-out validation (calib/heldout_solve.cpp): a solve per candidate damping and the refit,
// each with its 4 error forms; the RTN candidate's 2 on the calibration H; 2 per candidate (RTN
// too) on the held-out H; and a second set of Hessians. The forward and the Hessian sums do not
// change (the held-out samples feed the other set).
TEST(RunEstimate, HeldoutCountsItsCandidatesAndSecondHessians) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  Recipe r = shipped("w4a16_mtp.yaml");
  const RunEstimate plain = estimate(r, c, 32, 64);
  r.calibration.heldout.fraction = 0.25;
  r.calibration.heldout.dampings = {0.01, 0.1, 1.0};
  r.calibration.heldout.refit = true;
  const RunEstimate h = estimate(r, c, 32, 64);
  EXPECT_DOUBLE_EQ(h.gptq_flops, 4 * plain.gptq_flops);
  EXPECT_NEAR(h.gptq_report_flops, plain.gptq_report_flops * (4 * 4 + 2 + 2 * 4) / 4.0, 1e-12 * h.gptq_report_flops);
  EXPECT_EQ(h.hessian_bytes_layer_peak, 2 * plain.hessian_bytes_layer_peak);
  EXPECT_DOUBLE_EQ(h.hessian_flops, plain.hessian_flops);
  EXPECT_DOUBLE_EQ(h.forward_flops(), plain.forward_flops());
  r.calibration.heldout.refit = false;
  EXPECT_DOUBLE_EQ(estimate(r, c, 32, 64).gptq_flops, 3 * plain.gptq_flops);
}

TEST(RunEstimate, ForwardStopsAtTheLastDataLayer) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  auto experts_of = [](int layer) {
    return parse(strfmt(R"(
    GPTQModifier:
      config_groups:
        group_0:
          targets: ["re:^layers\\.%d\\.ffn\\.experts\\.\\d+\\.w[123]$"]
          weights: {num_bits: 4, type: int, group_size: 128}
)", layer));
  };
  const RunEstimate one = estimate(experts_of(1), c, 8, 64);
  const RunEstimate three = estimate(experts_of(3), c, 8, 64);
  EXPECT_EQ(one.forward_layers, 2);
  EXPECT_EQ(one.pass_a_layers, 1);
  EXPECT_EQ(three.forward_layers, 4);
  EXPECT_EQ(three.pass_a_layers, 1);
  EXPECT_GT(three.forward_pass_b_flops, one.forward_pass_b_flops);
  EXPECT_DOUBLE_EQ(three.hessian_flops, one.hessian_flops);  // same shapes, same tokens
  // Data only in the MTP block: refused by the pipeline, so no forward here, and a note says so.
  const RunEstimate mtp = estimate(parse(R"(
    GPTQModifier:
      config_groups:
        group_0:
          targets: ["mtp.0.attn.wq_a"]
          weights: {num_bits: 4, type: int, group_size: 128}
)"), c, 8, 64);
  EXPECT_EQ(mtp.forward_flops(), 0.0);
  EXPECT_EQ(mtp.gptq_modules, 0);
  ASSERT_FALSE(mtp.notes.empty());
  EXPECT_NE(mtp.notes[0].find("outside the main layers"), std::string::npos) << mtp.notes[0];
}

TEST(RunEstimate, FlashHessiansMatchDesignBudget) {
  // DESIGN §5, per layer and rank for 96 samples × 512 tokens in all-experts mode: w2 Hessians ≈
  // 105 TFLOP and the shared w1/w3 Hessian ≈ 1.6 TFLOP; the full run is 8 ranks × 43 layers.
  const model::ModelConfig c = model::ModelConfig::flash();
  const RunEstimate e = estimate(shipped("w4a16_mtp.yaml"), c, 768, 512);
  const double per_layer_rank = e.hessian_flops / c.num_layers / 8;
  EXPECT_NEAR(per_layer_rank / 1e12, 105 + 1.6, 2.0) << per_layer_rank / 1e12 << " TFLOP";
  // Expert forward: DESIGN counts all three matrices of every expert (≈ 630 TFLOP); the CPU
  // forward runs w1/w3 of every expert for the taps plus the routed top-6 (≈ 2/3 of that).
  const double experts = e.routed_expert_flops / c.num_layers / 8 / 1e12;
  EXPECT_GT(experts, 630 / 2.0) << experts << " TFLOP";
  EXPECT_LT(experts, 630 * 2.0) << experts << " TFLOP";
}

// The GPU memory plan the forwarder enforces and `plan` prints: at full width one block's bf16
// weights are the 257 experts' three matrices (12.9 GB) plus attention, HC and router (a few %);
// the Hessians are the largest layer's, as exact sums (issue 29: three int64 limbs per entry, 6x
// the fp32 bytes) unless the recipe asks for fp32 sums; the states are bf16 [tokens, hc_dim] on
// the GPU and fp32 on the host.
TEST(RunEstimate, GpuMemoryPlanForFlash) {
  const model::ModelConfig c = model::ModelConfig::flash();
  const RunEstimate e = estimate(shipped("w4a16_mtp.yaml"), c, 96, 512);
  const double experts = 2.0 * (c.n_routed_experts + 1) * 3 * c.moe_intermediate_size * c.hidden_size;
  EXPECT_GT(static_cast<double>(e.gpu.block_weights), experts);
  EXPECT_LT(static_cast<double>(e.gpu.block_weights), 1.05 * experts);
  EXPECT_EQ(e.gpu.weights, e.gpu.block_weights + e.gpu.block_weights / 8);
  EXPECT_EQ(e.gpu.hessians, 6 * e.hessian_bytes_layer_peak);
  Recipe fp32 = shipped("w4a16_mtp.yaml");
  fp32.calibration.hessian_sums = HessianSums::kFp32;
  EXPECT_EQ(estimate(fp32, c, 96, 512).gpu.hessians, e.hessian_bytes_layer_peak);
  EXPECT_EQ(e.gpu.states, uint64_t{96} * 512 * static_cast<uint64_t>(c.hc_dim()) * 2);  // bf16, 1.6 GB
  EXPECT_EQ(e.gpu.kept(), e.gpu.weights + e.gpu.hessians + e.gpu.states + e.gpu.workspace);
  EXPECT_EQ(e.gpu.minimum(), e.gpu.kept() + e.gpu.min_arena);
  EXPECT_EQ(e.state_bytes, uint64_t{96} * 512 * static_cast<uint64_t>(c.hc_dim()) * 4);
  const std::string text = run_estimate_text(e);
  EXPECT_NE(text.find("memory: GPU per rank"), std::string::npos) << text;
  EXPECT_NE(text.find("13.2 GB"), std::string::npos) << text;
  EXPECT_EQ(run_estimate_json(e).at("memory").at("gpu_minimum").get<uint64_t>(), e.gpu.minimum());
  // A data-free recipe runs no forward: no memory section.
  const RunEstimate d = estimate(shipped("int4_int8.yaml"), c, 96, 512);
  EXPECT_EQ(run_estimate_text(d).find("memory:"), std::string::npos);
}

TEST(RunEstimate, TextJsonAndErrors) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  const RunEstimate e = estimate(shipped("w4a16_mtp.yaml"), c, 32, 64);
  const std::string text = run_estimate_text(e);
  EXPECT_NE(text.find("32 samples x 64 tokens = 2048 tokens"), std::string::npos) << text;
  EXPECT_NE(text.find("at 100.0 GFLOP/s"), std::string::npos) << text;
  const nlohmann::ordered_json j = run_estimate_json(e);
  EXPECT_EQ(j.at("tokens").get<int64_t>(), 2048);
  EXPECT_DOUBLE_EQ(j.at("seconds").at("total").get<double>(), e.seconds());
  EXPECT_DOUBLE_EQ(j.at("total_flops").get<double>(), e.total_flops());
  EXPECT_EQ(duration_text(3.21), "3.21 s");
  EXPECT_EQ(duration_text(14.2 * 60), "14.2 min");
  EXPECT_EQ(duration_text(2.1 * 3600), "2.1 h");
  EXPECT_EQ(duration_text(3 * 86400), "3.0 days");
  const Recipe r = shipped("w4a16_mtp.yaml");
  EXPECT_THROW(run_estimate(r, module_plan_build(r, c, 1), c, 8, 64, 0.0), Error);
  EXPECT_THROW(run_estimate(r, module_plan_build(r, c, 1), c, -1, 64, 10.0), Error);
}

TEST(RunEstimate, SgemmProbeMeasuresAPositiveRate) {
  const double gflops = measure_sgemm_gflops(1);
  EXPECT_GT(gflops, 0.1);     // any machine that can build this does better than 0.1 GFLOP/s
  EXPECT_LT(gflops, 1e5);     // one CPU thread is nowhere near 100 TFLOP/s
  EXPECT_EQ(sgemm_probe_threads(1), 1);
  EXPECT_GE(sgemm_probe_threads(0), 1);
}

}  // namespace
}  // namespace dsv4::calib

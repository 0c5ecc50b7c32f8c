// moe.h: the MoE sub-layer of a DeepSeek-V4 block (reference §3.3), CPU reference. Input is
// x_ffn = RMSNorm(y; ffn_norm) [T, D]; output [T, D] = Σ routed experts + shared expert.
// Router logits, sqrt-softplus scores, selection (hash table on hash layers, top-k of
// score + bias otherwise), normalised weights × routed_scaling_factor, SwiGLU with the
// swiglu_limit clamps (gate: min(g, L), up: clamp(u, ±L)). fp32 router in every mode.
//
// Taps (when ctx.taps is set): {ffn.shared_experts.w1, ffn.shared_experts.w3} ← x_ffn;
// ffn.shared_experts.w2 ← its h; per routed expert e: {ffn.experts.e.w1, ffn.experts.e.w3} ← the
// rows routed to e (token_rows set), or all rows in ctx.all_experts mode; ffn.experts.e.w2 ← h of
// those rows with row_weights = routing weights (0 for rows not routed to e in all-experts mode);
// on_expert_tokens(prefix, e, count) with the real routing.
//
//   moe_forward(w.ffn, config, w.spec, x_ffn, token_ids, T, out, ctx);
//
// Tests: tests/model/test_moe.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "model/block_weights.h"
#include "model/config.h"
#include "model/forward_context.h"

namespace dsv4::model {

struct Routing {
  std::vector<int32_t> experts;  // [T, k] selected expert ids
  std::vector<float> weights;    // [T, k] mixing weights (normalised, × routed_scaling_factor)
};

Routing moe_route(const MoeWeights& w, const ModelConfig& config, const LayerSpec& spec,
                  const float* x_ffn, const int64_t* token_ids, int64_t tokens);

void moe_forward(const MoeWeights& w, const ModelConfig& config, const LayerSpec& spec,
                 const float* x_ffn, const int64_t* token_ids, int64_t tokens, float* out,
                 const ForwardContext& ctx);

}  // namespace dsv4::model

// block.h: one DeepSeek-V4 decoder block (main layer or MTP block) on the CPU: two HC sites of
// identical shape around attention and MoE (reference §3.0):
//
//   (y, post, C) = HC_pre(X; hc_attn);  a = Attention(RMSNorm(y; attn_norm));  X = HC_post(a, X)
//   (y, post, C) = HC_pre(X; hc_ffn);   f = MoE(RMSNorm(y; ffn_norm), ids);    X = HC_post(f, X)
//
//   block_forward(weights, config, rope, state, token_ids, T, next_state, ctx);
//
// state / next_state: [T, n, D] fp32 (bf16-rounded in the bf16 mode). token_ids: [T] (hash routing).
#pragma once

#include <cstdint>

#include "model/block_weights.h"
#include "model/config.h"
#include "model/forward_context.h"
#include "model/rope.h"

namespace dsv4::model {

void block_forward(const BlockWeights& weights, const ModelConfig& config, const RopeTable& rope,
                   const float* state, const int64_t* token_ids, int64_t tokens, float* next_state,
                   const ForwardContext& ctx);

}  // namespace dsv4::model

// attention.h: the attention sub-layer of a DeepSeek-V4 block (reference §3.2), CPU reference.
// Input is x_attn = RMSNorm(y; attn_norm) [T, D] of one sequence starting at position 0; output
// is attn_out [T, D]. Covers SWA (window only), CSA (window + compressed entries selected by the
// lightning indexer) and HCA (window + all visible compressed entries), the attention sink,
// inverse RoPE, grouped wo_a and wo_b.
//
// Taps (when ctx.taps is set; module names relative to ctx.prefix): {attn.wq_a, attn.wkv,
// attn.compressor.wkv, attn.compressor.wgate, attn.indexer.weights_proj,
// attn.indexer.compressor.wkv, attn.indexer.compressor.wgate} ← x_attn (one event listing those
// present); {attn.wq_b, attn.indexer.wq_b} ← qr; attn.wo_a ← o after inverse RoPE, one event
// per group g with its [T, H/G·dh] slice; attn.wo_b ← z [T, G·R].
//
//   attention_forward(w.attn, config, w.spec, rope, x_attn, T, out, ctx);
//
// Tests: tests/model/test_attention.cpp; end to end: tests/model/test_forward_golden.cpp.
#pragma once

#include <cstdint>

#include "model/block_weights.h"
#include "model/config.h"
#include "model/forward_context.h"
#include "model/rope.h"

namespace dsv4::model {

void attention_forward(const AttentionWeights& w, const ModelConfig& config, const LayerSpec& spec,
                       const RopeTable& rope, const float* x_attn, int64_t tokens, float* out,
                       const ForwardContext& ctx);

// The compressor of §3.2 step 4 on its own (used for the main entries and, at index_head_dim,
// for the indexer keys): returns floor(T/ratio) entries [W, dim], normalised and rotated at
// position w·ratio.
std::vector<float> compressor_forward(const CompressorWeights& w, const ModelConfig& config,
                                      const RopeTable& rope, const float* x_attn, int64_t tokens,
                                      const ForwardContext& ctx);

}  // namespace dsv4::model

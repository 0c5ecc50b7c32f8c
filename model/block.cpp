// block.cpp: one decoder block = HC pre → RMSNorm → attention → HC post, then the same around MoE.
#include "model/block.h"

#include <vector>

#include "model/attention.h"
#include "model/hc.h"
#include "model/moe.h"
#include "model/ops.h"

namespace dsv4::model {
namespace {

// One HC site: pre-mix the streams, normalise, run the sub-layer, post-mix into next_state.
template <typename Sublayer>
void hc_site(const HcWeights& hc, const std::vector<float>& norm, const ModelConfig& c, const float* state,
             int64_t tokens, float* next_state, const ForwardContext& ctx, Sublayer&& sublayer) {
  const int64_t d = c.hidden_size;
  std::vector<float> y(static_cast<size_t>(tokens * d));
  HcMix mix;
  hc_pre(hc, c, state, tokens, y.data(), mix);
  if (ctx.bf16()) bf16_round(y.data(), y.size());
  rmsnorm_forward(y.data(), tokens, d, norm.data(), static_cast<float>(c.rms_norm_eps), y.data());
  if (ctx.bf16()) bf16_round(y.data(), y.size());
  std::vector<float> out(static_cast<size_t>(tokens * d));
  sublayer(y.data(), out.data());
  hc_post(c, out.data(), state, mix, tokens, next_state);
  if (ctx.bf16()) bf16_round(next_state, static_cast<size_t>(tokens * c.hc_mult * d));
}

}  // namespace

void block_forward(const BlockWeights& w, const ModelConfig& c, const RopeTable& rope, const float* state,
                   const int64_t* token_ids, int64_t tokens, float* next_state, const ForwardContext& ctx) {
  std::vector<float> mid(static_cast<size_t>(tokens * c.hc_mult * c.hidden_size));
  hc_site(w.hc_attn, w.attn_norm, c, state, tokens, mid.data(), ctx, [&](const float* x, float* out) {
    attention_forward(w.attn, c, w.spec, rope, x, tokens, out, ctx);
  });
  hc_site(w.hc_ffn, w.ffn_norm, c, mid.data(), tokens, next_state, ctx, [&](const float* x, float* out) {
    moe_forward(w.ffn, c, w.spec, x, token_ids, tokens, out, ctx);
  });
}

}  // namespace dsv4::model

// block_cuda.cu: block_forward_cuda, one decoder block on the GPU (see forward_cuda.h): the two HC
// sites of model/block.cpp, each HC pre → RMSNorm (bf16) → sub-layer → HC post (bf16 state).
#include <cuda_runtime.h>

#include "common/check.h"
#include "common/device_arena.h"
#include "model/forward_cuda.h"

namespace dsv4::model {
namespace {

template <typename Sublayer>
void hc_site(const DeviceHc& hc, const float* norm, const ModelConfig& c, const uint16_t* state, int64_t tokens,
             uint16_t* next_state, const CudaForwardContext& ctx, Sublayer&& sublayer) {
  DeviceArena& arena = *ctx.arena;
  ArenaScope scope(arena);
  const size_t rows = static_cast<size_t>(tokens);
  uint16_t* y = arena.take<uint16_t>(rows * c.hidden_size, "HC site input");
  uint16_t* out = arena.take<uint16_t>(rows * c.hidden_size, "sub-layer output");
  const DeviceHcMix mix{arena.take<float>(rows * c.hc_mult, "HC post weights"),
                        arena.take<float>(rows * c.hc_mult * c.hc_mult, "HC comb matrices")};
  hc_pre_cuda(hc, c, state, tokens, y, mix, ctx.blas, arena, ctx.stream);
  norm_rope_cuda(y, tokens, c.hidden_size, {.weight = norm, .eps = static_cast<float>(c.rms_norm_eps)}, y,
                 ctx.stream);
  sublayer(y, out);
  hc_post_cuda(c, out, state, mix, tokens, next_state, ctx.stream);
}

}  // namespace

void block_forward_cuda(const DeviceBlockWeights& w, const ModelConfig& c, const DeviceRope& rope,
                        const uint16_t* state, const int64_t* token_ids, int64_t sequences, int64_t tokens,
                        uint16_t* next_state, const CudaForwardContext& ctx) {
  DSV4_CHECK_IN("block", ctx.arena != nullptr && ctx.blas != nullptr, "%s: no arena or cuBLAS handle",
                w.prefix.c_str());
  DSV4_CHECK_IN("block", sequences >= 0 && tokens >= 0, "%lld sequences of %lld tokens",
                static_cast<long long>(sequences), static_cast<long long>(tokens));
  const int64_t rows = sequences * tokens;
  if (rows == 0) return;
  ArenaScope scope(*ctx.arena);
  uint16_t* mid = ctx.arena->take<uint16_t>(static_cast<size_t>(rows * c.hc_dim()), "HC state between sites");
  hc_site(w.hc_attn, w.attn_norm, c, state, rows, mid, ctx, [&](const uint16_t* x, uint16_t* out) {
    attention_forward_cuda(w.attn, c, w.spec, rope, x, sequences, tokens, out, ctx);
  });
  hc_site(w.hc_ffn, w.ffn_norm, c, mid, rows, next_state, ctx, [&](const uint16_t* x, uint16_t* out) {
    moe_forward_cuda(w.ffn, c, w.spec, x, token_ids, rows, out, ctx);
  });
}

}  // namespace dsv4::model

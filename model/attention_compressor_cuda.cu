// attention_compressor_cuda.cu: the KV compressor and the indexer scores of CSA/HCA layers on the
// GPU (see attention_cuda_internal.h), step by step as model/attention_compressor.cpp and
// model/attention_indexer.cpp.
#include <cuda_runtime.h>

#include <cmath>

#include "common/check.h"
#include "common/codec_inline.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "model/attention_cuda_internal.h"

namespace dsv4::model {
namespace {

using codec::bf16_decode;
using codec::bf16_encode;

struct PoolArgs {
  const float* kv;    // [S·T, width] P
  const float* gate;  // [S·T, width] Z
  const float* ape;   // [ratio, width]
  int64_t tokens, windows, dim, width;
  int ratio, series;
};

// One thread per (entry, channel): the per-channel softmax over the entry's slots, in the CPU's
// slot order (CSA: the A half of window w−1, then the B half of window w).
__global__ void pool_kernel(PoolArgs a, int64_t entries, uint16_t* out) {
  const int64_t n = entries * a.dim;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = i % a.dim, entry = i / a.dim;
    const int64_t s = entry / a.windows, win = entry % a.windows;
    const int64_t base = s * a.tokens;
    // Two passes over the slots (max, then exp-sum and weighted sum), as the CPU does.
    auto slot = [&](int q, float& logit, float& value) {
      int64_t row, col;
      int ape_row;
      if (a.series == 2 && q < a.ratio) {
        row = (win - 1) * a.ratio + q, col = d, ape_row = q;
      } else {
        const int i2 = a.series == 2 ? q - a.ratio : q;
        row = win * a.ratio + i2, col = (a.series == 2 ? a.dim : 0) + d, ape_row = i2;
      }
      logit = __fadd_rn(a.gate[(base + row) * a.width + col], a.ape[ape_row * a.width + col]);
      value = a.kv[(base + row) * a.width + col];
    };
    const int first = (a.series == 2 && win == 0) ? a.ratio : 0;
    const int slots = a.series * a.ratio;
    float mx = -INFINITY, l, v;
    for (int q = first; q < slots; ++q) {
      slot(q, l, v);
      mx = fmaxf(mx, l);
    }
    float denom = 0.0f;
    for (int q = first; q < slots; ++q) {
      slot(q, l, v);
      denom = __fadd_rn(denom, expf(__fsub_rn(l, mx)));
    }
    float acc = 0.0f;
    for (int q = first; q < slots; ++q) {
      slot(q, l, v);
      acc = __fadd_rn(acc, __fmul_rn(v, __fdiv_rn(expf(__fsub_rn(l, mx)), denom)));
    }
    out[i] = bf16_encode(acc);
  }
}

struct ScoreArgs {
  const float* dots;      // [S][T·IH, W]
  const uint16_t* omega;  // [S·T, IH] bf16
  int64_t tokens, windows;
  int heads, ratio;
  float softmax_scale, weights_scale;
};

__global__ void score_kernel(ScoreArgs a, int64_t rows, float* scores) {
  const int64_t n = rows * a.windows;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = i % a.windows, r = i / a.windows, t = r % a.tokens;
    const int64_t visible = min((t + 1) / a.ratio, a.windows);
    if (e >= visible) {
      scores[i] = -INFINITY;
      continue;
    }
    float s = 0.0f;
    for (int h = 0; h < a.heads; ++h) {
      const float dot = a.dots[(r * a.heads + h) * a.windows + e];
      const float omega = __fmul_rn(bf16_decode(a.omega[r * a.heads + h]), a.weights_scale);
      s = __fadd_rn(s, __fmul_rn(__fmul_rn(fmaxf(dot, 0.0f), a.softmax_scale), omega));
    }
    scores[i] = s;
  }
}

}  // namespace

void compressor_forward_cuda(const DeviceCompressor& w, const ModelConfig& c, const DeviceRope& rope,
                             const uint16_t* x, int64_t sequences, int64_t tokens, uint16_t* entries,
                             const CudaForwardContext& ctx) {
  DSV4_CHECK_IN("attention", w.ratio > 0 && (w.series == 1 || w.series == 2) && w.dim > 0,
                "%s: compressor ratio %d, series %d, dim %lld", w.wkv.name.c_str(), w.ratio, w.series,
                static_cast<long long>(w.dim));
  const int64_t windows = tokens / w.ratio;
  if (windows == 0 || sequences == 0) return;
  const int64_t width = w.series * w.dim, rows = sequences * tokens, D = c.hidden_size;
  DeviceArena& arena = *ctx.arena;
  ArenaScope scope(arena);
  float* kv = arena.take<float>(static_cast<size_t>(rows * width), "compressor values");
  float* gate = arena.take<float>(static_cast<size_t>(rows * width), "compressor gates");
  linear_bf16_cuda(ctx.blas, x, rows, D, w.wkv.w, width, {.y_f32 = kv}, ctx.stream);
  linear_bf16_cuda(ctx.blas, x, rows, D, w.wgate.w, width, {.y_f32 = gate}, ctx.stream);
  const PoolArgs a{kv, gate, w.ape, tokens, windows, w.dim, width, w.ratio, w.series};
  const int64_t count = sequences * windows;
  pool_kernel<<<grid_blocks(count * w.dim, 256, 1 << 16), 256, 0, ctx.stream>>>(a, count, entries);
  DSV4_CUDA_CHECK_LAUNCH();
  norm_rope_cuda(entries, count, w.dim,
                 {.weight = w.norm, .eps = static_cast<float>(c.rms_norm_eps), .rope = &rope,
                  .pos = {.rows_per_token = 1, .tokens_per_seq = windows, .stride = w.ratio}},
                 entries, ctx.stream);
}

void indexer_scores_cuda(const DeviceAttention::Indexer& w, const ModelConfig& c, const DeviceRope& rope,
                         const uint16_t* x, const uint16_t* qr, int64_t sequences, int64_t tokens, float* scores,
                         const CudaForwardContext& ctx) {
  const int64_t IH = c.index_n_heads, Id = c.index_head_dim, Q = c.q_lora_rank, D = c.hidden_size;
  const int ratio = w.compressor.ratio;
  const int64_t W = tokens / ratio, rows = sequences * tokens;
  if (W == 0 || rows == 0) return;
  DeviceArena& arena = *ctx.arena;
  ArenaScope scope(arena);
  uint16_t* keys = arena.take<uint16_t>(static_cast<size_t>(sequences * W * Id), "indexer keys");
  compressor_forward_cuda(w.compressor, c, rope, x, sequences, tokens, keys, ctx);
  uint16_t* q = arena.take<uint16_t>(static_cast<size_t>(rows * IH * Id), "indexer queries");
  linear_bf16_cuda(ctx.blas, qr, rows, Q, w.wq_b.w, IH * Id, {.y_bf16 = q}, ctx.stream);
  norm_rope_cuda(q, rows * IH, Id,
                 {.normalize = false, .rope = &rope, .pos = {.rows_per_token = IH, .tokens_per_seq = tokens}}, q,
                 ctx.stream);
  uint16_t* omega = arena.take<uint16_t>(static_cast<size_t>(rows * IH), "indexer head weights");
  linear_bf16_cuda(ctx.blas, x, rows, D, w.weights_proj.w, IH, {.y_bf16 = omega}, ctx.stream);
  // dots[s] [T·IH, W] = q[s] · keys[s]ᵀ, one batch per sequence.
  float* dots = arena.take<float>(static_cast<size_t>(rows * IH * W), "indexer dot products");
  linear_bf16_batched_cuda(ctx.blas,
                           {.x = q, .rows = tokens * IH, .in = Id, .out = W, .w = keys, .y = {.y_f32 = dots},
                            .stride_x = tokens * IH * Id, .stride_w = W * Id, .stride_y = tokens * IH * W,
                            .count = static_cast<int>(sequences)},
                           ctx.stream);
  const ScoreArgs a{dots,
                    omega,
                    tokens,
                    W,
                    static_cast<int>(IH),
                    ratio,
                    static_cast<float>(std::pow(static_cast<double>(Id), -0.5)),
                    static_cast<float>(std::pow(static_cast<double>(IH), -0.5))};
  score_kernel<<<grid_blocks(rows * W, 256, 1 << 16), 256, 0, ctx.stream>>>(a, rows, scores);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::model

// attention_cuda.cu: attention_forward_cuda, the attention sub-layer on the GPU (see
// forward_cuda.h), the bf16 mode of model/attention.cpp: low-rank q with its norms and RoPE,
// shared K=V, the compressor's entries (HCA: all visible; CSA: the indexer's picks), one
// attention kernel with the sink and inverse RoPE, grouped wo_a (one strided-batched GEMM) and
// wo_b. The indexer's top-k runs on the host from device scores (indexer_pick, torch.topk's tie
// order) only when a sequence has more entries than index_topk; below that every visible entry
// is picked and the scores are not needed (§3.2 step 5).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec_inline.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "model/attention_cuda_internal.h"
#include "model/attention_internal.h"

namespace dsv4::model {
namespace {

using codec::bf16_decode;
using codec::bf16_encode;

constexpr int kWarps = 8;
constexpr int kMaxHeadsPerWarp = 8;
constexpr int kKeyTile = 32;

struct CoreArgs {
  const uint16_t* q;            // [N, H, dh]
  const uint16_t* kv;           // [N, dh]
  const uint16_t* entries;      // [S, W, dh] or null
  const int32_t* picks;         // [N, topk] or null: every visible entry
  const int32_t* pick_counts;   // [N]
  const float* sink;            // [H]
  DeviceRope rope;
  int64_t tokens, windows;
  int heads, dh, window, ratio, topk, max_keys;
  float scale;
};

// One block per query, all heads (the keys are shared: MQA). Logits for every (head, key) sit in
// shared memory, so the probabilities are normalised and rounded to bf16 before P·V as in the
// CPU's bf16 mode. Lane l holds dims [l·DPL, (l+1)·DPL) of a head.
template <int DPL>
__global__ void attention_core_kernel(CoreArgs a, int64_t queries, uint16_t* o) {
  extern __shared__ unsigned char smem[];
  float* logits = reinterpret_cast<float*>(smem);                                    // [H][max_keys]
  uint16_t* tile = reinterpret_cast<uint16_t*>(logits + a.heads * a.max_keys);      // [kKeyTile][dh]
  int64_t* key_row = reinterpret_cast<int64_t*>(tile + kKeyTile * a.dh);            // [max_keys]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int hpw = (a.heads + kWarps - 1) / kWarps;
  const int chunks = a.dh / 8;  // 16-byte chunks per key row
  for (int64_t n = blockIdx.x; n < queries; n += gridDim.x) {
    const int64_t s = n / a.tokens, t = n % a.tokens;
    const int64_t first = t - a.window + 1 > 0 ? t - a.window + 1 : 0;
    const int nw = static_cast<int>(t - first + 1);
    int ne = 0;
    if (a.entries) {
      ne = a.picks ? a.pick_counts[n] : static_cast<int>(min((t + 1) / a.ratio, a.windows));
    }
    const int nk = nw + ne;
    // Key rows: r >= 0 is row r of kv (a window key), r < 0 is row −1 − r of the entries.
    for (int i = threadIdx.x; i < nk; i += blockDim.x) {
      if (i < nw) {
        key_row[i] = s * a.tokens + first + i;
      } else {
        const int64_t e = a.picks ? a.picks[n * a.topk + (i - nw)] : i - nw;
        key_row[i] = -1 - (s * a.windows + e);
      }
    }
    __syncthreads();
    auto load_tile = [&](int k0) {
      for (int idx = threadIdx.x; idx < kKeyTile * chunks; idx += blockDim.x) {
        const int j = idx / chunks, c = idx % chunks;
        if (k0 + j >= nk) break;
        const int64_t r = key_row[k0 + j];
        const uint16_t* src = r >= 0 ? a.kv + r * a.dh : a.entries + (-1 - r) * a.dh;
        reinterpret_cast<uint4*>(tile + j * a.dh)[c] = reinterpret_cast<const uint4*>(src)[c];
      }
    };
    // Both products walk the keys the same way: a tile at a time through shared memory, the
    // lane's DPL dims of key k in registers, then body(k, kreg) for each of the warp's heads.
    auto for_each_key = [&](auto&& body) {
      for (int k0 = 0; k0 < nk; k0 += kKeyTile) {
        load_tile(k0);
        __syncthreads();
        const int kt = min(kKeyTile, nk - k0);
        for (int j = 0; j < kt; ++j) {
          float kreg[DPL];
#pragma unroll
          for (int i = 0; i < DPL; ++i) kreg[i] = bf16_decode(tile[j * a.dh + lane * DPL + i]);
#pragma unroll
          for (int hh = 0; hh < kMaxHeadsPerWarp; ++hh) {
            const int h = warp * hpw + hh;
            if (hh >= hpw || h >= a.heads) break;
            body(k0 + j, hh, h, kreg);
          }
        }
        __syncthreads();
      }
    };

    // Phase 1: logits = (q_h · k) · scale.
    float qreg[kMaxHeadsPerWarp][DPL];
#pragma unroll
    for (int hh = 0; hh < kMaxHeadsPerWarp; ++hh) {
      const int h = warp * hpw + hh;
#pragma unroll
      for (int i = 0; i < DPL; ++i) {
        qreg[hh][i] = (hh < hpw && h < a.heads) ? bf16_decode(a.q[(n * a.heads + h) * a.dh + lane * DPL + i]) : 0.0f;
      }
    }
    for_each_key([&](int k, int hh, int h, const float* kreg) {
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < DPL; ++i) dot = fmaf(qreg[hh][i], kreg[i], dot);
      for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
      if (lane == 0) logits[h * a.max_keys + k] = __fmul_rn(dot, a.scale);
    });

    // Phase 2: sink softmax per head; probabilities rounded to bf16.
    for (int hh = 0; hh < hpw; ++hh) {
      const int h = warp * hpw + hh;
      if (h >= a.heads) break;
      float* l = logits + h * a.max_keys;
      const float sink = a.sink[h];
      float mx = sink;
      for (int k = lane; k < nk; k += 32) mx = fmaxf(mx, l[k]);
      for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      float sum = 0.0f;
      for (int k = lane; k < nk; k += 32) sum += expf(__fsub_rn(l[k], mx));
      for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
      const float denom = __fadd_rn(expf(__fsub_rn(sink, mx)), sum);
      __syncwarp();
      for (int k = lane; k < nk; k += 32) l[k] = bf16_decode(bf16_encode(__fdiv_rn(expf(__fsub_rn(l[k], mx)), denom)));
    }
    __syncthreads();

    // Phase 3: o_h = Σ_k p_hk · k, then inverse RoPE at the query position, rounded once.
    float acc[kMaxHeadsPerWarp][DPL];
#pragma unroll
    for (int hh = 0; hh < kMaxHeadsPerWarp; ++hh) {
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[hh][i] = 0.0f;
    }
    for_each_key([&](int k, int hh, int h, const float* kreg) {
      const float p = logits[h * a.max_keys + k];
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[hh][i] = fmaf(p, kreg[i], acc[hh][i]);
    });
    const int rd = a.rope.rope_dim, body = a.dh - rd, half = rd / 2;
#pragma unroll
    for (int hh = 0; hh < kMaxHeadsPerWarp; ++hh) {
      const int h = warp * hpw + hh;
      if (hh >= hpw || h >= a.heads) break;
      uint16_t* out = o + (n * a.heads + h) * a.dh + lane * DPL;
#pragma unroll
      for (int i = 0; i < DPL; i += 2) {
        const int d = lane * DPL + i;
        float x0 = acc[hh][i], x1 = acc[hh][i + 1];
        if (d >= body) {
          const int pi = (d - body) / 2;
          const float c = a.rope.cos[t * half + pi], sn = -a.rope.sin[t * half + pi];
          const float r0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, sn));
          const float r1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, sn));
          x0 = r0, x1 = r1;
        }
        out[i] = bf16_encode(x0);
        out[i + 1] = bf16_encode(x1);
      }
    }
    __syncthreads();
  }
}

template <int DPL>
void launch_core(const CoreArgs& a, int64_t queries, uint16_t* o, size_t smem, DeviceStream stream) {
  DSV4_CUDA_CHECK(cudaFuncSetAttribute(attention_core_kernel<DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  attention_core_kernel<DPL><<<grid_blocks(queries, 1, 1 << 20), kWarps * 32, smem, stream>>>(a, queries, o);
  DSV4_CUDA_CHECK_LAUNCH();
}

// The CSA picks of every query when a sequence has more entries than index_topk: device scores,
// host selection (indexer_pick), picks and counts back on the device. One synchronisation.
void indexer_picks(const DeviceAttention::Indexer& w, const ModelConfig& c, const DeviceRope& rope, const uint16_t* x,
                   const uint16_t* qr, int64_t sequences, int64_t tokens, int32_t* picks, int32_t* counts,
                   const CudaForwardContext& ctx) {
  const int ratio = w.compressor.ratio;
  const int64_t W = tokens / ratio, rows = sequences * tokens;
  ArenaScope scope(*ctx.arena);
  float* scores = ctx.arena->take<float>(static_cast<size_t>(rows * W), "indexer scores");
  indexer_scores_cuda(w, c, rope, x, qr, sequences, tokens, scores, ctx);
  std::vector<float> host(static_cast<size_t>(rows * W));
  DSV4_CUDA_CHECK(cudaMemcpyAsync(host.data(), scores, host.size() * sizeof(float), cudaMemcpyDeviceToHost, ctx.stream));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  std::vector<int32_t> host_picks(static_cast<size_t>(rows * c.index_topk), 0), host_counts(static_cast<size_t>(rows));
  for (int64_t s = 0; s < sequences; ++s) {
    const auto sel = indexer_pick(host.data() + s * tokens * W, tokens, W, ratio, c.index_topk);
    for (int64_t t = 0; t < tokens; ++t) {
      const auto& p = sel[static_cast<size_t>(t)];
      const int64_t r = s * tokens + t;
      host_counts[static_cast<size_t>(r)] = static_cast<int32_t>(p.size());
      std::copy(p.begin(), p.end(), host_picks.begin() + r * c.index_topk);
    }
  }
  DSV4_CUDA_CHECK(cudaMemcpyAsync(picks, host_picks.data(), host_picks.size() * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, ctx.stream));
  DSV4_CUDA_CHECK(cudaMemcpyAsync(counts, host_counts.data(), host_counts.size() * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, ctx.stream));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // the host vectors go out of scope
}

}  // namespace

void attention_forward_cuda(const DeviceAttention& w, const ModelConfig& c, const LayerSpec& spec,
                            const DeviceRope& rope, const uint16_t* x, int64_t sequences, int64_t tokens,
                            uint16_t* out, const CudaForwardContext& ctx) {
  const int64_t D = c.hidden_size, Q = c.q_lora_rank, H = c.num_heads, dh = c.head_dim;
  const int64_t G = c.o_groups, R = c.o_lora_rank, group_in = c.o_group_in();
  const int64_t N = sequences * tokens;
  DSV4_CHECK_IN("attention", spec.has_compressor() == w.compressor.has_value() &&
                                 spec.has_indexer() == w.indexer.has_value(),
                "%s: layer ratio %d, compressor %s, indexer %s", w.wq_a.name.c_str(), spec.compress_ratio,
                w.compressor ? "present" : "absent", w.indexer ? "present" : "absent");
  DSV4_CHECK_IN("attention", rope.rope_dim == c.rope_head_dim && rope.positions >= tokens,
                "%s: RoPE table (rope dim %d, %lld positions) for %lld tokens", w.wq_a.name.c_str(), rope.rope_dim,
                static_cast<long long>(rope.positions), static_cast<long long>(tokens));
  DSV4_CHECK_IN("attention", dh % 32 == 0 && dh / 32 <= 16 && (dh / 32) % 2 == 0 && H <= kWarps * kMaxHeadsPerWarp,
                "%s: head_dim %lld and %lld heads (the GPU kernel takes head_dim 64..512 in steps of 64, up to %d "
                "heads)",
                w.wq_a.name.c_str(), static_cast<long long>(dh), static_cast<long long>(H), kWarps * kMaxHeadsPerWarp);
  if (N == 0) return;
  DeviceArena& arena = *ctx.arena;
  const DeviceStream stream = ctx.stream;
  const float eps = static_cast<float>(c.rms_norm_eps);
  ArenaScope scope(arena);

  if (ctx.taps) {
    ctx.taps->on_tap({.modules = attention_input_modules(ctx.prefix, w.compressor.has_value(), w.indexer.has_value()),
                      .x = x, .rows = N, .cols = D, .ld = D});
  }

  // 1. qr = bf16(RMSNorm(bf16(x · wq_aᵀ); q_norm)); q = per-head norm and RoPE of qr · wq_bᵀ.
  uint16_t* qr = arena.take<uint16_t>(static_cast<size_t>(N * Q), "qr");
  linear_bf16_cuda(ctx.blas, x, N, D, w.wq_a.w, Q, {.y_bf16 = qr}, stream);
  norm_rope_cuda(qr, N, Q, {.weight = w.q_norm, .eps = eps}, qr, stream);
  if (ctx.taps) {
    ctx.taps->on_tap({.modules = attention_qr_modules(ctx.prefix, w.indexer.has_value()), .x = qr, .rows = N, .cols = Q,
                      .ld = Q});
  }
  uint16_t* q = arena.take<uint16_t>(static_cast<size_t>(N * H * dh), "q");
  linear_bf16_cuda(ctx.blas, qr, N, Q, w.wq_b.w, H * dh, {.y_bf16 = q}, stream);
  norm_rope_cuda(q, N * H, dh, {.eps = eps, .rope = &rope, .pos = {.rows_per_token = H, .tokens_per_seq = tokens}}, q,
                 stream);

  // 2. Shared K = V.
  uint16_t* kv = arena.take<uint16_t>(static_cast<size_t>(N * dh), "kv");
  linear_bf16_cuda(ctx.blas, x, N, D, w.wkv.w, dh, {.y_bf16 = kv}, stream);
  norm_rope_cuda(kv, N, dh, {.weight = w.kv_norm, .eps = eps, .rope = &rope, .pos = {.tokens_per_seq = tokens}}, kv,
                 stream);

  // 3. Compressed entries and the CSA picks.
  CoreArgs a{};
  a.q = q, a.kv = kv, a.sink = w.sink, a.rope = rope, a.tokens = tokens, a.heads = static_cast<int>(H);
  a.dh = static_cast<int>(dh), a.window = c.sliding_window, a.topk = c.index_topk;
  a.scale = static_cast<float>(std::pow(static_cast<double>(dh), -0.5));
  int64_t max_entries = 0;
  if (w.compressor) {
    a.ratio = w.compressor->ratio;
    a.windows = tokens / a.ratio;
    uint16_t* entries = arena.take<uint16_t>(static_cast<size_t>(sequences * a.windows * dh), "compressed entries");
    compressor_forward_cuda(*w.compressor, c, rope, x, sequences, tokens, entries, ctx);
    a.entries = a.windows > 0 ? entries : nullptr;
    max_entries = a.windows;
    if (w.indexer && a.windows > c.index_topk) {
      int32_t* picks = arena.take<int32_t>(static_cast<size_t>(N * c.index_topk), "indexer picks");
      int32_t* counts = arena.take<int32_t>(static_cast<size_t>(N), "indexer pick counts");
      indexer_picks(*w.indexer, c, rope, x, qr, sequences, tokens, picks, counts, ctx);
      a.picks = picks, a.pick_counts = counts;
      max_entries = c.index_topk;
    }
  }

  // 4. Core attention → o [N, H, dh] after inverse RoPE.
  a.max_keys = static_cast<int>(std::min<int64_t>(c.sliding_window, tokens) + max_entries);
  const size_t smem = static_cast<size_t>(H * a.max_keys) * sizeof(float) + kKeyTile * dh * sizeof(uint16_t) +
                      static_cast<size_t>(a.max_keys) * sizeof(int64_t);
  DSV4_CHECK_IN("attention", smem <= 227 * 1024,
                "%s: %d keys per query need %zu bytes of shared memory (limit 227 KiB): the GPU kernel does not "
                "tile logits yet",
                w.wq_a.name.c_str(), a.max_keys, smem);
  uint16_t* o = arena.take<uint16_t>(static_cast<size_t>(N * H * dh), "attention output");
  switch (dh / 32) {
    case 2: launch_core<2>(a, N, o, smem, stream); break;
    case 4: launch_core<4>(a, N, o, smem, stream); break;
    case 8: launch_core<8>(a, N, o, smem, stream); break;
    default: launch_core<16>(a, N, o, smem, stream); break;
  }

  // 5. Grouped wo_a (one GEMM per group, batched), then wo_b.
  if (ctx.taps) {
    for (int64_t g = 0; g < G; ++g) {
      ctx.taps->on_tap({.modules = {ctx.module("attn.wo_a")}, .x = o + g * group_in, .rows = N, .cols = group_in,
                        .ld = H * dh, .group = static_cast<int>(g)});
    }
  }
  uint16_t* z = arena.take<uint16_t>(static_cast<size_t>(N * G * R), "z");
  linear_bf16_batched_cuda(ctx.blas,
                           {.x = o, .rows = N, .in = group_in, .out = R, .w = w.wo_a.w,
                            .y = {.y_bf16 = z, .ldx = H * dh, .ldy = G * R}, .stride_x = group_in,
                            .stride_w = R * group_in, .stride_y = R, .count = static_cast<int>(G)},
                           stream);
  if (ctx.taps) ctx.taps->on_tap({.modules = {ctx.module("attn.wo_b")}, .x = z, .rows = N, .cols = G * R, .ld = G * R});
  linear_bf16_cuda(ctx.blas, z, N, G * R, w.wo_b.w, D, {.y_bf16 = out}, stream);
}

}  // namespace dsv4::model

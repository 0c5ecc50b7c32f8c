// moe_cuda.cu: moe_forward_cuda, the MoE sub-layer on the GPU (see forward_cuda.h), the bf16 mode
// of model/moe.cpp: fp32 router (sqrt-softplus scores, hash or learned top-k with ties to the lower
// expert id, normalised weights), the shared expert on every token, routed experts as one GEMM per
// expert over its gathered rows (rows in token order: a stable sort by expert), and the combine
// summing each token's expert outputs in ascending expert order in fp32, like the CPU loop.
// All-experts mode (taps only) runs every expert on every token in batches of experts
// (strided-batched GEMMs sharing x_ffn); the block output always comes from the routed rows.
//
// One device-to-host copy per call: the per-expert row counts (and the hash-table error flag),
// needed to size the per-expert GEMMs.
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec_inline.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "model/forward_cuda.h"

namespace dsv4::model {
namespace {

using codec::bf16_decode;
using codec::bf16_encode;

constexpr int kMaxTopK = 16;

struct RouteArgs {
  const float* logits;    // [N, E]
  const float* bias;      // [E] or null (hash routing)
  const int64_t* tid2eid; // [vocab, k] or null
  const int64_t* token_ids;
  int64_t vocab;
  int experts, top_k;
  float scaling;
};

// One warp per token: scores in shared memory, k rounds of a warp argmax (ties to the lower id).
__global__ void route_kernel(RouteArgs a, int64_t tokens, int32_t* chosen, float* weights, int32_t* counts,
                             unsigned long long* error) {
  extern __shared__ float smem[];  // [warps][2·E]: score, biased
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* s = smem + warp * 2 * a.experts;
  float* biased = s + a.experts;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(warps) + warp; t < tokens;
       t += static_cast<int64_t>(gridDim.x) * warps) {
    for (int e = lane; e < a.experts; e += 32) {
      const float l = a.logits[t * a.experts + e];
      const float sp = l > 20.0f ? l : log1pf(expf(l));
      s[e] = sqrtf(sp);
      biased[e] = a.bias ? __fadd_rn(s[e], a.bias[e]) : 0.0f;
    }
    __syncwarp();
    int32_t picked[kMaxTopK];
    if (a.tid2eid) {
      const int64_t id = a.token_ids[t];
      for (int j = 0; j < a.top_k; ++j) {
        int64_t e = -1;
        if (id >= 0 && id < a.vocab) e = a.tid2eid[id * a.top_k + j];
        if (e < 0 || e >= a.experts) {
          if (lane == 0) atomicCAS(error, 0ull, static_cast<unsigned long long>(t) + 1);
          e = 0;
        }
        picked[j] = static_cast<int32_t>(e);
      }
    } else {
      for (int j = 0; j < a.top_k; ++j) {
        float best = -INFINITY;
        int best_e = 0x7fffffff;
        for (int e = lane; e < a.experts; e += 32) {
          bool taken = false;
          for (int q = 0; q < j; ++q) taken |= picked[q] == e;
          const float v = biased[e];
          if (!taken && (v > best || (v == best && e < best_e) || best_e == 0x7fffffff)) best = v, best_e = e;
        }
        for (int o = 16; o > 0; o >>= 1) {
          const float ov = __shfl_xor_sync(0xffffffffu, best, o);
          const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
          if (oe != 0x7fffffff && (best_e == 0x7fffffff || ov > best || (ov == best && oe < best_e))) best = ov, best_e = oe;
        }
        picked[j] = best_e;
      }
    }
    if (lane == 0) {
      float sum = 0.0f;
      for (int j = 0; j < a.top_k; ++j) sum = __fadd_rn(sum, s[picked[j]]);
      const float denom = __fadd_rn(sum, 1e-20f);
      for (int j = 0; j < a.top_k; ++j) {
        chosen[t * a.top_k + j] = picked[j];
        weights[t * a.top_k + j] = __fmul_rn(__fdiv_rn(s[picked[j]], denom), a.scaling);
        atomicAdd(&counts[picked[j]], 1);
      }
    }
    __syncwarp();
  }
}

__global__ void iota_kernel(int32_t* v, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    v[i] = static_cast<int32_t>(i);
  }
}

// Sorted position p holds slot sorted[p] = t·k + j: gathers its row of x, its weight, its token,
// and records where the slot went.
__global__ void gather_kernel(const uint16_t* x, int64_t hidden, const int32_t* sorted, const float* weights,
                              int top_k, int64_t slots, uint16_t* xe, float* we, int32_t* rows, int32_t* where) {
  const int64_t n = slots * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = i / hidden, d = i - p * hidden;
    const int32_t slot = sorted[p];
    const int64_t t = slot / top_k;
    xe[i] = x[t * hidden + d];
    if (d == 0) {
      we[p] = weights[slot];
      rows[p] = static_cast<int32_t>(t);
      where[slot] = static_cast<int32_t>(p);
    }
  }
}

// out[t] = bf16(Σ_slots y (ascending expert, then slot) + shared), fp32 sums from 0 like the CPU.
__global__ void combine_kernel(const uint16_t* y, const int32_t* chosen, const int32_t* where, int top_k,
                               const uint16_t* shared, int64_t tokens, int64_t hidden, uint16_t* out) {
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / hidden, d = i - t * hidden;
    int order[kMaxTopK];
    for (int j = 0; j < top_k; ++j) order[j] = j;
    const int32_t* e = chosen + t * top_k;
    for (int j = 1; j < top_k; ++j) {  // insertion sort by (expert, slot): stable
      const int v = order[j];
      int q = j - 1;
      while (q >= 0 && e[order[q]] > e[v]) order[q + 1] = order[q], --q;
      order[q + 1] = v;
    }
    float acc = 0.0f;
    for (int j = 0; j < top_k; ++j) acc = __fadd_rn(acc, bf16_decode(y[where[t * top_k + order[j]] * hidden + d]));
    if (shared) acc = __fadd_rn(acc, bf16_decode(shared[i]));
    out[i] = bf16_encode(acc);
  }
}

// dense[e, t] = Σ_j weight of (t, j) routed to e, summed in slot order like the CPU.
__global__ void dense_weights_kernel(const int32_t* chosen, const float* weights, int top_k, int64_t tokens,
                                     float* dense) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < tokens;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    for (int j = 0; j < top_k; ++j) {
      float* d = dense + static_cast<int64_t>(chosen[t * top_k + j]) * tokens + t;
      *d = __fadd_rn(*d, weights[t * top_k + j]);
    }
  }
}

std::string expert_module(const CudaForwardContext& ctx, int e, const char* linear) {
  return ctx.prefix + "ffn.experts." + std::to_string(e) + "." + linear;
}

// Every expert on every token, for the taps: w1/w3 see x_ffn, w2 its h over all rows with the
// dense routing weights (0 where the token did not pick the expert).
void all_experts_taps(const DeviceMoe& w, const ModelConfig& c, const uint16_t* x, int64_t tokens,
                      const int32_t* chosen, const float* weights, const CudaForwardContext& ctx) {
  DeviceArena& arena = *ctx.arena;
  ArenaScope scope(arena);
  const int E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t D = c.hidden_size, I = c.moe_intermediate_size;
  float* dense = arena.take<float>(static_cast<size_t>(E * tokens), "all-experts routing weights");
  DSV4_CUDA_CHECK(cudaMemsetAsync(dense, 0, static_cast<size_t>(E * tokens) * sizeof(float), ctx.stream));
  dense_weights_kernel<<<grid_blocks(tokens), 256, 0, ctx.stream>>>(chosen, weights, k, tokens, dense);
  DSV4_CUDA_CHECK_LAUNCH();
  const size_t per_expert = static_cast<size_t>(tokens * 3 * I) * sizeof(uint16_t) + 2 * DeviceArena::kAlign;
  int batch = ctx.expert_batch > 0 ? ctx.expert_batch
                                   : static_cast<int>(std::min<size_t>(E, (arena.capacity() - arena.used()) / per_expert));
  batch = std::max(1, std::min(batch, E));
  uint16_t* gu = arena.take<uint16_t>(static_cast<size_t>(batch * tokens * 2 * I), "all-experts gate/up");
  uint16_t* h = arena.take<uint16_t>(static_cast<size_t>(batch * tokens * I), "all-experts hidden");
  for (int e0 = 0; e0 < E; e0 += batch) {
    const int b = std::min(batch, E - e0);
    linear_bf16_batched_cuda(ctx.blas,
                             {.x = x, .rows = tokens, .in = D, .out = 2 * I, .w = w.w13 + e0 * 2 * I * D,
                              .y = {.y_bf16 = gu}, .stride_x = 0, .stride_w = 2 * I * D,
                              .stride_y = tokens * 2 * I, .count = b},
                             ctx.stream);
    swiglu_cuda(gu, b * tokens, I, static_cast<float>(c.swiglu_limit), h, nullptr, nullptr, ctx.stream);
    DeviceTapEvent w2{.x = h, .rows = tokens, .cols = I, .ld = I, .batch = b, .batch_stride = tokens * I,
                      .expert = e0, .row_weights = dense + e0 * tokens};
    for (int e = e0; e < e0 + b; ++e) {
      ctx.taps->on_tap({.modules = {expert_module(ctx, e, "w1"), expert_module(ctx, e, "w3")}, .x = x,
                        .rows = tokens, .cols = D, .ld = D, .expert = e});
      w2.modules.push_back(expert_module(ctx, e, "w2"));
    }
    ctx.taps->on_tap(w2);
  }
}

// The routed path: rows grouped by expert in token order (a stable radix sort of the slots by
// expert id), per expert gate/up and w2 GEMMs, SwiGLU (plain for the tap, weighted for w2), the
// routed taps, then the combine into out. Its scratch is released on return.
void routed_experts(const DeviceMoe& w, const ModelConfig& c, const uint16_t* x, int64_t tokens, const int32_t* chosen,
                    const float* weights, const std::vector<int32_t>& host_counts, const uint16_t* shared_out,
                    uint16_t* out, const CudaForwardContext& ctx) {
  const int E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t D = c.hidden_size, I = c.moe_intermediate_size;
  const int64_t slots = tokens * k;
  const float limit = static_cast<float>(c.swiglu_limit);
  DeviceArena& arena = *ctx.arena;
  const DeviceStream stream = ctx.stream;
  ArenaScope scope(arena);
  int32_t* slot_ids = arena.take<int32_t>(static_cast<size_t>(slots), "slot ids");
  int32_t* sorted_experts = arena.take<int32_t>(static_cast<size_t>(slots), "sorted expert ids");
  int32_t* sorted = arena.take<int32_t>(static_cast<size_t>(slots), "slots by expert");
  iota_kernel<<<grid_blocks(slots), 256, 0, stream>>>(slot_ids, slots);
  DSV4_CUDA_CHECK_LAUNCH();
  int end_bit = 1;
  while ((1 << end_bit) < E) ++end_bit;
  size_t temp_bytes = 0;
  DSV4_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, chosen, sorted_experts, slot_ids, sorted,
                                                  static_cast<int>(slots), 0, end_bit, stream));
  void* temp = arena.take_bytes(temp_bytes, "expert sort scratch");
  DSV4_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, chosen, sorted_experts, slot_ids, sorted,
                                                  static_cast<int>(slots), 0, end_bit, stream));
  uint16_t* xe = arena.take<uint16_t>(static_cast<size_t>(slots * D), "routed rows");
  float* we = arena.take<float>(static_cast<size_t>(slots), "routed row weights");
  int32_t* rows = arena.take<int32_t>(static_cast<size_t>(slots), "routed row tokens");
  int32_t* where = arena.take<int32_t>(static_cast<size_t>(slots), "slot positions");
  gather_kernel<<<grid_blocks(slots * D, 256, 1 << 16), 256, 0, stream>>>(x, D, sorted, weights, k, slots, xe, we,
                                                                          rows, where);
  DSV4_CUDA_CHECK_LAUNCH();

  // Per expert: gate/up, SwiGLU (plain for the tap, weighted for w2), taps, w2.
  uint16_t* gu = arena.take<uint16_t>(static_cast<size_t>(slots * 2 * I), "routed gate/up");
  uint16_t* h = arena.take<uint16_t>(static_cast<size_t>(slots * I), "routed hidden");
  uint16_t* hw = arena.take<uint16_t>(static_cast<size_t>(slots * I), "routed weighted hidden");
  uint16_t* y = arena.take<uint16_t>(static_cast<size_t>(slots * D), "routed expert outputs");
  std::vector<int64_t> offset(static_cast<size_t>(E) + 1, 0);
  for (int e = 0; e < E; ++e) offset[e + 1] = offset[e] + host_counts[e];
  for (int e = 0; e < E; ++e) {
    const int64_t n = host_counts[e];
    if (n == 0) continue;
    const int64_t o = offset[e];
    linear_bf16_cuda(ctx.blas, xe + o * D, n, D, w.w13 + e * 2 * I * D, 2 * I, {.y_bf16 = gu + o * 2 * I}, stream);
  }
  swiglu_cuda(gu, slots, I, limit, h, we, hw, stream);
  const bool dense_taps = ctx.taps && ctx.all_experts;
  for (int e = 0; e < E; ++e) {
    const int64_t n = host_counts[e];
    const int64_t o = offset[e];
    if (n > 0) {
      if (ctx.taps && !dense_taps) {
        ctx.taps->on_tap({.modules = {expert_module(ctx, e, "w1"), expert_module(ctx, e, "w3")}, .x = xe + o * D,
                          .rows = n, .cols = D, .ld = D, .expert = e, .token_rows = rows + o});
        ctx.taps->on_tap({.modules = {expert_module(ctx, e, "w2")}, .x = h + o * I, .rows = n, .cols = I, .ld = I,
                          .expert = e, .token_rows = rows + o, .row_weights = we + o});
      }
      linear_bf16_cuda(ctx.blas, hw + o * I, n, I, w.w2 + e * D * I, D, {.y_bf16 = y + o * D}, stream);
    }
    if (ctx.taps) ctx.taps->on_expert_tokens(ctx.prefix, e, n);
  }
  combine_kernel<<<grid_blocks(tokens * D, 256, 1 << 16), 256, 0, stream>>>(y, chosen, where, k, shared_out, tokens,
                                                                            D, out);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace

void moe_forward_cuda(const DeviceMoe& w, const ModelConfig& c, const LayerSpec& spec, const uint16_t* x,
                      const int64_t* token_ids, int64_t tokens, uint16_t* out, const CudaForwardContext& ctx) {
  const int E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t D = c.hidden_size, I = c.moe_intermediate_size;
  const float limit = static_cast<float>(c.swiglu_limit);
  DSV4_CHECK_IN("moe", k >= 1 && k <= kMaxTopK && k <= E, "top-k %d of %d experts (GPU: up to %d)", k, E, kMaxTopK);
  DSV4_CHECK_IN("moe", c.scoring_func == "sqrtsoftplus", "scoring_func '%s' (only sqrtsoftplus is implemented)",
                c.scoring_func.c_str());
  const bool hash = spec.routing == RoutingKind::kHash;
  DSV4_CHECK_IN("moe", hash ? (w.tid2eid != nullptr && token_ids != nullptr) : w.bias != nullptr,
                "%s: %s routing needs %s", ctx.prefix.c_str(), hash ? "hash" : "learned",
                hash ? "tid2eid and the token ids" : "the router bias");
  DSV4_CHECK_IN("moe", (w.shared_w13 != nullptr) == (c.n_shared_experts == 1),
                "%s: shared expert %s but n_shared_experts = %d", ctx.prefix.c_str(),
                w.shared_w13 ? "present" : "absent", c.n_shared_experts);
  if (tokens == 0) return;
  DeviceArena& arena = *ctx.arena;
  const DeviceStream stream = ctx.stream;
  ArenaScope scope(arena);
  const int64_t slots = tokens * k;

  // Router (fp32) and selection.
  float* logits = arena.take<float>(static_cast<size_t>(tokens * E), "router logits");
  linear_bf16_cuda(ctx.blas, x, tokens, D, w.gate.w, E, {.y_f32 = logits}, stream);
  int32_t* chosen = arena.take<int32_t>(static_cast<size_t>(slots), "routed experts");
  float* weights = arena.take<float>(static_cast<size_t>(slots), "routing weights");
  int32_t* counts = arena.take<int32_t>(static_cast<size_t>(E), "expert counts");
  unsigned long long* error = arena.take<unsigned long long>(1, "hash routing error flag");
  DSV4_CUDA_CHECK(cudaMemsetAsync(counts, 0, static_cast<size_t>(E) * sizeof(int32_t), stream));
  DSV4_CUDA_CHECK(cudaMemsetAsync(error, 0, sizeof(unsigned long long), stream));
  const RouteArgs ra{logits, hash ? nullptr : w.bias, hash ? w.tid2eid : nullptr, token_ids, w.tid2eid_rows, E, k,
                     static_cast<float>(c.routed_scaling_factor)};
  constexpr int kRouteWarps = 4;
  route_kernel<<<grid_blocks(tokens, kRouteWarps), 32 * kRouteWarps, kRouteWarps * 2 * E * sizeof(float), stream>>>(
      ra, tokens, chosen, weights, counts, error);
  DSV4_CUDA_CHECK_LAUNCH();
  std::vector<int32_t> host_counts(static_cast<size_t>(E));
  unsigned long long host_error = 0;
  DSV4_CUDA_CHECK(cudaMemcpyAsync(host_counts.data(), counts, E * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  DSV4_CUDA_CHECK(cudaMemcpyAsync(&host_error, error, sizeof(host_error), cudaMemcpyDeviceToHost, stream));

  // Shared expert while the counts travel.
  uint16_t* shared_out = nullptr;
  if (w.shared_w13) {
    uint16_t* gu = arena.take<uint16_t>(static_cast<size_t>(tokens * 2 * I), "shared expert gate/up");
    uint16_t* h = arena.take<uint16_t>(static_cast<size_t>(tokens * I), "shared expert hidden");
    shared_out = arena.take<uint16_t>(static_cast<size_t>(tokens * D), "shared expert output");
    linear_bf16_cuda(ctx.blas, x, tokens, D, w.shared_w13, 2 * I, {.y_bf16 = gu}, stream);
    swiglu_cuda(gu, tokens, I, limit, h, nullptr, nullptr, stream);
    if (ctx.taps) {
      ctx.taps->on_tap({.modules = {ctx.module("ffn.shared_experts.w1"), ctx.module("ffn.shared_experts.w3")},
                        .x = x, .rows = tokens, .cols = D, .ld = D});
      ctx.taps->on_tap({.modules = {ctx.module("ffn.shared_experts.w2")}, .x = h, .rows = tokens, .cols = I, .ld = I});
    }
    linear_bf16_cuda(ctx.blas, h, tokens, I, w.shared_w2, D, {.y_bf16 = shared_out}, stream);
  }

  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
  DSV4_CHECK_IN("moe", host_error == 0, "%s: token %llu has an id outside tid2eid [%lld, %d] or a bad expert id",
                ctx.prefix.c_str(), host_error - 1, static_cast<long long>(w.tid2eid_rows), k);

  routed_experts(w, c, x, tokens, chosen, weights, host_counts, shared_out, out, ctx);
  if (ctx.taps && ctx.all_experts) all_experts_taps(w, c, x, tokens, chosen, weights, ctx);
}

}  // namespace dsv4::model

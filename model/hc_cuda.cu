// hc_cuda.cu: HC pre/post on the GPU (see hc_cuda.h). Mirrors model/hc.cpp step by step.
#include "model/hc_cuda.h"

#include <cuda_runtime.h>

#include "common/check.h"
#include "common/codec_inline.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"

namespace dsv4::model {
namespace {

using codec::bf16_decode;
using codec::bf16_encode;

constexpr int kThreads = 256;
constexpr int kMaxStreams = 8;

__device__ inline float sigmoid_dev(float x) { return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x))); }

// model/hc.cpp hc_sinkhorn, one token, by one thread.
__device__ void sinkhorn(float* c, int n, int iters, float eps) {
  for (int j = 0; j < n; ++j) {
    float* row = c + j * n;
    float mx = row[0];
    for (int k = 1; k < n; ++k) mx = fmaxf(mx, row[k]);
    float sum = 0.0f;
    for (int k = 0; k < n; ++k) {
      row[k] = expf(__fsub_rn(row[k], mx));
      sum = __fadd_rn(sum, row[k]);
    }
    for (int k = 0; k < n; ++k) row[k] = __fadd_rn(__fdiv_rn(row[k], sum), eps);
  }
  for (int it = 0; it < iters; ++it) {
    if (it > 0) {
      for (int j = 0; j < n; ++j) {
        float sum = 0.0f;
        for (int k = 0; k < n; ++k) sum = __fadd_rn(sum, c[j * n + k]);
        const float denom = __fadd_rn(sum, eps);
        for (int k = 0; k < n; ++k) c[j * n + k] = __fdiv_rn(c[j * n + k], denom);
      }
    }
    for (int k = 0; k < n; ++k) {
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) sum = __fadd_rn(sum, c[j * n + k]);
      const float denom = __fadd_rn(sum, eps);
      for (int j = 0; j < n; ++j) c[j * n + k] = __fdiv_rn(c[j * n + k], denom);
    }
  }
}

struct PreArgs {
  const float* parts;  // [N, 3·mix] partial dot products (hi, mid, lo)
  const float* base;
  const float* scale;
  int n, mix, iters;
  int64_t hidden;
  double rms_eps;  // double like the CPU's config.rms_norm_eps
  float hc_eps;
};

// One block per token: RMS of the flattened state, mixing weights, Sinkhorn, then the collapse.
__global__ void hc_pre_kernel(PreArgs a, const uint16_t* state, int64_t tokens, uint16_t* y, float* post,
                              float* comb) {
  __shared__ double partial[kThreads / 32];
  __shared__ float pre[kMaxStreams];
  __shared__ float cm[kMaxStreams * kMaxStreams];
  const int64_t flat = a.n * a.hidden;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const uint16_t* x = state + t * flat;
    double sum_sq = 0.0;
    for (int64_t i = threadIdx.x; i < flat; i += blockDim.x) {
      const double v = bf16_decode(x[i]);
      sum_sq += v * v;
    }
    for (int o = 16; o > 0; o >>= 1) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, o);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum_sq;
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0.0;
      for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
      const float r = static_cast<float>(1.0 / sqrt(total / static_cast<double>(flat) + a.rms_eps));
      const float* p = a.parts + t * 3 * a.mix;
      auto m = [&](int i) { return __fmul_rn(__fadd_rn(__fadd_rn(p[i], p[a.mix + i]), p[2 * a.mix + i]), r); };
      for (int j = 0; j < a.n; ++j) {
        pre[j] = __fadd_rn(sigmoid_dev(__fadd_rn(__fmul_rn(m(j), a.scale[0]), a.base[j])), a.hc_eps);
        post[t * a.n + j] =
            __fmul_rn(2.0f, sigmoid_dev(__fadd_rn(__fmul_rn(m(a.n + j), a.scale[1]), a.base[a.n + j])));
      }
      for (int i = 0; i < a.n * a.n; ++i) cm[i] = __fadd_rn(__fmul_rn(m(2 * a.n + i), a.scale[2]), a.base[2 * a.n + i]);
      sinkhorn(cm, a.n, a.iters, a.hc_eps);
      for (int i = 0; i < a.n * a.n; ++i) comb[t * a.n * a.n + i] = cm[i];
    }
    __syncthreads();
    for (int64_t d = threadIdx.x; d < a.hidden; d += blockDim.x) {
      float acc = __fmul_rn(pre[0], bf16_decode(x[d]));
      for (int j = 1; j < a.n; ++j) acc = __fadd_rn(acc, __fmul_rn(pre[j], bf16_decode(x[j * a.hidden + d])));
      y[t * a.hidden + d] = bf16_encode(acc);
    }
    __syncthreads();
  }
}

__global__ void hc_post_kernel(const uint16_t* f, const uint16_t* state, const float* post, const float* comb,
                               int64_t tokens, int n, int64_t hidden, uint16_t* next) {
  const int64_t total = tokens * n * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = i % hidden;
    const int64_t k = (i / hidden) % n;
    const int64_t t = i / (hidden * n);
    const uint16_t* x = state + t * n * hidden;
    const float* c = comb + t * n * n;
    float acc = __fmul_rn(post[t * n + k], bf16_decode(f[t * hidden + d]));
    for (int j = 0; j < n; ++j) acc = __fadd_rn(acc, __fmul_rn(c[j * n + k], bf16_decode(x[j * hidden + d])));
    next[i] = bf16_encode(acc);
  }
}

}  // namespace

void hc_pre_cuda(const DeviceHc& w, const ModelConfig& c, const uint16_t* state, int64_t tokens, uint16_t* y,
                 const DeviceHcMix& mix, BlasHandle blas, DeviceArena& arena, DeviceStream stream) {
  DSV4_CHECK_IN("hc", c.hc_mult > 0 && c.hc_mult <= kMaxStreams && c.hc_sinkhorn_iters >= 1,
                "hc_mult %d (GPU supports up to %d), sinkhorn iters %d", c.hc_mult, kMaxStreams, c.hc_sinkhorn_iters);
  if (tokens == 0) return;
  const int mixes = static_cast<int>(c.hc_mix());
  ArenaScope scope(arena);
  float* parts = arena.take<float>(static_cast<size_t>(tokens * 3 * mixes), "HC mixing partial sums");
  linear_bf16_cuda(blas, state, tokens, c.hc_dim(), w.fn_parts, 3 * mixes, {.y_f32 = parts}, stream);
  PreArgs a{parts,
            w.base,
            w.scale,
            c.hc_mult,
            mixes,
            c.hc_sinkhorn_iters,
            c.hidden_size,
            c.rms_norm_eps,
            static_cast<float>(c.hc_eps)};
  hc_pre_kernel<<<grid_blocks(tokens, 1, 1 << 20), kThreads, 0, stream>>>(a, state, tokens, y, mix.post, mix.comb);
  DSV4_CUDA_CHECK_LAUNCH();
}

void hc_post_cuda(const ModelConfig& c, const uint16_t* f, const uint16_t* state, const DeviceHcMix& mix,
                  int64_t tokens, uint16_t* next_state, DeviceStream stream) {
  DSV4_CHECK_IN("hc", state != next_state || tokens == 0, "hc_post cannot run in place");
  if (tokens == 0) return;
  const int64_t total = tokens * c.hc_mult * c.hidden_size;
  hc_post_kernel<<<grid_blocks(total, 256, 1 << 16), 256, 0, stream>>>(f, state, mix.post, mix.comb, tokens,
                                                                      c.hc_mult, c.hidden_size, next_state);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::model

// hc_cuda.h: manifold-constrained hyper-connections (reference §3.1) on the GPU (CUDA builds;
// issue 9), the bf16 numeric mode of model/hc.h: the residual state X [N, n, D] is bf16 and the
// HC math is fp32, with the CPU's operations in the CPU's order (round-to-nearest intrinsics,
// sums of squares in double). The mixing GEMM multiplies fp32 `fn` by the bf16 state on tensor
// cores exactly: fn = hi + mid + lo (three bf16 parts, checked exact at upload), one bf16 GEMM
// over the stacked parts, the three fp32 partial dot products added per token.
//
//   hc_pre_cuda(w.hc_attn, config, X, N, y, mix, blas, arena, stream);   // y = bf16(Σ_j pre_j X[j])
//   hc_post_cuda(config, f, X, mix, N, X_next, stream);                  // X' = bf16(post f + Cᵀ X)
//
// Internal to model/ (block_cuda.cu). Legend: N = tokens, n = hc_mult, D = hidden, mix = (2+n)n.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/gemm_cuda.h"

namespace dsv4 {
class DeviceArena;
}

namespace dsv4::model {

struct DeviceHc {
  const uint16_t* fn_parts = nullptr;  // [3·mix, n·D] bf16: hi rows, then mid, then lo
  const float* base = nullptr;         // [mix]
  const float* scale = nullptr;        // [3]
};

struct DeviceHcMix {
  float* post = nullptr;  // [N, n]
  float* comb = nullptr;  // [N, n, n], row j = source stream
};

void hc_pre_cuda(const DeviceHc& w, const ModelConfig& config, const uint16_t* state, int64_t tokens, uint16_t* y,
                 const DeviceHcMix& mix, BlasHandle blas, DeviceArena& arena, DeviceStream stream);

void hc_post_cuda(const ModelConfig& config, const uint16_t* f, const uint16_t* state, const DeviceHcMix& mix,
                  int64_t tokens, uint16_t* next_state, DeviceStream stream);

}  // namespace dsv4::model

// hessian_cuda.cu: S += XᵀX through cuBLAS (see hessian_cuda.h).
#include "quant/hessian_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>

#include "common/check.h"
#include "common/cuda_grid.h"

namespace dsv4::quant {
namespace {

// Row-major X [tokens, d] is column-major Xc [d, tokens] (ld = d), so S = Xc · Xcᵀ: an
// (N, T) GEMM with m = n = d and k = tokens. S is symmetric, so its row/column order is moot.
void check_dims(int64_t tokens, int64_t d) {
  DSV4_CHECK_IN("hessian", tokens >= 0 && d > 0 && tokens <= INT_MAX && d <= INT_MAX,
                "Hessian of [%lld, %lld] inputs", static_cast<long long>(tokens), static_cast<long long>(d));
}

__global__ void finalize_kernel(const float* s, float n, int64_t count, float* h) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    h[i] = __fdiv_rn(2.0f * s[i], n);
  }
}

}  // namespace

void hessian_sum_cuda(BlasHandle blas, const uint16_t* x, int64_t tokens, int64_t d, float* s, DeviceStream stream,
                      int64_t ld) {
  check_dims(tokens, d);
  if (ld == 0) ld = d;
  DSV4_CHECK_IN("hessian", ld >= d && ld <= INT_MAX, "row stride %lld for %lld columns", static_cast<long long>(ld),
                static_cast<long long>(d));
  if (tokens == 0) return;
  const float one = 1.0f;
  DSV4_CUBLAS_CHECK(cublasSetStream(blas, stream));
  const int n = static_cast<int>(d), k = static_cast<int>(tokens), l = static_cast<int>(ld);
  DSV4_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_T, n, n, k, &one, x, CUDA_R_16BF, l, x, CUDA_R_16BF, l,
                                 &one, s, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void hessian_sum_f32_cuda(BlasHandle blas, const float* x, int64_t tokens, int64_t d, float* s, DeviceStream stream) {
  check_dims(tokens, d);
  if (tokens == 0) return;
  const float one = 1.0f;
  DSV4_CUBLAS_CHECK(cublasSetStream(blas, stream));
  const int n = static_cast<int>(d), k = static_cast<int>(tokens);
  DSV4_CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, n, n, k, &one, x, n, x, n, &one, s, n));
}

void hessian_sum_batched_cuda(BlasHandle blas, const uint16_t* x, int64_t tokens, int64_t d, float* s, int count,
                              DeviceStream stream) {
  check_dims(tokens, d);
  DSV4_CHECK_IN("hessian", count >= 0, "batch of %d Hessians", count);
  if (tokens == 0 || count == 0) return;
  const float one = 1.0f;
  DSV4_CUBLAS_CHECK(cublasSetStream(blas, stream));
  const int n = static_cast<int>(d), k = static_cast<int>(tokens);
  DSV4_CUBLAS_CHECK(cublasGemmStridedBatchedEx(blas, CUBLAS_OP_N, CUBLAS_OP_T, n, n, k, &one, x, CUDA_R_16BF, n,
                                               tokens * d, x, CUDA_R_16BF, n, tokens * d, &one, s, CUDA_R_32F, n, d * d,
                                               count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void hessian_finalize_cuda(const float* s, int64_t tokens, int64_t d, float* h, DeviceStream stream) {
  DSV4_CHECK_IN("hessian", tokens >= 0 && d > 0, "finalizing a [%lld, %lld] Hessian of %lld tokens",
                static_cast<long long>(d), static_cast<long long>(d), static_cast<long long>(tokens));
  const int64_t count = d * d;
  if (tokens == 0 || s == nullptr) {
    DSV4_CHECK_IN("hessian", tokens == 0, "finalizing a Hessian of %lld tokens without its sum",
                  static_cast<long long>(tokens));
    DSV4_CUDA_CHECK(cudaMemsetAsync(h, 0, static_cast<size_t>(count) * sizeof(float), stream));
    return;
  }
  // n as finalize() converts it (int64 -> float, round to nearest).
  finalize_kernel<<<grid_blocks(count, 256, 1 << 16), 256, 0, stream>>>(s, static_cast<float>(tokens), count, h);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::quant

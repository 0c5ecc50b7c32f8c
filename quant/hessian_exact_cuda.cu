// hessian_exact_cuda.cu: exact fixed-point Hessian sums on the GPU (see hessian_exact_cuda.h).
#include "quant/hessian_exact_cuda.h"

#include <cuda_runtime.h>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "quant/hessian_exact_inline.h"

namespace dsv4::quant {
namespace {

constexpr int kThreads = 256;

__global__ void exact_add_kernel(const float* gram, int64_t n, int64_t* limbs, int* status) {
  int bad = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t a[3];
    bad |= exact_addend(gram[i], a);
    limbs[i] += a[0];
    limbs[n + i] += a[1];
    limbs[2 * n + i] += a[2];
  }
  if (bad) atomicOr(status, bad);
}

__global__ void exact_normalize_kernel(int64_t* limbs, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    exact_normalize(limbs[i], limbs[n + i], limbs[2 * n + i]);
  }
}

__global__ void exact_round_kernel(const int64_t* limbs, int64_t n, float* sum, int* status) {
  int bad = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    sum[i] = exact_round(limbs[i], limbs[n + i], limbs[2 * n + i], &bad);
  }
  if (bad) atomicOr(status, bad);
}

void check_entries(int64_t n) {
  DSV4_CHECK_IN("hessian", n >= 0, "exact sum of %lld entries", static_cast<long long>(n));
}

}  // namespace

void hessian_exact_add_cuda(const float* gram, int64_t entries, int64_t* limbs, int* status, CUstream_st* stream) {
  check_entries(entries);
  if (entries == 0) return;
  exact_add_kernel<<<grid_blocks(entries, kThreads, 1 << 16), kThreads, 0, stream>>>(gram, entries, limbs, status);
  DSV4_CUDA_CHECK_LAUNCH();
}

void hessian_exact_normalize_cuda(int64_t* limbs, int64_t entries, CUstream_st* stream) {
  check_entries(entries);
  if (entries == 0) return;
  exact_normalize_kernel<<<grid_blocks(entries, kThreads, 1 << 16), kThreads, 0, stream>>>(limbs, entries);
  DSV4_CUDA_CHECK_LAUNCH();
}

void hessian_exact_round_cuda(const int64_t* limbs, int64_t entries, float* sum, int* status, CUstream_st* stream) {
  check_entries(entries);
  if (entries == 0) return;
  exact_round_kernel<<<grid_blocks(entries, kThreads, 1 << 16), kThreads, 0, stream>>>(limbs, entries, sum, status);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::quant

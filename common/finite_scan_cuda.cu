// finite_scan_cuda.cu: non_finite_count_bf16_cuda (finite_scan_cuda.h).
#include <cuda_runtime.h>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/finite_scan_cuda.h"

namespace dsv4 {
namespace {

constexpr int kThreads = 256;

// Grid-stride count; each block reduces its threads' counts in shared memory, then one atomic.
// A bf16 is NaN or infinite when its 8 exponent bits are all ones (finite_scan.cpp's test).
__global__ void non_finite_count_bf16_kernel(const uint16_t* values, size_t count, unsigned long long* total) {
  __shared__ unsigned int block_count[kThreads];
  unsigned int mine = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    mine += (values[i] & 0x7f80u) == 0x7f80u ? 1u : 0u;
  }
  block_count[threadIdx.x] = mine;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) block_count[threadIdx.x] += block_count[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0 && block_count[0] > 0) atomicAdd(total, static_cast<unsigned long long>(block_count[0]));
}

}  // namespace

void non_finite_count_bf16_cuda(CUstream_st* stream, const uint16_t* values, size_t count,
                                unsigned long long* device_count) {
  if (count == 0) return;
  DSV4_CHECK_IN("cuda", values != nullptr && device_count != nullptr, "non-finite count of %zu values at null", count);
  // A block's count fits 32 bits: with at least min(blocks, 4096) x 256 threads sharing the values,
  // a block sees at most 256 * ceil(count / 2^20) of them, under 2^32 below 2^44 values (32 TB).
  non_finite_count_bf16_kernel<<<grid_blocks(static_cast<int64_t>(count), kThreads, 4096), kThreads, 0, stream>>>(
      values, count, device_count);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4

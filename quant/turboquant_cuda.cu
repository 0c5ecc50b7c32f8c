// turboquant_cuda.cu: tq_quantize_cuda (see turboquant_cuda.h).
#include "quant/turboquant_cuda.h"

#include <cuda_runtime.h>

#include <cmath>

#include "common/check.h"
#include "quant/turboquant.h"

namespace dsv4::quant {
namespace {

constexpr int kMaxGroup = 1024;
constexpr int kMaxLevels = 16;

// The codec's tables, per launch as a kernel parameter (no device allocation: the pipeline's
// arena holds the GPU's free memory): centroids, boundaries, and D1 / D2 as bit masks (bit i set:
// +1), turned back into the same ±1.0f factors the CPU multiplies by.
struct TqTables {
  float centroids[kMaxLevels];
  float boundaries[kMaxLevels];
  uint32_t s1[kMaxGroup / 32], s2[kMaxGroup / 32];
  int levels;
};

__device__ float sign_of(const uint32_t* mask, int i) { return (mask[i / 32] >> (i % 32)) & 1u ? 1.0f : -1.0f; }

// y in shared memory, G threads: the butterfly by strides 1, 2, 4 ..., then / float(√G).
__device__ void fwht_shared(float* y, int g, float root) {
  const int t = threadIdx.x;
  for (int h = 1; h < g; h *= 2) {
    __syncthreads();
    if (t < g / 2) {
      const int i = (t / h) * 2 * h + (t % h);  // the pair (i, i + h) of block t / h
      const float a = y[i], b = y[i + h];
      y[i] = __fadd_rn(a, b);
      y[i + h] = __fsub_rn(a, b);
    }
  }
  __syncthreads();
  y[t] = __fdiv_rn(y[t], root);
  __syncthreads();
}

// Sqrt of the double sum of squares in index order (thread 0), as tq_norm.
__device__ float norm_shared(const float* y, int g, float* out) {
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0.0;
    for (int i = 0; i < g; ++i) sum = __dadd_rn(sum, __dmul_rn(static_cast<double>(y[i]), static_cast<double>(y[i])));
    *out = static_cast<float>(__dsqrt_rn(sum));
  }
  __syncthreads();
  return *out;
}

__global__ void tq_quantize_kernel(TqTables tab, int bits, int g, float root, const float* __restrict__ w, int64_t cols,
                                   int64_t groups, uint8_t* __restrict__ packed, float* __restrict__ norms,
                                   float* __restrict__ dequant) {
  __shared__ float y[kMaxGroup];
  __shared__ int idx[kMaxGroup];
  __shared__ float nrm, recon;
  const int t = threadIdx.x;
  const int64_t row = blockIdx.x / groups, k = blockIdx.x % groups, c = k * g + t;
  const float x = c < cols ? w[row * cols + c] : 0.0f;  // zero padding, as upstream
  const float s1 = sign_of(tab.s1, t), s2 = sign_of(tab.s2, t);
  y[t] = x;
  const float n = norm_shared(y, g, &nrm);
  const float safe = n > 0.0f ? n : 1.0f;
  y[t] = __fmul_rn(__fdiv_rn(x, safe), s1);
  fwht_shared(y, g, root);
  const float v = __fmul_rn(y[t], s2);
  int i = 0;
  while (i < tab.levels - 1 && tab.boundaries[i] < v) ++i;  // searchsorted, left
  idx[t] = i;
  // Norm correction: the reconstruction D1·H·D2·c[idx] and its norm.
  __syncthreads();
  y[t] = __fmul_rn(tab.centroids[i], s2);
  fwht_shared(y, g, root);
  y[t] = __fmul_rn(y[t], s1);
  const float r = norm_shared(y, g, &recon);
  const float corrected = __fdiv_rn(n, r > 0.0f ? r : 1.0f);
  if (t == 0) norms[blockIdx.x] = corrected;
  if (dequant != nullptr && c < cols) dequant[row * cols + c] = __fmul_rn(y[t], corrected);
  // Pack: 3 bits, eight indices in a little-endian 24-bit word; 4 and 2 bits, low first.
  uint8_t* out = packed + static_cast<int64_t>(blockIdx.x) * (g * bits / 8);
  if (bits == 3) {
    if (t < g / 8) {
      uint32_t word = 0;
      for (int q = 0; q < 8; ++q) word |= static_cast<uint32_t>(idx[t * 8 + q]) << (3 * q);
      out[3 * t] = static_cast<uint8_t>(word);
      out[3 * t + 1] = static_cast<uint8_t>(word >> 8);
      out[3 * t + 2] = static_cast<uint8_t>(word >> 16);
    }
  } else {
    const int per = 8 / bits;
    if (t < g / per) {
      uint32_t b = 0;
      for (int q = 0; q < per; ++q) b |= static_cast<uint32_t>(idx[t * per + q]) << (bits * q);
      out[t] = static_cast<uint8_t>(b);
    }
  }
}

}  // namespace

void tq_quantize_cuda(int bits, int group_size, const float* w, int64_t rows, int64_t cols, uint8_t* packed,
                      float* norms, float* dequant, CUstream_st* stream) {
  const TqCodec codec(bits, group_size);  // checks bits and the group size
  DSV4_CHECK_IN("quant", group_size <= kMaxGroup && w != nullptr && packed != nullptr && norms != nullptr && rows > 0 &&
                             cols > 0,
                "tq_quantize_cuda: group %d (at most %d), [%lld, %lld], null pointers not allowed", group_size, kMaxGroup,
                static_cast<long long>(rows), static_cast<long long>(cols));
  TqTables tab{};
  tab.levels = static_cast<int>(codec.centroids().size());
  for (int i = 0; i < tab.levels; ++i) tab.centroids[i] = codec.centroids()[static_cast<size_t>(i)];
  for (int i = 0; i + 1 < tab.levels; ++i) tab.boundaries[i] = codec.boundaries()[static_cast<size_t>(i)];
  for (int i = 0; i < group_size; ++i) {
    if (codec.signs1()[static_cast<size_t>(i)] > 0.0f) tab.s1[i / 32] |= 1u << (i % 32);
    if (codec.signs2()[static_cast<size_t>(i)] > 0.0f) tab.s2[i / 32] |= 1u << (i % 32);
  }
  const int64_t groups = tq_groups_per_row(cols, group_size);
  const float root = static_cast<float>(std::sqrt(static_cast<double>(group_size)));
  tq_quantize_kernel<<<static_cast<unsigned>(rows * groups), static_cast<unsigned>(group_size), 0, stream>>>(
      tab, bits, group_size, root, w, cols, groups, packed, norms, dequant);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::quant

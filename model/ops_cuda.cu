// ops_cuda.cu: row-wise forward kernels (see ops_cuda.h).
#include "model/ops_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "common/check.h"
#include "common/codec_inline.h"
#include "common/cuda_grid.h"

namespace dsv4::model {
namespace {

using codec::bf16_decode;
using codec::bf16_encode;

constexpr int kNormThreads = 256;

__device__ inline float bf16_round_dev(float v) { return bf16_decode(bf16_encode(v)); }

// Block-wide sum of one double per thread (kNormThreads threads).
__device__ double block_sum(double v, double* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kNormThreads / 32; ++w) total += shared[w];
  __syncthreads();
  return total;
}

// One block per row; the normalised, bf16-rounded row sits in shared memory while the trailing
// rope pairs rotate, so the rotation reads the rounded values as the CPU does.
__global__ void norm_rope_kernel(const uint16_t* x, int64_t rows, int dim, NormRope op, DeviceRope rope,
                                 bool has_rope, uint16_t* y) {
  extern __shared__ float row[];  // [dim]
  __shared__ double partial[kNormThreads / 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const uint16_t* xr = x + r * dim;
    float inv = 1.0f;
    if (op.normalize) {
      double sum_sq = 0.0;
      for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        const double v = bf16_decode(xr[d]);
        sum_sq += v * v;
      }
      sum_sq = block_sum(sum_sq, partial);
      inv = static_cast<float>(1.0 / sqrt(sum_sq / static_cast<double>(dim) + op.eps));
    }
    for (int d = threadIdx.x; d < dim; d += blockDim.x) {
      float v = bf16_decode(xr[d]);
      if (op.normalize) {
        v = __fmul_rn(v, inv);
        if (op.weight) v = __fmul_rn(v, op.weight[d]);
        v = bf16_round_dev(v);
      }
      row[d] = v;
    }
    __syncthreads();
    uint16_t* yr = y + r * dim;
    const int body = has_rope ? dim - rope.rope_dim : dim;
    for (int d = threadIdx.x; d < body; d += blockDim.x) yr[d] = bf16_encode(row[d]);
    if (has_rope) {
      const int half = rope.rope_dim / 2;
      const int64_t pos = ((r / op.pos.rows_per_token) % op.pos.tokens_per_seq) * op.pos.stride;
      const float* c = rope.cos + pos * half;
      const float* s = rope.sin + pos * half;
      for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float a = row[body + 2 * i], b = row[body + 2 * i + 1];
        const float sn = op.inverse ? -s[i] : s[i];
        yr[body + 2 * i] = bf16_encode(__fsub_rn(__fmul_rn(a, c[i]), __fmul_rn(b, sn)));
        yr[body + 2 * i + 1] = bf16_encode(__fadd_rn(__fmul_rn(b, c[i]), __fmul_rn(a, sn)));
      }
    }
    __syncthreads();
  }
}

__global__ void swiglu_kernel(const uint16_t* gu, int64_t rows, int64_t inter, float limit, uint16_t* h,
                              const float* row_weights, uint16_t* hw) {
  const int64_t n = rows * inter;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / inter, c = i - r * inter;
    const float g = fminf(bf16_decode(gu[r * 2 * inter + c]), limit);
    const float u = fminf(fmaxf(bf16_decode(gu[r * 2 * inter + inter + c]), -limit), limit);
    const float silu = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
    const float v = __fmul_rn(silu, u);
    h[i] = bf16_encode(v);
    if (hw) hw[i] = bf16_encode(__fmul_rn(v, row_weights[r]));
  }
}

__global__ void bf16_from_f32_kernel(const float* x, int64_t n, uint16_t* y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = bf16_encode(x[i]);
  }
}

__global__ void f32_from_bf16_kernel(const uint16_t* x, int64_t n, float* y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = bf16_decode(x[i]);
  }
}

}  // namespace

DeviceRopeTable::DeviceRopeTable(const RopeTable& table) {
  const size_t n = table.cos.size();
  DSV4_CHECK_IN("rope", table.sin.size() == n && table.rope_dim > 0 &&
                            n == static_cast<size_t>(table.positions * (table.rope_dim / 2)),
                "table of %lld positions, rope dim %d, %zu cos values", static_cast<long long>(table.positions),
                table.rope_dim, n);
  float* p = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(2 * n, 1) * sizeof(float)));
  memory_ = std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
  DSV4_CUDA_CHECK(cudaMemcpy(p, table.cos.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  DSV4_CUDA_CHECK(cudaMemcpy(p + n, table.sin.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  view_ = {table.rope_dim, table.positions, p, p + n};
}

void norm_rope_cuda(const uint16_t* x, int64_t rows, int64_t dim, const NormRope& op, uint16_t* y,
                    DeviceStream stream) {
  DSV4_CHECK_IN("norm_rope", rows >= 0 && dim > 0 && dim <= 16384, "[%lld, %lld] rows", static_cast<long long>(rows),
                static_cast<long long>(dim));
  if (op.rope) {
    DSV4_CHECK_IN("norm_rope", op.rope->rope_dim > 0 && op.rope->rope_dim % 2 == 0 && op.rope->rope_dim <= dim,
                  "rope dim %d for rows of %lld", op.rope->rope_dim, static_cast<long long>(dim));
    DSV4_CHECK_IN("norm_rope", op.pos.rows_per_token > 0 && op.pos.tokens_per_seq > 0 &&
                                   (op.pos.tokens_per_seq - 1) * op.pos.stride < op.rope->positions,
                  "positions up to %lld, table has %lld",
                  static_cast<long long>((op.pos.tokens_per_seq - 1) * op.pos.stride),
                  static_cast<long long>(op.rope->positions));
  }
  if (rows == 0) return;
  const DeviceRope rope = op.rope ? *op.rope : DeviceRope{};
  norm_rope_kernel<<<grid_blocks(rows, 1, 1 << 20), kNormThreads, dim * sizeof(float), stream>>>(
      x, rows, static_cast<int>(dim), op, rope, op.rope != nullptr, y);
  DSV4_CUDA_CHECK_LAUNCH();
}

void swiglu_cuda(const uint16_t* gu, int64_t rows, int64_t inter, float limit, uint16_t* h,
                 const float* row_weights, uint16_t* hw, DeviceStream stream) {
  DSV4_CHECK_IN("swiglu", (row_weights == nullptr) == (hw == nullptr), "weighted output needs both weights and hw");
  if (rows * inter == 0) return;
  swiglu_kernel<<<grid_blocks(rows * inter, 256, 1 << 16), 256, 0, stream>>>(gu, rows, inter, limit, h,
                                                                            row_weights, hw);
  DSV4_CUDA_CHECK_LAUNCH();
}

void bf16_from_f32_cuda(const float* x, int64_t count, uint16_t* y, DeviceStream stream) {
  if (count == 0) return;
  bf16_from_f32_kernel<<<grid_blocks(count, 256, 1 << 16), 256, 0, stream>>>(x, count, y);
  DSV4_CUDA_CHECK_LAUNCH();
}

void f32_from_bf16_cuda(const uint16_t* x, int64_t count, float* y, DeviceStream stream) {
  if (count == 0) return;
  f32_from_bf16_kernel<<<grid_blocks(count, 256, 1 << 16), 256, 0, stream>>>(x, count, y);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::model

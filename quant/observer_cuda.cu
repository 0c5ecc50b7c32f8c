// observer_cuda.cu: min-max and MSE observers on the GPU (see observer_cuda.h). The per-cell
// arithmetic is quant/quantizer_inline.h, the code the CPU reference runs.
//
// Kernels, per call:
//   1. minmax_kernel: per qparam cell min and max, per matrix max |w|. A warp reads one row
//      segment of a cell (coalesced) and reduces it; cells spanning several rows (block, tensor)
//      are combined with atomics on order-preserving integer images of the floats.
//   2. (MSE) mse_search_kernel: one thread per cell runs every shrink step in the CPU's element
//      order and records, as a bit per step, where the cell's error improved on its best so far;
//      mse_stop_kernel ORs the bits over each matrix and replays the CPU's patience rule.
//   3. qparams_kernel: per cell, the chosen min/max through cell_qparams (global scale for
//      tensor_group), written to the caller's QParamsCuda.
#include "quant/observer_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "quant/cell_grid.h"
#include "quant/quantizer_inline.h"

namespace dsv4::quant {
namespace {

// Order-preserving int image of a float (self-inverse): -0 < +0, NaN never stored.
__device__ __forceinline__ int32_t ordered(float x) {
  const int32_t i = __float_as_int(x);
  return i >= 0 ? i : i ^ 0x7fffffff;
}
__device__ __forceinline__ float from_ordered(int32_t i) { return __int_as_float(i >= 0 ? i : i ^ 0x7fffffff); }

// std::min / std::max as the CPU observer folds them: a NaN element never replaces the running value.
__device__ __forceinline__ float fold_min(float run, float x) { return x < run ? x : run; }
__device__ __forceinline__ float fold_max(float run, float x) { return run < x ? x : run; }

constexpr int kThreads = 256;

__global__ void init_ordered_kernel(int32_t* mn, int32_t* mx, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    mn[i] = ordered(INFINITY);
    mx[i] = ordered(-INFINITY);
  }
}

// blockIdx.y = matrix. mn/mx hold floats (one-row cells) or ordered ints (multi-row cells).
__global__ void minmax_kernel(const float* __restrict__ w, CellGrid g, bool multi_row, int32_t* mn, int32_t* mx,
                              uint32_t* amax_bits) {
  const int64_t b = blockIdx.y;
  const float* wb = w + b * g.rows * g.cols;
  const int64_t segs = g.rows * g.scale_cols;
  const int lane = threadIdx.x % 32;
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
  float amax = 0.0f;
  for (int64_t s = warp; s < segs; s += warps) {  // warp-uniform loop
    const int64_t r = s / g.scale_cols, sc = s % g.scale_cols;
    const int64_t c0 = sc * g.cell_w, c1 = min(g.cols, c0 + g.cell_w);
    const float* row = wb + r * g.cols;
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t c = c0 + lane; c < c1; c += 32) {
      const float x = row[c];
      lo = fold_min(lo, x);
      hi = fold_max(hi, x);
      amax = fold_max(amax, fabsf(x));
    }
    for (int o = 16; o > 0; o /= 2) {
      lo = fold_min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
      hi = fold_max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if (lane == 0) {
      const int64_t cell = b * g.cells() + (r / g.cell_h) * g.scale_cols + sc;
      if (multi_row) {
        atomicMin(mn + cell, ordered(lo));
        atomicMax(mx + cell, ordered(hi));
      } else {
        mn[cell] = __float_as_int(lo);
        mx[cell] = __float_as_int(hi);
      }
    }
  }
  for (int o = 16; o > 0; o /= 2) amax = fold_max(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if (lane == 0 && amax > 0.0f) atomicMax(amax_bits + b, __float_as_uint(amax));
}

__device__ __forceinline__ float cell_value(const int32_t* mn, int64_t i, bool multi_row) {
  return multi_row ? from_ordered(mn[i]) : __int_as_float(mn[i]);
}

struct MseParams {
  int steps = 0, grid = 1, words = 0, patience = 0;
  float expand = 1.0f;
  double norm = 2.4;
};

// p = 1 - i/grid, as observer_mse computes it.
__device__ __forceinline__ float shrink(const MseParams& m, int i) {
  return qi::sub_rn(1.0f, qi::div_rn(static_cast<float>(i), static_cast<float>(m.grid)));
}

// One thread per cell (all matrices): every step's error sum in the CPU's order (rows, then
// columns), improvement bits into mask[cell·words + i/32].
__global__ void mse_search_kernel(const float* __restrict__ w, CellGrid g, bool multi_row, CellArgs ca, MseParams m,
                                  const int32_t* mn, const int32_t* mx, int count, uint32_t* mask) {
  const int64_t n = count * g.cells();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / g.cells(), c = i % g.cells();
    const int64_t r0 = (c / g.scale_cols) * g.cell_h, r1 = min(g.rows, r0 + g.cell_h);
    const int64_t c0 = (c % g.scale_cols) * g.cell_w, c1 = min(g.cols, c0 + g.cell_w);
    const float* wb = w + b * g.rows * g.cols;
    const float min0 = qi::mul_rn(cell_value(mn, i, multi_row), m.expand);
    const float max0 = qi::mul_rn(cell_value(mx, i, multi_row), m.expand);
    uint32_t* bits = mask + i * m.words;
    for (int k = 0; k < m.words; ++k) bits[k] = 0;
    double best = INFINITY;
    for (int s = 0; s < m.steps; ++s) {
      const float p = shrink(m, s);
      const CellQParams q = cell_qparams(ca, qi::mul_rn(p, min0), qi::mul_rn(p, max0), 0.0f);
      double err = 0.0;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t col = c0; col < c1; ++col) {
          const float x = wb[r * g.cols + col];
          float d;
          quantize_value(ca, x, q.scale, q.zero_point, &d);
          err += pow(static_cast<double>(fabsf(qi::sub_rn(d, x))), m.norm);
        }
      }
      if (err < best) {
        best = err;
        bits[s / 32] |= 1u << (s % 32);
      }
    }
  }
}

// One block per matrix: OR of every cell's bits, then observer_mse's loop: stop after `patience`
// steps in which no cell improved. stop[b] = the last step evaluated.
__global__ void mse_stop_kernel(const uint32_t* mask, int64_t cells, MseParams m, int32_t* stop) {
  extern __shared__ uint32_t any[];
  const int64_t b = blockIdx.x;
  for (int k = threadIdx.x; k < m.words; k += blockDim.x) any[k] = 0;
  __syncthreads();
  for (int k = 0; k < m.words; ++k) {
    uint32_t v = 0;
    for (int64_t c = threadIdx.x; c < cells; c += blockDim.x) v |= mask[(b * cells + c) * m.words + k];
    v = __reduce_or_sync(0xffffffffu, v);
    if (threadIdx.x % 32 == 0 && v != 0) atomicOr(any + k, v);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int last = m.steps - 1, no_improve = 0;
    for (int s = 0; s < m.steps; ++s) {
      if ((any[s / 32] >> (s % 32)) & 1u) {
        no_improve = 0;
      } else if (++no_improve >= m.patience) {
        last = s;
        break;
      }
    }
    stop[b] = last;
  }
}

// Per cell: min/max (the MSE choice when mask != null), qparams, global scale.
__global__ void qparams_kernel(CellGrid g, bool multi_row, CellArgs ca, const int32_t* mn, const int32_t* mx,
                               const uint32_t* amax_bits, const float* amax_override, const uint32_t* mask,
                               const int32_t* stop, MseParams m, QParamsCuda out) {
  const int64_t b = blockIdx.y;
  float gs = 0.0f;
  if (ca.tensor_group) {
    const float own = __uint_as_float(amax_bits[b]);
    gs = global_scale_nvfp4(amax_override != nullptr && amax_override[b] > 0.0f ? amax_override[b] : own);
    if (blockIdx.x == 0 && threadIdx.x == 0) out.global_scale[b] = gs;
  }
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < g.cells();
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = b * g.cells() + c;
    float lo = cell_value(mn, i, multi_row), hi = cell_value(mx, i, multi_row);
    if (mask != nullptr) {
      lo = qi::mul_rn(lo, m.expand);
      hi = qi::mul_rn(hi, m.expand);
      int best = -1;
      for (int s = 0; s <= stop[b]; ++s) {
        if ((mask[i * m.words + s / 32] >> (s % 32)) & 1u) best = s;
      }
      if (best >= 0) {
        const float p = shrink(m, best);
        lo = qi::mul_rn(p, lo);
        hi = qi::mul_rn(p, hi);
      }
    }
    const CellQParams q = cell_qparams(ca, lo, hi, gs);
    out.scale[i] = q.scale;
    out.zero_point[i] = q.zero_point;
    if (out.scale_e8m0 != nullptr) out.scale_e8m0[i] = q.e8m0;
  }
}

MseParams mse_params(const QuantArgs& args) {
  MseParams m;
  m.steps = static_cast<int>(args.mse.maxshrink * static_cast<float>(args.mse.grid));
  m.steps = std::max(m.steps, 0);
  m.grid = args.mse.grid;
  m.words = std::max(1, (m.steps + 31) / 32);
  m.patience = args.mse.patience;
  m.expand = args.mse.expand;
  m.norm = static_cast<double>(args.mse.norm);
  return m;
}

}  // namespace

size_t observer_cuda_scratch_bytes(const QuantArgs& args, int count, int64_t rows, int64_t cols) {
  const CellGrid g = cell_grid(args, rows, cols);
  const size_t cells = static_cast<size_t>(count) * static_cast<size_t>(g.cells());
  const auto up = [](size_t b) { return (b + DeviceArena::kAlign - 1) / DeviceArena::kAlign * DeviceArena::kAlign; };
  size_t bytes = 2 * up(cells * sizeof(int32_t)) + up(static_cast<size_t>(count) * sizeof(uint32_t));
  if (args.observer == ObserverKind::kMse) {
    bytes += up(cells * static_cast<size_t>(mse_params(args).words) * sizeof(uint32_t)) +
             up(static_cast<size_t>(count) * sizeof(int32_t));
  }
  return bytes;
}

void observer_qparams_cuda(const QuantArgs& args, const float* w, int count, int64_t rows, int64_t cols,
                           const float* amax_override, const QParamsCuda& out, DeviceArena& arena,
                           CUstream_st* stream) {
  args.check();
  quant_args_check_shape(args, rows, cols);
  const std::string scheme = args.to_string();
  DSV4_CHECK_IN("quant", count >= 0, "%d matrices", count);
  DSV4_CHECK_IN("quant", !(args.observer == ObserverKind::kMse && args.strategy == Strategy::kTensor),
                "%s: the MSE observer with the tensor strategy is one serial search over the whole "
                "matrix; it runs on the CPU path (observer_qparams)", scheme.c_str());
  DSV4_CHECK_IN("quant", out.scale != nullptr && out.zero_point != nullptr, "%s: scale and zero_point outputs are required",
                scheme.c_str());
  DSV4_CHECK_IN("quant", args.scale_dtype != ScaleDType::kE8m0 || out.scale_e8m0 != nullptr,
                "%s: e8m0 scales need the scale_e8m0 output", scheme.c_str());
  DSV4_CHECK_IN("quant", args.strategy != Strategy::kTensorGroup || out.global_scale != nullptr,
                "%s: tensor_group needs the global_scale output", scheme.c_str());
  if (count == 0) return;
  const CellGrid g = cell_grid(args, rows, cols);
  const bool multi_row = g.cell_h > 1;
  const int64_t cells = count * g.cells();
  const CellArgs ca = cell_args(args);

  ArenaScope scope(arena);
  int32_t* mn = arena.take<int32_t>(static_cast<size_t>(cells), "observer minima");
  int32_t* mx = arena.take<int32_t>(static_cast<size_t>(cells), "observer maxima");
  uint32_t* amax_bits = arena.take<uint32_t>(static_cast<size_t>(count), "observer tensor amax");
  DSV4_CUDA_CHECK(cudaMemsetAsync(amax_bits, 0, static_cast<size_t>(count) * sizeof(uint32_t), stream));
  if (multi_row) {
    init_ordered_kernel<<<grid_blocks(cells, kThreads), kThreads, 0, stream>>>(mn, mx, cells);
    DSV4_CUDA_CHECK_LAUNCH();
  }
  {
    const int64_t warps = rows * g.scale_cols;  // one warp per row segment, at most 64 warps' worth of blocks
    const dim3 grid(grid_blocks(warps * 32, kThreads, 512), static_cast<unsigned>(count));
    minmax_kernel<<<grid, kThreads, 0, stream>>>(w, g, multi_row, mn, mx, amax_bits);
    DSV4_CUDA_CHECK_LAUNCH();
  }
  MseParams m;
  uint32_t* mask = nullptr;
  int32_t* stop = nullptr;
  if (args.observer == ObserverKind::kMse) {
    m = mse_params(args);
    mask = arena.take<uint32_t>(static_cast<size_t>(cells * m.words), "MSE improvement bits");
    stop = arena.take<int32_t>(static_cast<size_t>(count), "MSE stop step");
    mse_search_kernel<<<grid_blocks(cells, 128), 128, 0, stream>>>(w, g, multi_row, ca, m, mn, mx, count, mask);
    DSV4_CUDA_CHECK_LAUNCH();
    mse_stop_kernel<<<count, 1024, static_cast<size_t>(m.words) * sizeof(uint32_t), stream>>>(mask, g.cells(), m, stop);
    DSV4_CUDA_CHECK_LAUNCH();
  }
  const dim3 grid(grid_blocks(g.cells(), kThreads, 4096), static_cast<unsigned>(count));
  qparams_kernel<<<grid, kThreads, 0, stream>>>(g, multi_row, ca, mn, mx, amax_bits, amax_override, mask, stop, m, out);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::quant

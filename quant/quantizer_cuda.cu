// quantizer_cuda.cu: batched fake quantization on the GPU (see quantizer_cuda.h).
#include "quant/quantizer_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/codec_inline.h"
#include "common/device_arena.h"
#include "quant/cell_grid.h"
#include "quant/quantizer_inline.h"

namespace dsv4::quant {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;  // grid cap of the grid-stride kernels

// One block per row (of all matrices' rows), threads across its columns, so the row's matrix,
// cell row and global scale are computed once and the column's cell is a shift when the cell
// width is a power of two. kVec consecutive columns per thread (16-byte loads and stores) when
// they always share a cell. The effective scale is scale / global_scale for tensor_group
// (qparams_effective_scale).
template <int kVec>
__global__ void quantize_kernel(const float* __restrict__ w, int64_t total_rows, CellGrid g, int cell_w_shift,
                                CellArgs ca, QParamsCuda qp, int32_t* __restrict__ codes,
                                float* __restrict__ dequant) {
  const int cols = static_cast<int>(g.cols), cell_w = static_cast<int>(g.cell_w);
  for (int64_t row = blockIdx.x; row < total_rows; row += gridDim.x) {
    const int64_t b = row / g.rows, r = row % g.rows;
    const float* qs = qp.scale + b * g.cells() + (r / g.cell_h) * g.scale_cols;
    const float* qz = qp.zero_point + b * g.cells() + (r / g.cell_h) * g.scale_cols;
    const float gs = ca.tensor_group ? qp.global_scale[b] : 1.0f;
    for (int c = threadIdx.x * kVec; c < cols; c += blockDim.x * kVec) {
      const int cell = cell_w_shift >= 0 ? c >> cell_w_shift : c / cell_w;
      float s = qs[cell];
      if (ca.tensor_group) s = qi::div_rn(s, gs);
      const float zp = qz[cell];
      const int64_t i = row * cols + c;
      float x[kVec], d[kVec];
      int32_t q[kVec];
      if constexpr (kVec == 4) {
        const float4 v = *reinterpret_cast<const float4*>(w + i);
        x[0] = v.x; x[1] = v.y; x[2] = v.z; x[3] = v.w;
      } else {
        x[0] = w[i];
      }
#pragma unroll
      for (int k = 0; k < kVec; ++k) q[k] = quantize_value(ca, x[k], s, zp, &d[k]);
      if constexpr (kVec == 4) {
        *reinterpret_cast<int4*>(codes + i) = make_int4(q[0], q[1], q[2], q[3]);
        if (dequant != nullptr) *reinterpret_cast<float4*>(dequant + i) = make_float4(d[0], d[1], d[2], d[3]);
      } else {
        codes[i] = q[0];
        if (dequant != nullptr) dequant[i] = d[0];
      }
    }
  }
}

// Source e8m0 scales as the qparams: scale = 2^e, zero point 0.
__global__ void e8m0_qparams_kernel(const uint8_t* __restrict__ src, int64_t n, QParamsCuda qp) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    qp.scale_e8m0[i] = src[i];
    qp.scale[i] = codec::e8m0_decode(src[i]);
    qp.zero_point[i] = 0.0f;
  }
}

}  // namespace

void quantizer_quantize_cuda(const QuantArgs& args, const float* w, int count, int64_t rows, int64_t cols,
                             const QParamsCuda& qp, int32_t* codes, float* dequant, CUstream_st* stream,
                             QuotientArith arith) {
  args.check();
  quant_args_check_shape(args, rows, cols);
  DSV4_CHECK_IN("quant", count >= 0, "%d matrices", count);
  DSV4_CHECK_IN("quant", codes != nullptr && qp.scale != nullptr && qp.zero_point != nullptr,
                "%s: codes, scale and zero_point are required", args.to_string().c_str());
  DSV4_CHECK_IN("quant", args.strategy != Strategy::kTensorGroup || qp.global_scale != nullptr,
                "%s: tensor_group needs the global scales", args.to_string().c_str());
  DSV4_CHECK_IN("quant", cols < (int64_t{1} << 30), "%lld columns: the quantize kernel indexes columns in int32",
                static_cast<long long>(cols));
  const int64_t total_rows = count * rows;
  if (total_rows * cols == 0) return;
  const CellGrid g = cell_grid(args, rows, cols);
  const int cell_w_shift = (g.cell_w & (g.cell_w - 1)) == 0 ? __builtin_ctzll(static_cast<uint64_t>(g.cell_w)) : -1;
  // 16-byte accesses need aligned rows and cells that never split a group of 4 columns.
  const bool aligned = reinterpret_cast<uintptr_t>(w) % 16 == 0 && reinterpret_cast<uintptr_t>(codes) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(dequant) % 16 == 0;
  const int blocks = static_cast<int>(std::min<int64_t>(total_rows, 1 << 20));
  if (aligned && cols % 4 == 0 && g.cell_w % 4 == 0) {
    quantize_kernel<4><<<blocks, kThreads, 0, stream>>>(w, total_rows, g, cell_w_shift, cell_args(args, arith), qp, codes, dequant);
  } else {
    quantize_kernel<1><<<blocks, kThreads, 0, stream>>>(w, total_rows, g, cell_w_shift, cell_args(args, arith), qp, codes, dequant);
  }
  DSV4_CUDA_CHECK_LAUNCH();
}

void quantizer_rtn_cuda(const QuantArgs& args, const float* w, int count, int64_t rows, int64_t cols,
                        const float* amax_override, const QParamsCuda& qp, int32_t* codes, float* dequant,
                        DeviceArena& arena, CUstream_st* stream) {
  observer_qparams_cuda(args, w, count, rows, cols, amax_override, qp, arena, stream);
  quantizer_quantize_cuda(args, w, count, rows, cols, qp, codes, dequant, stream);
}

void quantizer_fp8_block_reencode_cuda(const QuantArgs& args, const float* w, const uint8_t* scales_e8m0, int count,
                                       int64_t rows, int64_t cols, const QParamsCuda& qp, int32_t* codes,
                                       float* dequant, DeviceArena& arena, CUstream_st* stream) {
  args.check();
  DSV4_CHECK_IN("quant",
                args.type == QuantType::kFloat && args.num_bits == 8 && args.strategy == Strategy::kBlock &&
                    args.block_structure[0] == 128 && args.block_structure[1] == 128,
                "args %s: FP8 block re-encode needs float8 block [128,128]", args.to_string().c_str());
  if (args.scale_dtype != ScaleDType::kE8m0) {
    quantizer_rtn_cuda(args, w, count, rows, cols, nullptr, qp, codes, dequant, arena, stream);
    return;
  }
  DSV4_CHECK_IN("quant", scales_e8m0 != nullptr && qp.scale_e8m0 != nullptr,
                "args %s: e8m0 re-encode needs the source scales and the scale_e8m0 output", args.to_string().c_str());
  const int64_t n = count * ((rows + 127) / 128) * ((cols + 127) / 128);
  if (n > 0) {
    e8m0_qparams_kernel<<<grid_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(scales_e8m0, n, qp);
    DSV4_CUDA_CHECK_LAUNCH();
  }
  quantizer_quantize_cuda(args, w, count, rows, cols, qp, codes, dequant, stream);
}

}  // namespace dsv4::quant

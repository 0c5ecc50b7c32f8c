// observer_cuda.h: the weight observers of observer.h on the GPU (CUDA builds; issue 8), for
// `count` matrices of one shape at once: min-max and MSE grid search, every strategy (tensor,
// channel, group, block, tensor_group with the NVFP4 global scale), every code format and scale
// dtype, through the same per-cell arithmetic as the CPU (quant/quantizer_inline.h).
//
//   QParamsCuda qp{d_scale, d_zero_point, d_e8m0, d_global};   // [count, scale_rows, scale_cols]
//   observer_qparams_cuda(args, d_w, count, rows, cols, nullptr, qp, arena, stream);
//
// Results: min-max qparams are bitwise observer_qparams' (min and max are exact in any order).
// The MSE search sums |deq - w|^norm per cell in the CPU's element order in fp64, but CUDA's pow
// is not glibc's (both within 2 ulp), so a cell whose two best shrink factors tie to the last bits
// can pick the other one; tests/quant/test_quantizer_cuda.cu counts those cells. The search's
// early stop (`patience` steps without any cell of the matrix improving) is decided per matrix,
// as on the CPU. The MSE observer with the tensor strategy (one cell of rows·cols elements, summed
// in order) is refused: it would run on a single thread.
// Only enqueues on `stream`; scratch comes from `arena` (observer_cuda_scratch_bytes).
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/quant_args.h"

struct CUstream_st;

namespace dsv4 {
class DeviceArena;
}

namespace dsv4::quant {

// Device qparams of `count` matrices, each on quantizer.h's QParams grid, row-major.
struct QParamsCuda {
  float* scale = nullptr;          // [count, scale_rows, scale_cols] stored scale values
  float* zero_point = nullptr;     // same grid; 0 when symmetric
  uint8_t* scale_e8m0 = nullptr;   // same grid, e8m0 bytes: required when the scale dtype is e8m0
  float* global_scale = nullptr;   // [count]: required for tensor_group, else unused
};

// Scratch bytes observer_qparams_cuda takes from the arena (released before it returns).
size_t observer_cuda_scratch_bytes(const QuantArgs& args, int count, int64_t rows, int64_t cols);

// w: [count, rows, cols] fp32. amax_override: null, or [count] device values replacing each
// matrix's max |w| for the NVFP4 global scale (fused partners share one, observer.h). Throws
// (naming the scheme or the missing output) before launching anything.
void observer_qparams_cuda(const QuantArgs& args, const float* w, int count, int64_t rows, int64_t cols,
                           const float* amax_override, const QParamsCuda& out, DeviceArena& arena,
                           CUstream_st* stream);

}  // namespace dsv4::quant

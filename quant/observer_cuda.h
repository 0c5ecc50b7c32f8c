// observer_cuda.h: the min-max observer of observer.h on the GPU for integer schemes (CUDA builds;
// issue 8): per qparam cell (row × group, or row for channel) min and max, then
// qparams_calculate's integer arithmetic (model-dtype rounding, zero scale -> eps, asymmetric
// zero point clamped and rounded half to even), for `count` matrices at once. Bitwise equal to
// observer_qparams for these schemes (tests/quant/test_gptq_cuda.cu); other schemes (MSE
// observer, FP4/FP8 codes, e4m3/e8m0 scales, tensor strategies) stay on the CPU path.
//
//   observer_minmax_int_cuda(args, d_w, count, rows, cols, d_scale, d_zero_point, stream);
//   // d_scale/d_zero_point: [count, rows, cols / group] (group) or [count, rows, 1] (channel)
#pragma once

#include <cstdint>

#include "quant/quant_args.h"

struct CUstream_st;

namespace dsv4::quant {

// Throws (naming the scheme) for the schemes the GPU path does not cover.
void observer_minmax_int_cuda(const QuantArgs& args, const float* w, int count, int64_t rows, int64_t cols,
                              float* scale, float* zero_point, CUstream_st* stream);

}  // namespace dsv4::quant

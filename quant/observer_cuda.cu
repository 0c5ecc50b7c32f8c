// observer_cuda.cu: integer min-max qparams on the GPU (see observer_cuda.h); the arithmetic of
// quantizer.cpp's qparams_calculate for integer types, step for step.
#include "quant/observer_cuda.h"

#include <cuda_runtime.h>

#include <cfloat>

#include "common/check.h"
#include "common/codec_inline.h"

namespace dsv4::quant {
namespace {

struct IntQParamArgs {
  float qmin, qmax;
  bool symmetric, bf16_arith;  // scale dtype "model": every step rounded to bf16
  float eps;                   // torch.finfo(scale dtype).eps, replacing a zero scale
};

__device__ __forceinline__ float arith(const IntQParamArgs& a, float x) {
  return a.bf16_arith ? codec::bf16_decode(codec::bf16_encode(x)) : x;
}

// One thread per cell: cells = count·rows·groups, each `group` consecutive elements of a row.
__global__ void minmax_int_kernel(const float* __restrict__ w, int64_t cells, int64_t group, IntQParamArgs a,
                                  float* scale, float* zero_point) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < cells;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float* x = w + c * group;
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int64_t i = 0; i < group; ++i) {
      lo = fminf(lo, x[i]);
      hi = fmaxf(hi, x[i]);
    }
    lo = fminf(lo, 0.0f);  // zero must be representable
    hi = fmaxf(hi, 0.0f);
    const float range = a.qmax - a.qmin;
    const float amax = fmaxf(fabsf(lo), fabsf(hi));
    float s = a.symmetric ? arith(a, amax / (range / 2.0f)) : arith(a, arith(a, hi - lo) / range);
    if (s == 0.0f) s = a.eps;
    float zp = 0.0f;
    if (!a.symmetric) {
      zp = arith(a, a.qmin - arith(a, lo / s));
      zp = rintf(fminf(fmaxf(zp, a.qmin), a.qmax));
    }
    scale[c] = s;
    zero_point[c] = zp;
  }
}

}  // namespace

void observer_minmax_int_cuda(const QuantArgs& args, const float* w, int count, int64_t rows, int64_t cols,
                              float* scale, float* zero_point, CUstream_st* stream) {
  args.check();
  quant_args_check_shape(args, rows, cols);
  const bool supported = args.type == QuantType::kInt && args.observer == ObserverKind::kMinMax &&
                         (args.scale_dtype == ScaleDType::kModel || args.scale_dtype == ScaleDType::kF32) &&
                         (args.strategy == Strategy::kGroup || args.strategy == Strategy::kChannel);
  DSV4_CHECK_IN("quant", supported, "the GPU observer covers integer min-max group/channel schemes with model or fp32 "
                "scales; %s runs on the CPU path", args.to_string().c_str());
  DSV4_CHECK_IN("quant", count >= 0, "%d matrices", count);
  const int64_t group = args.strategy == Strategy::kGroup ? args.group_size : cols;
  const int64_t cells = static_cast<int64_t>(count) * rows * (cols / group);
  if (cells == 0) return;
  const IntQParamArgs a{args.qmin(), args.qmax(), args.symmetric, args.scale_dtype == ScaleDType::kModel,
                        args.scale_dtype == ScaleDType::kModel ? 0.0078125f : FLT_EPSILON};
  const int blocks = static_cast<int>(std::min<int64_t>((cells + 255) / 256, 65535));
  minmax_int_kernel<<<blocks, 256, 0, stream>>>(w, cells, group, a, scale, zero_point);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::quant

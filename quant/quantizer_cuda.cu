// quantizer_cuda.cu: batched fake quantization on the GPU (see quantizer_cuda.h).
#include "quant/quantizer_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "common/check.h"
#include "common/codec_inline.h"
#include "common/device_arena.h"
#include "quant/cell_grid.h"
#include "quant/quantizer_inline.h"

namespace dsv4::quant {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 1 << 20)); }

// One thread per element; the cell's effective scale is scale / global_scale for tensor_group
// (qparams_effective_scale).
__global__ void quantize_kernel(const float* __restrict__ w, int64_t n, CellGrid g, CellArgs ca, QParamsCuda qp,
                                int32_t* __restrict__ codes, float* __restrict__ dequant) {
  const int64_t per = g.rows * g.cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / per, rc = i % per, r = rc / g.cols, c = rc % g.cols;
    const int64_t cell = b * g.cells() + (r / g.cell_h) * g.scale_cols + c / g.cell_w;
    float s = qp.scale[cell];
    if (ca.tensor_group) s = qi::div_rn(s, qp.global_scale[b]);
    float d;
    codes[i] = quantize_value(ca, w[i], s, qp.zero_point[cell], &d);
    if (dequant != nullptr) dequant[i] = d;
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
                             const QParamsCuda& qp, int32_t* codes, float* dequant, CUstream_st* stream) {
  args.check();
  quant_args_check_shape(args, rows, cols);
  DSV4_CHECK_IN("quant", count >= 0, "%d matrices", count);
  DSV4_CHECK_IN("quant", codes != nullptr && qp.scale != nullptr && qp.zero_point != nullptr,
                "%s: codes, scale and zero_point are required", args.to_string().c_str());
  DSV4_CHECK_IN("quant", args.strategy != Strategy::kTensorGroup || qp.global_scale != nullptr,
                "%s: tensor_group needs the global scales", args.to_string().c_str());
  const int64_t n = count * rows * cols;
  if (n == 0) return;
  quantize_kernel<<<blocks_for(n), kThreads, 0, stream>>>(w, n, cell_grid(args, rows, cols), cell_args(args), qp,
                                                          codes, dequant);
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
    e8m0_qparams_kernel<<<blocks_for(n), kThreads, 0, stream>>>(scales_e8m0, n, qp);
    DSV4_CUDA_CHECK_LAUNCH();
  }
  quantizer_quantize_cuda(args, w, count, rows, cols, qp, codes, dequant, stream);
}

}  // namespace dsv4::quant

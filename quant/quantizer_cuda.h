// quantizer_cuda.h: data-free rounding on the GPU (CUDA builds; issue 8), batched over `count`
// matrices of one shape, for every scheme quantizer.h covers: INT group/channel/tensor/block
// (symmetric or not, model/fp32 scales), FP8 (tensor, channel, block; bf16 or e8m0 scales),
// NVFP4 (tensor_group with the global scale), MXFP4 (e8m0 group 32), with min-max or MSE qparams.
// Codes and dequantized values are quantizer_rtn's bit for bit for the same qparams (same
// per-value code, quant/quantizer_inline.h); qparams come from observer_cuda.h.
//
//   QParamsCuda qp{d_scale, d_zp, d_e8m0, d_gs};
//   quantizer_rtn_cuda(args, d_w, count, rows, cols, nullptr, qp, d_codes, d_deq, arena, stream);
//
// The release's MXFP4 -> INT4 g32 conversion (quantizer_mxfp4_to_int4) is decode
// (model/weight_decode_cuda.h) then quantizer_rtn_cuda with int4 g32 args, minmax or MSE. FP8
// block re-encoding keeps the source e8m0 scales through quantizer_fp8_block_reencode_cuda.
// Everything only enqueues on `stream`. Tests: tests/quant/test_quantizer_cuda.cu.
#pragma once

#include <cstdint>

#include "quant/observer_cuda.h"
#include "quant/quant_args.h"
#include "quant/quantizer_inline.h"  // QuotientArith

struct CUstream_st;

namespace dsv4::quant {

// codes [count, rows, cols] int32 (signed int code, e4m3 byte or e2m1 nibble) and, when non-null,
// dequant [count, rows, cols] fp32, from w [count, rows, cols] and qparams `qp`.
// `arith` as quantizer_rtn's (kPeerRtnArith for the peer's RTN baseline).
void quantizer_quantize_cuda(const QuantArgs& args, const float* w, int count, int64_t rows, int64_t cols,
                             const QParamsCuda& qp, int32_t* codes, float* dequant, CUstream_st* stream,
                             QuotientArith arith = QuotientArith::kFp32);

// observer_qparams_cuda into `qp`, then quantizer_quantize_cuda.
void quantizer_rtn_cuda(const QuantArgs& args, const float* w, int count, int64_t rows, int64_t cols,
                        const float* amax_override, const QParamsCuda& qp, int32_t* codes, float* dequant,
                        DeviceArena& arena, CUstream_st* stream);

// quantizer_fp8_block_reencode on the GPU. w: the decoded release weights [count, rows, cols];
// scales_e8m0: their [count, ceil(rows/128), ceil(cols/128)] e8m0 bytes. With e8m0 args the
// source scales are kept (codes come back bit-identical to the release's); otherwise the
// observer computes new ones.
void quantizer_fp8_block_reencode_cuda(const QuantArgs& args, const float* w, const uint8_t* scales_e8m0, int count,
                                       int64_t rows, int64_t cols, const QParamsCuda& qp, int32_t* codes,
                                       float* dequant, DeviceArena& arena, CUstream_st* stream);

}  // namespace dsv4::quant

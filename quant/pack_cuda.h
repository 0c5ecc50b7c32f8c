// pack_cuda.h: compressed_module_encode (compressed_module.h) on the GPU (CUDA builds; issue 8):
// codes and device qparams of `count` matrices of one shape -> the compressed-tensors tensors of
// every module, byte for byte what the CPU encoder writes (int32 bit streams for pack-quantized,
// zero points packed along the output dim, e2m1 pairs, e4m3/int8 bytes, scales in bf16, fp16,
// fp32, e4m3 or e8m0, weight_shape, the NVFP4 global scale).
//
//   auto layout = compressed_module_layout(format, args, rows, cols, false);   // names, shapes
//   std::vector<void*> out = {...};   // one device buffer per layout entry, `count` copies each
//   compressed_module_encode_cuda(format, args, qp, d_codes, count, rows, cols, out, arena, stream);
//
// Codes outside their format's range (int codes outside [-2^(b-1), 2^(b-1)-1], e2m1 codes above
// 15) are errors naming the matrix, row, column and value, as int32_pack's are: the call waits for
// the stream once at the end to read that verdict back. act-order group (weight_g_idx) is not a
// GPU layout yet. Tests: tests/quant/test_pack_cuda.cu (bytes equal to the CPU encoder's, every
// format, and the range errors); tests/quant/test_quantizer_cuda.cu (after the GPU quantizer).
#pragma once

#include <cstdint>
#include <span>

#include "quant/observer_cuda.h"
#include "quant/pack.h"
#include "quant/quant_args.h"

struct CUstream_st;

namespace dsv4::quant {

// outputs[i] receives `count` consecutive copies of layout tensor i (each of its shape), for the
// layout compressed_module_layout(format, args, rows, cols, /*with_g_idx=*/false).
void compressed_module_encode_cuda(PackFormat format, const QuantArgs& args, const QParamsCuda& qp,
                                   const int32_t* codes, int count, int64_t rows, int64_t cols,
                                   std::span<void* const> outputs, DeviceArena& arena, CUstream_st* stream);

}  // namespace dsv4::quant

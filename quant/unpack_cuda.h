// unpack_cuda.h: the inverse of compressed_module_encode_cuda (pack_cuda.h): one module's
// compressed-tensors tensors, already on the device, decoded there into its dequantized weights in
// bf16, the values a GPU forward computes with (CUDA builds; issue 10). Every element is
// dequant_value (quant/quantizer_inline.h) of its code and cell, as the CPU reference decoder
// compressed_module_decode (quant/unpack.h) computes it from the stored tensors (a float
// weight_scale multiplies in its stored dtype), then rounded to bf16: bit for bit what put_weight
// of the CPU decode uploads. It is how a rank puts the modules other ranks solved into its block
// for pass B, and a resume's replay puts committed ones, without an fp32 copy on the host.
//
//   auto in_layout = compressed_module_in_layout(format, args, rows, cols, tensors);  // host check
//   std::vector<const void*> inputs = {...};  // device copies of *in_layout, in its order
//   compressed_module_decode_cuda(format, args, inputs, rows, cols, d_bf16, stream);
//
// The layout is compressed_module_layout(format, args, rows, cols, /*with_g_idx=*/false): act-order
// group (weight_g_idx) is not a GPU layout, as in the encoder. Padding bits are not checked (the
// CPU decoder checks them). Only enqueues on `stream`.
// Tests: tests/quant/test_unpack_cuda.cu (every format, bitwise compressed_module_decode in bf16);
// tests/quant/test_quantizer_cuda.cu (after the GPU encoder, against the CPU dequant).
#pragma once

#include <cstdint>
#include <span>

#include "quant/pack.h"
#include "quant/quant_args.h"

struct CUstream_st;

namespace dsv4::quant {

// inputs[i]: the device bytes of layout tensor i; out: [rows, cols] bf16 bits.
void compressed_module_decode_cuda(PackFormat format, const QuantArgs& args, std::span<const void* const> inputs,
                                   int64_t rows, int64_t cols, uint16_t* out, CUstream_st* stream);

}  // namespace dsv4::quant

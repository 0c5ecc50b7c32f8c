// weight_decode_cuda.h: the release-format decoders of weight_decode.h on the GPU (CUDA builds;
// issue 8). Same math, same codecs (common/codec_inline.h), so the fp32 results are bitwise the
// CPU reference's; the bf16 outputs are bf16_encode of them (exact: e4m3/e2m1 codes times a
// power of two fit bf16 unless the product leaves its range).
//
//   weight_decode_fp8_block_cuda(d_codes, d_scales, DType::kF8E8M0, out, in, 128, d_w, stream);
//   weight_decode_mxfp4_cuda(d_packed, d_scales, DType::kF8E8M0, out, in, d_w_bf16, stream);
//
// All pointers are device pointers; the call only enqueues on `stream` (no synchronisation).
// One pass over the bytes: each thread turns 8 codes (8 FP8 bytes, 4 packed FP4 bytes) into 8
// outputs with 16-byte stores, so warps read and write contiguous memory; FP8 shapes whose
// columns are not a multiple of 8 take a scalar kernel. Tests: tests/model/test_weight_decode_cuda.cu; bandwidth:
// bench/decode_bandwidth.cu.
#pragma once

#include <cstdint>

#include "common/dtype.h"

struct CUstream_st;

namespace dsv4::model {

using DeviceStream = CUstream_st*;  // cudaStream_t without the CUDA headers

// codes [rows, cols] e4m3; scales [ceil(rows/block), ceil(cols/block)] e8m0 bytes or f32.
// Output fp32 (out_f32) or bf16 bits (out_bf16): exactly one non-null.
void weight_decode_fp8_block_cuda(const uint8_t* codes, const void* scales, DType scale_dtype, int64_t rows,
                                  int64_t cols, int64_t block, float* out_f32, uint16_t* out_bf16,
                                  DeviceStream stream);

// packed [rows, cols/2] (low nibble = even column); scales [rows, cols/32]. cols % 32 == 0.
void weight_decode_mxfp4_cuda(const uint8_t* packed, const void* scales, DType scale_dtype, int64_t rows,
                              int64_t cols, float* out_f32, uint16_t* out_bf16, DeviceStream stream);

}  // namespace dsv4::model

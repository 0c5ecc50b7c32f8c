// weight_decode_cuda.cu: FP8 block and MXFP4 decode kernels (see weight_decode_cuda.h).
#include "model/weight_decode_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/codec_inline.h"

namespace dsv4::model {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535 * 16;  // grid cap of the grid-stride kernels

template <typename Scale>
__device__ __forceinline__ float scale_value(const Scale* s, int64_t i);
template <>
__device__ __forceinline__ float scale_value<uint8_t>(const uint8_t* s, int64_t i) {
  return codec::e8m0_decode(s[i]);
}
template <>
__device__ __forceinline__ float scale_value<float>(const float* s, int64_t i) {
  return s[i];
}

// Coalescing: each thread decodes 8 values (8 FP8 bytes, or 4 packed FP4 bytes), so a warp reads
// contiguous codes and writes 1 KiB (fp32, two 16-byte stores per thread) or 512 B (bf16, one)
// of contiguous output. Measured on H100 (bench/decode_bandwidth.cu), 8 values per thread beat
// 4 (bf16 stores too narrow) and 16/32 (strided stores).
__device__ __forceinline__ void store8(const float (&v)[8], float* out_f32, uint16_t* out_bf16, int64_t at) {
  if (out_f32) {
    float4* o = reinterpret_cast<float4*>(out_f32 + at);
    o[0] = make_float4(v[0], v[1], v[2], v[3]);
    o[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else {
    // The hardware pair conversion (cvt.rn.bf16x2.f32) rounds to nearest even like
    // codec::bf16_encode, and is one instruction per two values instead of an integer sequence
    // per value (H100, bench/decode_bandwidth.cu: fp8->bf16 60.0% -> 72.3% of copy bandwidth,
    // mxfp4->bf16 66.5% -> 92.0%). They differ only
    // in NaN payloads (the hardware writes the canonical NaN).
    uint32_t w[4];
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const __nv_bfloat162 pair = __floats2bfloat162_rn(v[2 * p], v[2 * p + 1]);
      w[p] = *reinterpret_cast<const uint32_t*>(&pair);
    }
    *reinterpret_cast<uint4*>(out_bf16 + at) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// One thread per 8 codes of a row (cols % 8 == 0 and block % 8 == 0: never straddling a row or
// a scale block).
template <typename Scale>
__global__ void fp8_block_vec_kernel(const uint8_t* __restrict__ codes, const Scale* __restrict__ scales, int64_t rows,
                                     int64_t cols, int64_t block, int64_t block_cols, float* out_f32,
                                     uint16_t* out_bf16) {
  const int64_t chunks = rows * cols / 8;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < chunks;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t at = c * 8, i = at / cols, j = at % cols;
    const float s = scale_value(scales, (i / block) * block_cols + j / block);
    const uint2 q = reinterpret_cast<const uint2*>(codes)[c];
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = codec::e4m3_decode(static_cast<uint8_t>((k < 4 ? q.x : q.y) >> (8 * (k % 4)))) * s;
    store8(v, out_f32, out_bf16, at);
  }
}

template <typename Scale>
__global__ void fp8_block_scalar_kernel(const uint8_t* __restrict__ codes, const Scale* __restrict__ scales,
                                        int64_t rows, int64_t cols, int64_t block, int64_t block_cols, float* out_f32,
                                        uint16_t* out_bf16) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < rows * cols;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = x / cols, j = x % cols;
    const float v = codec::e4m3_decode(codes[x]) * scale_value(scales, (i / block) * block_cols + j / block);
    if (out_f32) {
      out_f32[x] = v;
    } else {
      out_bf16[x] = codec::bf16_encode(v);
    }
  }
}

// One thread per 4 packed bytes (8 values; 4 threads share an MX group's scale).
template <typename Scale>
__global__ void mxfp4_kernel(const uint8_t* __restrict__ packed, const Scale* __restrict__ scales, int64_t words,
                             float* out_f32, uint16_t* out_bf16) {
  for (int64_t w = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; w < words;
       w += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float s = scale_value(scales, w / 4);
    const uint32_t q = reinterpret_cast<const uint32_t*>(packed)[w];
    float v[8];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint8_t byte = static_cast<uint8_t>(q >> (8 * k));
      v[2 * k] = codec::e2m1_decode(byte & 0x0f) * s;
      v[2 * k + 1] = codec::e2m1_decode(byte >> 4) * s;
    }
    store8(v, out_f32, out_bf16, w * 8);
  }
}

void check_outputs(const float* f32, const uint16_t* bf16, const char* what) {
  DSV4_CHECK_IN("decode", (f32 == nullptr) != (bf16 == nullptr), "%s: exactly one of the fp32 and bf16 outputs", what);
  const uintptr_t p = f32 ? reinterpret_cast<uintptr_t>(f32) : reinterpret_cast<uintptr_t>(bf16);
  DSV4_CHECK_IN("decode", p % 16 == 0, "%s: output not 16-byte aligned", what);  // float4 / uint4 stores
}

}  // namespace

void weight_decode_fp8_block_cuda(const uint8_t* codes, const void* scales, DType scale_dtype, int64_t rows,
                                  int64_t cols, int64_t block, float* out_f32, uint16_t* out_bf16,
                                  DeviceStream stream) {
  DSV4_CHECK_IN("decode", rows > 0 && cols > 0 && block > 0, "bad FP8 shape [%lld, %lld] block %lld",
                static_cast<long long>(rows), static_cast<long long>(cols), static_cast<long long>(block));
  DSV4_CHECK_IN("decode", scale_dtype == DType::kF8E8M0 || scale_dtype == DType::kF32, "FP8 scales must be E8M0 or F32");
  check_outputs(out_f32, out_bf16, "FP8 block decode");
  const int64_t block_cols = (cols + block - 1) / block;
  const bool vec = cols % 8 == 0 && block % 8 == 0 && reinterpret_cast<uintptr_t>(codes) % 8 == 0;
  const int64_t items = vec ? rows * cols / 8 : rows * cols;
  const cudaStream_t s = stream;
  if (scale_dtype == DType::kF8E8M0) {
    const auto* sc = static_cast<const uint8_t*>(scales);
    if (vec) {
      fp8_block_vec_kernel<<<grid_blocks(items, kThreads, kMaxBlocks), kThreads, 0, s>>>(codes, sc, rows, cols, block, block_cols, out_f32, out_bf16);
    } else {
      fp8_block_scalar_kernel<<<grid_blocks(items, kThreads, kMaxBlocks), kThreads, 0, s>>>(codes, sc, rows, cols, block, block_cols, out_f32, out_bf16);
    }
  } else {
    const auto* sc = static_cast<const float*>(scales);
    if (vec) {
      fp8_block_vec_kernel<<<grid_blocks(items, kThreads, kMaxBlocks), kThreads, 0, s>>>(codes, sc, rows, cols, block, block_cols, out_f32, out_bf16);
    } else {
      fp8_block_scalar_kernel<<<grid_blocks(items, kThreads, kMaxBlocks), kThreads, 0, s>>>(codes, sc, rows, cols, block, block_cols, out_f32, out_bf16);
    }
  }
  DSV4_CUDA_CHECK_LAUNCH();
}

void weight_decode_mxfp4_cuda(const uint8_t* packed, const void* scales, DType scale_dtype, int64_t rows, int64_t cols,
                              float* out_f32, uint16_t* out_bf16, DeviceStream stream) {
  DSV4_CHECK_IN("decode", rows > 0 && cols > 0 && cols % 32 == 0, "bad MXFP4 shape [%lld, %lld] (columns must be a "
                "multiple of 32)", static_cast<long long>(rows), static_cast<long long>(cols));
  DSV4_CHECK_IN("decode", scale_dtype == DType::kF8E8M0 || scale_dtype == DType::kF32, "MXFP4 scales must be E8M0 or F32");
  DSV4_CHECK_IN("decode", reinterpret_cast<uintptr_t>(packed) % 16 == 0, "MXFP4 codes not 16-byte aligned");
  check_outputs(out_f32, out_bf16, "MXFP4 decode");
  const int64_t words = rows * cols / 8;
  const cudaStream_t s = stream;
  if (scale_dtype == DType::kF8E8M0) {
    mxfp4_kernel<<<grid_blocks(words, kThreads, kMaxBlocks), kThreads, 0, s>>>(packed, static_cast<const uint8_t*>(scales), words, out_f32, out_bf16);
  } else {
    mxfp4_kernel<<<grid_blocks(words, kThreads, kMaxBlocks), kThreads, 0, s>>>(packed, static_cast<const float*>(scales), words, out_f32, out_bf16);
  }
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::model

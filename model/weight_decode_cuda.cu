// weight_decode_cuda.cu: FP8 block and MXFP4 decode kernels (see weight_decode_cuda.h).
#include "model/weight_decode_cuda.h"

#include <cuda_runtime.h>

#include "common/check.h"
#include "common/codec_inline.h"

namespace dsv4::model {
namespace {

constexpr int kThreads = 256;

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

// Stores n (multiple of 8) consecutive values; `at` is 16-byte aligned for fp32 (n·4 bytes) and
// bf16 (n·2 bytes) because the element index is a multiple of 16.
template <int N>
__device__ __forceinline__ void store(const float (&v)[N], float* out_f32, uint16_t* out_bf16, int64_t at) {
  if (out_f32) {
    float4* o = reinterpret_cast<float4*>(out_f32 + at);
#pragma unroll
    for (int k = 0; k < N / 4; ++k) o[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
  } else {
    uint4* o = reinterpret_cast<uint4*>(out_bf16 + at);
#pragma unroll
    for (int k = 0; k < N / 8; ++k) {
      uint32_t w[4];
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        w[p] = static_cast<uint32_t>(codec::bf16_encode(v[8 * k + 2 * p])) |
               (static_cast<uint32_t>(codec::bf16_encode(v[8 * k + 2 * p + 1])) << 16);
      }
      o[k] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// One thread per 16 codes of a row (cols % 16 == 0, so 16 codes never straddle a row or a block).
template <typename Scale>
__global__ void fp8_block_vec_kernel(const uint8_t* __restrict__ codes, const Scale* __restrict__ scales, int64_t rows,
                                     int64_t cols, int64_t block, int64_t block_cols, float* out_f32,
                                     uint16_t* out_bf16) {
  const int64_t chunks = rows * cols / 16;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < chunks;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t at = c * 16, i = at / cols, j = at % cols;
    const float s = scale_value(scales, (i / block) * block_cols + j / block);
    const uint4 q = reinterpret_cast<const uint4*>(codes)[c];
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    float v[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) v[k] = codec::e4m3_decode(static_cast<uint8_t>(words[k / 4] >> (8 * (k % 4)))) * s;
    store(v, out_f32, out_bf16, at);
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

// One thread per MX group: 16 bytes = 32 nibbles, one scale.
template <typename Scale>
__global__ void mxfp4_kernel(const uint8_t* __restrict__ packed, const Scale* __restrict__ scales, int64_t groups,
                             float* out_f32, uint16_t* out_bf16) {
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float s = scale_value(scales, g);
    const uint4 q = reinterpret_cast<const uint4*>(packed)[g];
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    float v[32];
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const uint8_t byte = static_cast<uint8_t>(words[k / 4] >> (8 * (k % 4)));
      v[2 * k] = codec::e2m1_decode(byte & 0x0f) * s;
      v[2 * k + 1] = codec::e2m1_decode(byte >> 4) * s;
    }
    store(v, out_f32, out_bf16, g * 32);
  }
}

int grid_for(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

void check_outputs(const float* f32, const uint16_t* bf16, const char* what) {
  DSV4_CHECK_IN("decode", (f32 == nullptr) != (bf16 == nullptr), "%s: exactly one of the fp32 and bf16 outputs", what);
  const uintptr_t p = f32 ? reinterpret_cast<uintptr_t>(f32) : reinterpret_cast<uintptr_t>(bf16);
  DSV4_CHECK_IN("decode", p % 16 == 0, "%s: output not 16-byte aligned", what);
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
  const bool vec = cols % 16 == 0 && block % 16 == 0 && reinterpret_cast<uintptr_t>(codes) % 16 == 0;
  const int64_t items = vec ? rows * cols / 16 : rows * cols;
  const cudaStream_t s = stream;
  if (scale_dtype == DType::kF8E8M0) {
    const auto* sc = static_cast<const uint8_t*>(scales);
    if (vec) {
      fp8_block_vec_kernel<<<grid_for(items), kThreads, 0, s>>>(codes, sc, rows, cols, block, block_cols, out_f32, out_bf16);
    } else {
      fp8_block_scalar_kernel<<<grid_for(items), kThreads, 0, s>>>(codes, sc, rows, cols, block, block_cols, out_f32, out_bf16);
    }
  } else {
    const auto* sc = static_cast<const float*>(scales);
    if (vec) {
      fp8_block_vec_kernel<<<grid_for(items), kThreads, 0, s>>>(codes, sc, rows, cols, block, block_cols, out_f32, out_bf16);
    } else {
      fp8_block_scalar_kernel<<<grid_for(items), kThreads, 0, s>>>(codes, sc, rows, cols, block, block_cols, out_f32, out_bf16);
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
  const int64_t groups = rows * cols / 32;
  const cudaStream_t s = stream;
  if (scale_dtype == DType::kF8E8M0) {
    mxfp4_kernel<<<grid_for(groups), kThreads, 0, s>>>(packed, static_cast<const uint8_t*>(scales), groups, out_f32, out_bf16);
  } else {
    mxfp4_kernel<<<grid_for(groups), kThreads, 0, s>>>(packed, static_cast<const float*>(scales), groups, out_f32, out_bf16);
  }
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::model

// pack_cuda.cu: the compressed-tensors encoders on the GPU (see pack_cuda.h). Each output word or
// byte is computed by one thread from the fields it holds, so no atomics touch the outputs; range
// violations go to one status slot per check (atomicMin of the flat index, so the reported
// position is the first one, as on the CPU).
#include "quant/pack_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/codec_inline.h"
#include "common/device_arena.h"
#include "quant/compressed_module.h"

namespace dsv4::quant {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;  // grid cap of the grid-stride kernels
constexpr unsigned long long kNoError = ~0ull;
enum StatusSlot { kIntCodes, kZeroPoints, kFp4Codes, kSlots };

#define DSV4_GRID_STRIDE(i, n)                                                               \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Word j of the little-endian bit stream of `count` offset-binary fields codes[k·stride]
// (pack.cpp stream_pack: field k at bits [k·b, k·b + b), u = q + 2^(b-1), zero padding).
// A code out of range reports base_index + k·stride.
template <typename T>
__device__ uint32_t stream_word(const T* codes, int64_t stride, int64_t count, int bits, int64_t j,
                                unsigned long long base_index, unsigned long long* bad) {
  const int32_t qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
  const int64_t first = 32 * j / bits, last = min(count - 1, (32 * j + 31) / bits);
  uint32_t word = 0;
  for (int64_t k = first; k <= last; ++k) {
    const int32_t q = static_cast<int32_t>(codes[k * stride]);
    if (q < qmin || q > qmax) atomicMin(bad, base_index + static_cast<unsigned long long>(k * stride));
    const uint32_t u = static_cast<uint32_t>(q - qmin) & ((1u << bits) - 1u);
    const int64_t shift = k * bits - 32 * j;
    word |= shift >= 0 ? u << shift : u >> (-shift);
  }
  return word;
}

// weight_packed [count·rows, words]: one thread per word.
__global__ void int32_pack_kernel(const int32_t* codes, int64_t rows, int64_t cols, int bits, int64_t words,
                                  uint32_t* out, unsigned long long* bad) {
  DSV4_GRID_STRIDE(i, rows * words) {
    const int64_t r = i / words, j = i % words;
    out[i] = stream_word(codes + r * cols, 1, cols, bits, j, static_cast<unsigned long long>(r * cols), bad);
  }
}

// weight_zero_point [count, words(N), G] from zero points [count, N, G] (floats holding integers).
__global__ void zero_point_pack_kernel(const float* zp, int count, int64_t n, int64_t groups, int bits, int64_t words,
                                       uint32_t* out, unsigned long long* bad) {
  DSV4_GRID_STRIDE(i, count * words * groups) {
    const int64_t b = i / (words * groups), j = (i / groups) % words, g = i % groups;
    const int64_t base = b * n * groups + g;
    out[i] = stream_word(zp + base, groups, n, bits, j, static_cast<unsigned long long>(base), bad);
  }
}

// e2m1 pairs: byte = code(2k) | code(2k+1) << 4.
__global__ void fp4_pack_kernel(const int32_t* codes, int64_t pairs, uint8_t* out, unsigned long long* bad) {
  DSV4_GRID_STRIDE(i, pairs) {
    const int32_t lo = codes[2 * i], hi = codes[2 * i + 1];
    if (lo < 0 || lo > 15) atomicMin(bad, static_cast<unsigned long long>(2 * i));
    if (hi < 0 || hi > 15) atomicMin(bad, static_cast<unsigned long long>(2 * i + 1));
    out[i] = static_cast<uint8_t>((lo & 0xf) | ((hi & 0xf) << 4));
  }
}

// e4m3 bytes (float-quantized) or int8 (int-/naive-quantized): the low byte, as the CPU writes it.
__global__ void narrow_kernel(const int32_t* codes, int64_t n, uint8_t* out) {
  DSV4_GRID_STRIDE(i, n) { out[i] = static_cast<uint8_t>(codes[i]); }
}

// Scales are exact values of their dtype, so these encodings are exact.
__global__ void scale_encode_kernel(const float* scale, int64_t n, DType dtype, void* out) {
  DSV4_GRID_STRIDE(i, n) {
    switch (dtype) {
      case DType::kBF16: static_cast<uint16_t*>(out)[i] = codec::bf16_encode(scale[i]); break;
      case DType::kF16: static_cast<uint16_t*>(out)[i] = codec::fp16_encode(scale[i]); break;
      default: static_cast<uint8_t*>(out)[i] = codec::e4m3_encode(scale[i]); break;  // kF8E4M3
    }
  }
}

__global__ void shape_kernel(int count, int64_t rows, int64_t cols, int64_t* out) {
  DSV4_GRID_STRIDE(b, count) {
    out[2 * b] = rows;
    out[2 * b + 1] = cols;
  }
}

int64_t elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  return n;
}

}  // namespace

void compressed_module_encode_cuda(PackFormat format, const QuantArgs& args, const QParamsCuda& qp,
                                   const int32_t* codes, int count, int64_t rows, int64_t cols,
                                   std::span<void* const> outputs, DeviceArena& arena, CUstream_st* stream) {
  const std::vector<EncodedTensor> layout = compressed_module_layout(format, args, rows, cols, false);
  DSV4_CHECK_IN("pack", outputs.size() == layout.size(), "%zu output buffers for the %zu tensors of format %s",
                outputs.size(), layout.size(), pack_format_name(format).data());
  DSV4_CHECK_IN("pack", count >= 0 && codes != nullptr && qp.scale != nullptr, "%d matrices: codes and scales are required",
                count);
  if (count == 0) return;
  ArenaScope scope(arena);
  auto* bad = arena.take<unsigned long long>(kSlots, "pack status");
  DSV4_CUDA_CHECK(cudaMemsetAsync(bad, 0xff, kSlots * sizeof(unsigned long long), stream));
  int64_t scale_rows = 0, scale_cols = 0;
  qparams_shape(args, rows, cols, &scale_rows, &scale_cols);
  const int64_t scales = count * scale_rows * scale_cols;
  for (size_t t = 0; t < layout.size(); ++t) {
    const EncodedTensor& e = layout[t];
    void* out = outputs[t];
    DSV4_CHECK_IN("pack", out != nullptr, "no output buffer for %s", e.name.c_str());
    const int64_t n = count * elements(e.shape);
    if (e.name == "weight_packed" && e.dtype == DType::kI32) {
      const int64_t words = static_cast<int64_t>(int32_packed_cols(static_cast<size_t>(cols), args.num_bits));
      int32_pack_kernel<<<grid_blocks(count * rows * words, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
          codes, count * rows, cols, args.num_bits, words, static_cast<uint32_t*>(out), bad + kIntCodes);
    } else if (e.name == "weight_packed") {
      fp4_pack_kernel<<<grid_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(codes, n, static_cast<uint8_t*>(out), bad + kFp4Codes);
    } else if (e.name == "weight") {
      narrow_kernel<<<grid_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(codes, n, static_cast<uint8_t*>(out));
    } else if (e.name == "weight_scale") {
      DSV4_CHECK_IN("pack", n == scales, "weight_scale: %lld values for a %lld-cell qparam grid", static_cast<long long>(n),
                    static_cast<long long>(scales));
      if (e.dtype == DType::kF32) {
        DSV4_CUDA_CHECK(cudaMemcpyAsync(out, qp.scale, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToDevice, stream));
      } else if (e.dtype == DType::kU8 || e.dtype == DType::kF8E8M0) {
        DSV4_CHECK_IN("pack", qp.scale_e8m0 != nullptr, "weight_scale: e8m0 scales requested but the qparams have none");
        DSV4_CUDA_CHECK(cudaMemcpyAsync(out, qp.scale_e8m0, static_cast<size_t>(n), cudaMemcpyDeviceToDevice, stream));
      } else {
        DSV4_CHECK_IN("pack", e.dtype == DType::kBF16 || e.dtype == DType::kF16 || e.dtype == DType::kF8E4M3,
                      "no scale encoding for dtype %s", std::string(dtype_name(e.dtype)).c_str());
        scale_encode_kernel<<<grid_blocks(n, kThreads, kMaxBlocks), kThreads, 0, stream>>>(qp.scale, n, e.dtype, out);
      }
    } else if (e.name == "weight_shape") {
      shape_kernel<<<grid_blocks(count, kThreads, kMaxBlocks), kThreads, 0, stream>>>(count, rows, cols, static_cast<int64_t*>(out));
    } else if (e.name == "weight_zero_point") {
      const int64_t words = static_cast<int64_t>(int32_packed_cols(static_cast<size_t>(scale_rows), args.num_bits));
      zero_point_pack_kernel<<<grid_blocks(count * words * scale_cols, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
          qp.zero_point, count, scale_rows, scale_cols, args.num_bits, words, static_cast<uint32_t*>(out),
          bad + kZeroPoints);
    } else if (e.name == "weight_global_scale") {
      DSV4_CHECK_IN("pack", qp.global_scale != nullptr, "weight_global_scale: the qparams have no global scales");
      DSV4_CUDA_CHECK(cudaMemcpyAsync(out, qp.global_scale, static_cast<size_t>(count) * 4, cudaMemcpyDeviceToDevice,
                                      stream));
    } else {
      DSV4_FAIL("pack", "no GPU encoder for tensor %s", e.name.c_str());
    }
    DSV4_CUDA_CHECK_LAUNCH();
  }
  unsigned long long status[kSlots];
  DSV4_CUDA_CHECK(cudaMemcpyAsync(status, bad, sizeof(status), cudaMemcpyDeviceToHost, stream));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (int slot = 0; slot < kSlots; ++slot) {
    if (status[slot] == kNoError) continue;
    const auto index = static_cast<int64_t>(status[slot]);
    float value = 0.0f;
    if (slot == kZeroPoints) {
      DSV4_CUDA_CHECK(cudaMemcpy(&value, qp.zero_point + index, 4, cudaMemcpyDeviceToHost));
      const int64_t per = scale_rows * scale_cols;
      DSV4_FAIL("pack", "zero point %g of matrix %lld at [%lld, %lld] is outside the int%d range", value,
                static_cast<long long>(index / per), static_cast<long long>(index % per / scale_cols),
                static_cast<long long>(index % scale_cols), args.num_bits);
    }
    int32_t code = 0;
    DSV4_CUDA_CHECK(cudaMemcpy(&code, codes + index, 4, cudaMemcpyDeviceToHost));
    const int64_t per = rows * cols;
    const std::string range = slot == kFp4Codes ? "e2m1 [0, 15]" : "int" + std::to_string(args.num_bits);
    DSV4_FAIL("pack", "code %d of matrix %lld at [%lld, %lld] is outside the %s range", code,
              static_cast<long long>(index / per), static_cast<long long>(index % per / cols),
              static_cast<long long>(index % cols), range.c_str());
  }
}

}  // namespace dsv4::quant

// unpack_cuda.cu: compressed-tensors decoding on the GPU (see unpack_cuda.h). One thread per
// weight element reads its code field, its cell's scale (and zero point) and writes the bf16 value;
// the fields are the ones pack.cpp writes (int32 bit streams, e2m1 nibbles, e4m3/int8 bytes).
#include "quant/unpack_cuda.h"

#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec_inline.h"
#include "common/cuda_grid.h"
#include "common/dtype.h"
#include "quant/cell_grid.h"
#include "quant/compressed_module.h"
#include "quant/quantizer_inline.h"

namespace dsv4::quant {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;

enum class CodeField : uint8_t { kIntStream, kFp4Nibble, kByte, kSignedByte };

// Everything an element needs, by value.
struct DecodeParams {
  CellArgs ca;
  int64_t rows = 0, cols = 0;
  int64_t scale_cols = 0, cell_h = 1, cell_w = 1;
  CodeField field = CodeField::kIntStream;
  int bits = 4;
  int64_t words = 0;  // int32 words per row (kIntStream)
  const void* codes = nullptr;
  const void* scale = nullptr;
  DType scale_dtype = DType::kBF16;
  const uint32_t* zero_point = nullptr;  // packed along the scale rows, [words(scale_rows), scale_cols]
  const float* global_scale = nullptr;   // NVFP4: effective scale = scale / global scale
};

// Field k of a little-endian stream of b-bit offset-binary values, word j at words[j·stride]
// (pack.cpp stream_unpack): the signed code.
__device__ int32_t stream_field(const uint32_t* words, int64_t stride, int64_t k, int bits) {
  const int64_t bit = k * bits, word = bit / 32;
  const int shift = static_cast<int>(bit % 32);
  uint32_t u = words[word * stride] >> shift;
  if (shift + bits > 32) u |= words[(word + 1) * stride] << (32 - shift);
  return static_cast<int32_t>(u & ((1u << bits) - 1u)) - (1 << (bits - 1));
}

__device__ float scale_value(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return codec::bf16_decode(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return codec::fp16_decode(static_cast<const uint16_t*>(p)[i]);
    case DType::kF8E4M3: return codec::e4m3_decode(static_cast<const uint8_t*>(p)[i]);
    default: return codec::e8m0_decode(static_cast<const uint8_t*>(p)[i]);  // U8 / F8_E8M0
  }
}

__global__ void decode_kernel(DecodeParams p, uint16_t* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.rows * p.cols;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / p.cols, c = i % p.cols;
    int32_t code;
    switch (p.field) {
      case CodeField::kIntStream:
        code = stream_field(static_cast<const uint32_t*>(p.codes) + r * p.words, 1, c, p.bits);
        break;
      case CodeField::kFp4Nibble: code = (static_cast<const uint8_t*>(p.codes)[i / 2] >> ((i % 2) * 4)) & 0xf; break;
      case CodeField::kByte: code = static_cast<const uint8_t*>(p.codes)[i]; break;
      default: code = static_cast<const int8_t*>(p.codes)[i]; break;
    }
    const int64_t cr = r / p.cell_h, sc = c / p.cell_w;
    float s = scale_value(p.scale, p.scale_dtype, cr * p.scale_cols + sc);
    if (p.global_scale != nullptr) s = qi::div_rn(s, *p.global_scale);
    const float zp = p.zero_point != nullptr
                         ? static_cast<float>(stream_field(p.zero_point + sc, p.scale_cols, cr, p.bits))
                         : 0.0f;
    out[i] = codec::bf16_encode(dequant_value(p.ca, code, s, zp));
  }
}

}  // namespace

void compressed_module_decode_cuda(PackFormat format, const QuantArgs& args, std::span<const void* const> inputs,
                                   int64_t rows, int64_t cols, uint16_t* out, CUstream_st* stream) {
  const std::vector<EncodedTensor> layout = compressed_module_layout(format, args, rows, cols, false);
  DSV4_CHECK_IN("pack", inputs.size() == layout.size(), "%zu input buffers for the %zu tensors of format %s",
                inputs.size(), layout.size(), pack_format_name(format).data());
  const CellGrid grid = cell_grid(args, rows, cols);
  DecodeParams p;
  p.ca = cell_args(args);
  p.rows = rows;
  p.cols = cols;
  p.scale_cols = grid.scale_cols;
  p.cell_h = grid.cell_h;
  p.cell_w = grid.cell_w;
  p.bits = args.num_bits;
  for (size_t t = 0; t < layout.size(); ++t) {
    const EncodedTensor& e = layout[t];
    DSV4_CHECK_IN("pack", inputs[t] != nullptr, "no input buffer for %s", e.name.c_str());
    if (e.name == "weight_packed") {
      p.codes = inputs[t];
      p.field = e.dtype == DType::kI32 ? CodeField::kIntStream : CodeField::kFp4Nibble;
      p.words = static_cast<int64_t>(int32_packed_cols(static_cast<size_t>(cols), args.num_bits));
    } else if (e.name == "weight") {
      p.codes = inputs[t];
      p.field = e.dtype == DType::kF8E4M3 ? CodeField::kByte : CodeField::kSignedByte;
    } else if (e.name == "weight_scale") {
      p.scale = inputs[t];
      p.scale_dtype = e.dtype;
      // As the CPU decoder: a float scale multiplies in its stored dtype (bf16: the product is
      // rounded to bf16), whatever scale dtype the args computed it in.
      if (e.dtype == DType::kBF16) p.ca.scale_dtype = ScaleDType::kModel;
      if (e.dtype == DType::kF32 || e.dtype == DType::kF16) p.ca.scale_dtype = ScaleDType::kF32;
    } else if (e.name == "weight_zero_point") {
      p.zero_point = static_cast<const uint32_t*>(inputs[t]);
    } else if (e.name == "weight_global_scale") {
      p.global_scale = static_cast<const float*>(inputs[t]);
    } else {
      DSV4_CHECK_IN("pack", e.name == "weight_shape", "no GPU decoder for tensor %s", e.name.c_str());
    }
  }
  DSV4_CHECK_IN("pack", p.codes != nullptr && p.scale != nullptr, "format %s: a layout without codes or scales",
                pack_format_name(format).data());
  decode_kernel<<<grid_blocks(rows * cols, kThreads, kMaxBlocks), kThreads, 0, stream>>>(p, out);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::quant

// weight_decode.cpp: CPU reference decoders for FP8 block-scaled and MXFP4 release weights.
#include "model/weight_decode.h"

#include <algorithm>
#include <array>
#include <functional>
#include <cstring>
#include <string>

#include "common/check.h"
#include "common/finite_scan.h"
#include "common/codec.h"
#include "common/parallel.h"

namespace dsv4::model {
namespace {

// One scale value, from an e8m0 byte or a little-endian float32.
float scale_at(std::span<const std::byte> scales, DType dtype, size_t index) {
  if (dtype == DType::kF8E8M0) return e8m0_decode(static_cast<uint8_t>(scales[index]));
  float v;
  std::memcpy(&v, scales.data() + index * sizeof(float), sizeof(float));
  return v;
}

void check_scale_bytes(std::span<const std::byte> scales, DType dtype, size_t count,
                       const char* what) {
  DSV4_CHECK_IN("decode", dtype == DType::kF8E8M0 || dtype == DType::kF32,
                "%s scales must be F8_E8M0 or F32, got %s", what,
                std::string(dtype_name(dtype)).c_str());
  DSV4_CHECK_IN("decode", scales.size() == count * dtype_size(dtype),
                "%s scale tensor has %zu bytes, expected %zu", what, scales.size(),
                count * dtype_size(dtype));
}

// The 256 e4m3 values, decoded once (a table lookup instead of bit manipulation per element).
const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[static_cast<size_t>(c)] = e4m3_decode(static_cast<uint8_t>(c));
    return t;
  }();
  return table;
}

// Splits [0, rows) into chunks decoded on all cores: a full-width layer decodes 3.5 G weights,
// which is most of the CPU forward's time at calibration token counts. Each chunk writes its own
// rows, so the result does not depend on the thread count.
void for_row_chunks(int64_t rows, const std::function<void(int64_t, int64_t)>& body) {
  constexpr int64_t kChunkRows = 256;
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  parallel_for(static_cast<size_t>(chunks), 0, [&](size_t k) {
    const int64_t r0 = static_cast<int64_t>(k) * kChunkRows;
    body(r0, std::min(rows, r0 + kChunkRows));
  });
}

}  // namespace

void weight_decode_fp8_block(std::span<const std::byte> codes, std::span<const std::byte> scales,
                             DType scale_dtype, int64_t rows, int64_t cols, int64_t block,
                             float* out) {
  DSV4_CHECK_IN("decode", rows > 0 && cols > 0 && block > 0, "bad FP8 shape [%lld, %lld] block %lld",
                static_cast<long long>(rows), static_cast<long long>(cols),
                static_cast<long long>(block));
  DSV4_CHECK_IN("decode", codes.size() == static_cast<size_t>(rows * cols),
                "FP8 weight has %zu bytes, expected %lld x %lld", codes.size(),
                static_cast<long long>(rows), static_cast<long long>(cols));
  const int64_t block_cols = (cols + block - 1) / block;
  const int64_t block_rows = (rows + block - 1) / block;
  check_scale_bytes(scales, scale_dtype, static_cast<size_t>(block_rows * block_cols), "FP8 block");
  const auto& lut = e4m3_table();
  for_row_chunks(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const uint8_t* row = reinterpret_cast<const uint8_t*>(codes.data()) + i * cols;
      for (int64_t jb = 0; jb < block_cols; ++jb) {
        const float s = scale_at(scales, scale_dtype, static_cast<size_t>((i / block) * block_cols + jb));
        const int64_t j_end = std::min(cols, (jb + 1) * block);
        for (int64_t j = jb * block; j < j_end; ++j) out[i * cols + j] = lut[row[j]] * s;
      }
    }
  });
}

void weight_decode_mxfp4(std::span<const std::byte> packed, std::span<const std::byte> scales,
                         DType scale_dtype, int64_t rows, int64_t cols, float* out) {
  DSV4_CHECK_IN("decode", rows > 0 && cols > 0 && cols % 32 == 0,
                "bad MXFP4 shape [%lld, %lld]: columns must be a positive multiple of 32",
                static_cast<long long>(rows), static_cast<long long>(cols));
  DSV4_CHECK_IN("decode", packed.size() == static_cast<size_t>(rows * cols / 2),
                "MXFP4 weight has %zu bytes, expected %lld x %lld / 2", packed.size(),
                static_cast<long long>(rows), static_cast<long long>(cols));
  check_scale_bytes(scales, scale_dtype, static_cast<size_t>(rows * cols / 32), "MXFP4");
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(packed.data());
  float lut[16];
  for (int k = 0; k < 16; ++k) lut[k] = e2m1_decode(static_cast<uint8_t>(k));
  for_row_chunks(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      for (int64_t g = 0; g < cols / 32; ++g) {
        const float s = scale_at(scales, scale_dtype, static_cast<size_t>(i * (cols / 32) + g));
        for (int64_t c = 0; c < 16; ++c) {
          const uint8_t b = bytes[(i * cols + g * 32) / 2 + c];
          out[i * cols + g * 32 + 2 * c] = lut[b & 0xf] * s;
          out[i * cols + g * 32 + 2 * c + 1] = lut[b >> 4] * s;
        }
      }
    }
  });
}

std::vector<float> weight_decode_linear(const Checkpoint& ckpt, const std::string& stem,
                                        int64_t fp8_block) {
  const TensorInfo& w = ckpt.info(stem + ".weight");
  const TensorInfo& s = ckpt.info(stem + ".scale");
  DSV4_CHECK_IN("decode", w.shape.size() == 2, "%s.weight is not a matrix", stem.c_str());
  if (w.dtype == DType::kI8) {
    const int64_t rows = w.shape[0], cols = w.shape[1] * 2;  // two e2m1 codes per byte
    std::vector<float> out(static_cast<size_t>(rows * cols));
    weight_decode_mxfp4(ckpt.bytes(w.name), ckpt.bytes(s.name), s.dtype, rows, cols, out.data());
    require_finite(non_finite_scan(out.data(), out.size()), stem + ".weight (with its .scale)", ckpt.dir());
    return out;
  }
  DSV4_CHECK_IN("decode", w.dtype == DType::kF8E4M3,
                "%s.weight has dtype %s; expected F8_E4M3 (block FP8) or I8 (MXFP4)", stem.c_str(),
                std::string(dtype_name(w.dtype)).c_str());
  std::vector<float> out(static_cast<size_t>(w.numel()));
  weight_decode_fp8_block(ckpt.bytes(w.name), ckpt.bytes(s.name), s.dtype, w.shape[0], w.shape[1],
                          fp8_block, out.data());
  require_finite(non_finite_scan(out.data(), out.size()), stem + ".weight (with its .scale)", ckpt.dir());
  return out;
}

}  // namespace dsv4::model

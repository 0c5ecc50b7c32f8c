// release_encode.cpp: the release encodings of float values (see release_encode.h).
#include "model/release_encode.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/check.h"
#include "common/codec.h"

namespace dsv4::model {
namespace {

void put_scale(EncodedBytes& out, DType dtype, size_t index, uint8_t e8m0) {
  if (dtype == DType::kF8E8M0) {
    out[index] = static_cast<std::byte>(e8m0);
  } else {
    const float v = e8m0_decode(e8m0);
    std::memcpy(out.data() + index * 4, &v, 4);
  }
}

// One band of up to `block` rows is held at a time, since a scale covers block rows.
EncodedLinear encode_fp8_block(const ExpectedTensor& w, const ExpectedTensor& s, int64_t block, const RowSource& rows_of) {
  const int64_t rows = w.logical_shape[0], cols = w.logical_shape[1];
  const int64_t block_cols = (cols + block - 1) / block;
  EncodedLinear out{EncodedBytes(w.bytes()), EncodedBytes(s.bytes())};
  std::vector<float> band(static_cast<size_t>(std::min(block, rows) * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t nr = std::min(block, rows - r0);
    for (int64_t i = 0; i < nr; ++i) rows_of(r0 + i, band.data() + i * cols);
    for (int64_t jb = 0; jb < block_cols; ++jb) {
      const int64_t j0 = jb * block, j1 = std::min(cols, j0 + block);
      float amax = 0.0f;
      for (int64_t i = 0; i < nr; ++i)
        for (int64_t j = j0; j < j1; ++j) amax = std::max(amax, std::fabs(band[i * cols + j]));
      const uint8_t sb = e8m0_encode_ceil(amax / kE4m3Max);
      put_scale(out.scale, s.dtype, static_cast<size_t>((r0 / block) * block_cols + jb), sb);
      const float inv = 1.0f / e8m0_decode(sb);  // exact: a power of two
      for (int64_t i = 0; i < nr; ++i)
        for (int64_t j = j0; j < j1; ++j)
          out.weight[static_cast<size_t>((r0 + i) * cols + j)] = static_cast<std::byte>(e4m3_encode(band[i * cols + j] * inv));
    }
  }
  return out;
}

EncodedLinear encode_mxfp4(const ExpectedTensor& w, const ExpectedTensor& s, const RowSource& rows_of) {
  const int64_t rows = w.logical_shape[0], cols = w.logical_shape[1];
  EncodedLinear out{EncodedBytes(w.bytes()), EncodedBytes(s.bytes())};
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t i = 0; i < rows; ++i) {
    rows_of(i, row.data());
    for (int64_t g = 0; g < cols / 32; ++g) {
      float amax = 0.0f;
      for (int64_t k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(row[g * 32 + k]));
      const uint8_t sb = e8m0_encode_ceil(amax / kE2m1Max);
      put_scale(out.scale, s.dtype, static_cast<size_t>(i * (cols / 32) + g), sb);
      const float inv = 1.0f / e8m0_decode(sb);
      for (int64_t c = 0; c < 16; ++c) {
        const uint8_t lo = e2m1_encode(row[g * 32 + 2 * c] * inv);
        const uint8_t hi = e2m1_encode(row[g * 32 + 2 * c + 1] * inv);
        out.weight[static_cast<size_t>((i * cols + g * 32) / 2 + c)] = static_cast<std::byte>(lo | (hi << 4));
      }
    }
  }
  return out;
}

}  // namespace

EncodedLinear release_encode_linear(const ExpectedTensor& weight, const ExpectedTensor& scale, int64_t fp8_block,
                                    const RowSource& rows) {
  DSV4_CHECK_IN("encode", scale.encoding == TensorEncoding::kScale, "%s is not the scale of %s", scale.name.c_str(),
                weight.name.c_str());
  if (weight.encoding == TensorEncoding::kFp8Block) return encode_fp8_block(weight, scale, fp8_block, rows);
  if (weight.encoding == TensorEncoding::kMxfp4) return encode_mxfp4(weight, scale, rows);
  DSV4_FAIL("encode", "%s is not an FP8-block or MXFP4 weight", weight.name.c_str());
}

EncodedBytes release_encode_plain(const ExpectedTensor& t, const float* values) {
  DSV4_CHECK_IN("encode", t.encoding == TensorEncoding::kPlain && (t.dtype == DType::kBF16 || t.dtype == DType::kF32),
                "%s: not a plain BF16/F32 tensor (dtype %s)", t.name.c_str(), std::string(dtype_name(t.dtype)).c_str());
  int64_t n = 1;
  for (int64_t v : t.shape) n *= v;
  EncodedBytes out(t.bytes());
  for (int64_t i = 0; i < n; ++i) {
    if (t.dtype == DType::kBF16) {
      const uint16_t b = bf16_encode(values[i]);
      std::memcpy(out.data() + 2 * i, &b, 2);
    } else {
      std::memcpy(out.data() + 4 * i, &values[i], 4);
    }
  }
  return out;
}

}  // namespace dsv4::model

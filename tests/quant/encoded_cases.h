// encoded_cases.h: the formats, shapes and inputs that the GPU encoder and decoder tests sweep
// (tests/quant/test_pack_cuda.cu, test_unpack_cuda.cu): codes and qparams drawn directly, not
// through a quantizer, so every code of a format's range occurs (the extremes forced in), scales
// are exact values of their stored dtype, zero points integers of the code range. GPU tests only
// (draws from fresh_rng(), tests/gpu_test.h).
#pragma once

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "common/codec.h"
#include "quant/compressed_module.h"
#include "quant/quant_args.h"
#include "quant/quantizer.h"
#include "tests/gpu_test.h"

namespace dsv4::quant::encoded_cases {

inline constexpr int kCount = 3;  // matrices per call

struct Case {
  std::string name;
  QuantArgs args;
  PackFormat format;
  int64_t rows, cols;
};

// The formats and shapes swept. Edges: one row, int fields straddling int32 words (3 bits), padded
// last words along columns (77 columns of 8 bits) and along rows (zero points of 50 and 37 rows),
// ragged FP8 blocks, the tensor strategy's single cell, one NVFP4 group.
inline std::vector<Case> cases() {
  const auto p = [](const char* name) { return quant_args_preset(name); };
  return {
      {"W4A16", p("W4A16"), PackFormat::kPackQuantized, 24, 256},
      {"W4A16 one row", p("W4A16"), PackFormat::kPackQuantized, 1, 128},
      {"W4A16_ASYM 50 rows", p("W4A16_ASYM"), PackFormat::kPackQuantized, 50, 256},
      {"W3A16 straddling fields", p("W3A16"), PackFormat::kPackQuantized, 3, 384},
      {"W8A16", p("W8A16"), PackFormat::kPackQuantized, 16, 256},
      {"W8A16_CHANNEL 77 columns", p("W8A16_CHANNEL"), PackFormat::kPackQuantized, 5, 77},
      {"INT8_ASYM_CHANNEL 37 rows", p("INT8_ASYM_CHANNEL"), PackFormat::kPackQuantized, 37, 96},
      {"INT4_G32", p("INT4_G32"), PackFormat::kPackQuantized, 8, 96},
      {"W8A8 int-quantized", p("W8A8"), PackFormat::kIntQuantized, 9, 100},
      {"W4A16 naive", p("W4A16"), PackFormat::kNaiveQuantized, 6, 256},
      {"FP8 tensor", p("FP8"), PackFormat::kFloatQuantized, 7, 130},
      {"FP8 tensor 1x5", p("FP8"), PackFormat::kFloatQuantized, 1, 5},
      {"FP8 naive", p("FP8"), PackFormat::kNaiveQuantized, 4, 64},
      {"FP8_DYNAMIC", p("FP8_DYNAMIC"), PackFormat::kFloatQuantized, 50, 386},
      {"FP8_BLOCK ragged", p("FP8_BLOCK"), PackFormat::kFloatQuantized, 200, 320},
      {"FP8_BLOCK_E8M0 ragged", p("FP8_BLOCK_E8M0"), PackFormat::kFloatQuantized, 130, 200},
      {"NVFP4", p("NVFP4"), PackFormat::kNvfp4PackQuantized, 12, 64},
      {"NVFP4 one row", p("NVFP4"), PackFormat::kNvfp4PackQuantized, 1, 16},
      {"MXFP4A16", p("MXFP4A16"), PackFormat::kMxfp4PackQuantized, 10, 96},
  };
}

// Host inputs of one call: codes [kCount, rows, cols] and qparams per matrix.
struct Inputs {
  std::vector<int32_t> codes;
  std::vector<QParams> qp;  // [kCount]
};

// The stored dtype of weight_scale in the format's layout.
inline DType scale_dtype_of(const Case& c) {
  for (const EncodedTensor& t : compressed_module_layout(c.format, c.args, c.rows, c.cols, false)) {
    if (t.name == "weight_scale") return t.dtype;
  }
  ADD_FAILURE() << c.name << ": no weight_scale in the layout";
  return DType::kBF16;
}

// Codes over the whole range (both ends forced in), scales exact in their stored dtype, integer
// zero points over their range (asymmetric), a global scale per matrix (tensor_group).
inline Inputs draw(const Case& c) {
  const QuantArgs& a = c.args;
  std::mt19937& rng = fresh_rng();
  Inputs in;
  const int64_t per = c.rows * c.cols;
  in.codes.resize(static_cast<size_t>(kCount * per));
  int32_t lo = 0, hi = 0;
  if (a.type == QuantType::kInt) {
    lo = -(1 << (a.num_bits - 1)), hi = (1 << (a.num_bits - 1)) - 1;
  } else {
    hi = a.num_bits == 4 ? 15 : 255;  // e2m1 nibbles, e4m3 bytes
  }
  std::uniform_int_distribution<int32_t> code(lo, hi);
  for (int32_t& v : in.codes) {
    v = code(rng);
    if (a.type == QuantType::kFloat && a.num_bits == 8 && (v & 0x7f) == 0x7f) v ^= 1;  // no e4m3 NaN
  }
  in.codes[0] = lo;
  in.codes.back() = hi == 255 ? 254 : hi;
  const DType sd = scale_dtype_of(c);
  std::uniform_real_distribution<float> mag(1e-4f, 0.1f);
  std::uniform_int_distribution<int> e4m3_byte(0x08, 0x7e), e8m0_byte(100, 140);
  for (int b = 0; b < kCount; ++b) {
    QParams q;
    q.rows = c.rows, q.cols = c.cols;
    qparams_shape(a, c.rows, c.cols, &q.scale_rows, &q.scale_cols);
    const size_t cells = static_cast<size_t>(q.scale_rows * q.scale_cols);
    for (size_t i = 0; i < cells; ++i) {
      if (a.scale_dtype == ScaleDType::kE8m0) {  // the bytes are the truth; the float is their value
        q.scale_e8m0.push_back(static_cast<uint8_t>(e8m0_byte(rng)));
        q.scale.push_back(e8m0_decode(q.scale_e8m0.back()));
      } else if (sd == DType::kF8E4M3) {
        q.scale.push_back(e4m3_decode(static_cast<uint8_t>(e4m3_byte(rng))));
      } else {
        q.scale.push_back(bf16_decode(bf16_encode(mag(rng))));
      }
    }
    std::uniform_int_distribution<int32_t> zp(lo, hi);
    for (size_t i = 0; i < cells; ++i) q.zero_point.push_back(a.symmetric ? 0.0f : static_cast<float>(zp(rng)));
    if (a.strategy == Strategy::kTensorGroup) {
      q.has_global_scale = true;
      q.global_scale = mag(rng) * 1000.0f;
    }
    in.qp.push_back(std::move(q));
  }
  return in;
}

}  // namespace dsv4::quant::encoded_cases

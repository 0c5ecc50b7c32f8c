// quantizer.cpp: compressed-tensors calculate_qparams / fake_quantize on the CPU (see
// quantizer.h; spec gptq_and_formats.md §1.6, §1.8, §4.1). Tests: tests/quant/test_quantizer.cpp.
#include "quant/quantizer.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>

#include "common/check.h"
#include "common/codec.h"
#include "quant/observer.h"

namespace dsv4::quant {
namespace {

// torch.round: round half to even (default FP environment is round-to-nearest-even).
float round_half_even(float x) { return std::nearbyint(x); }

float bf16_round(float x) { return bf16_decode(bf16_encode(x)); }

// Scale arithmetic in the model dtype: llm-compressor runs calculate_qparams on bf16 min/max
// tensors, so each torch op result is rounded to bf16 (§1.8). Other scale dtypes compute in fp32.
float arith(const QuantArgs& args, float x) {
  return args.scale_dtype == ScaleDType::kModel ? bf16_round(x) : x;
}

// torch.finfo(scale dtype).eps, which replaces zero scales.
float scale_eps(ScaleDType d) {
  switch (d) {
    case ScaleDType::kModel: return 0.0078125f;  // bf16: 2^-7
    case ScaleDType::kF32: return FLT_EPSILON;
    case ScaleDType::kE4m3: return 0.125f;
    case ScaleDType::kE8m0: return 1.0f;  // unreachable: e8m0 scales are never 0
  }
  return FLT_EPSILON;
}

// generate_mx_scales: round amax to a power of two at the element format's mantissa precision
// (fp32 bits + 2^21 for e2m1's 1 mantissa bit, then drop the mantissa), take its exponent, and
// subtract the element emax (2 for fp4: floor(log2 6); 8 for fp8: floor(log2 448)).
uint8_t mx_scale_byte(const QuantArgs& args, float amax) {
  const int mantissa_bits = args.num_bits == 4 ? 1 : 3;
  const int elem_emax = args.num_bits == 4 ? 2 : 8;
  uint32_t bits = std::bit_cast<uint32_t>(std::fabs(amax));
  bits = (bits + (1u << (23 - mantissa_bits - 1))) & 0x7F800000u;
  if (bits == 0) return 0;  // log2(0) = -inf clamps to the smallest scale
  const int exponent = static_cast<int>(bits >> 23) - 127;
  return static_cast<uint8_t>(std::clamp(127 + exponent - elem_emax, 0, 254));
}

}  // namespace

int64_t QParams::scale_row(const QuantArgs& args, int64_t row) const {
  switch (args.strategy) {
    case Strategy::kTensor: return 0;
    case Strategy::kBlock: return row / args.block_structure[0];
    default: return row;
  }
}

int64_t QParams::scale_col(const QuantArgs& args, int64_t col) const {
  switch (args.strategy) {
    case Strategy::kTensor:
    case Strategy::kChannel: return 0;
    case Strategy::kBlock: return col / args.block_structure[1];
    default: return col / args.group_size;
  }
}

void qparams_shape(const QuantArgs& args, int64_t rows, int64_t cols, int64_t* scale_rows,
                   int64_t* scale_cols) {
  switch (args.strategy) {
    case Strategy::kTensor: *scale_rows = 1; *scale_cols = 1; break;
    case Strategy::kChannel: *scale_rows = rows; *scale_cols = 1; break;
    case Strategy::kBlock:
      *scale_rows = (rows + args.block_structure[0] - 1) / args.block_structure[0];
      *scale_cols = (cols + args.block_structure[1] - 1) / args.block_structure[1];
      break;
    default: *scale_rows = rows; *scale_cols = cols / args.group_size; break;
  }
}

float nvfp4_global_scale(float amax_tensor) {
  const float amax = std::max(std::fabs(amax_tensor), FLT_MIN);
  const float gs = (kE4m3Max * kE2m1Max) / amax;
  return std::isfinite(gs) ? gs : 1.0f;
}

CellQParams qparams_calculate(const QuantArgs& args, float min_val, float max_val,
                              float global_scale) {
  min_val = std::min(min_val, 0.0f);  // zero must be representable
  max_val = std::max(max_val, 0.0f);
  const float qmin = args.qmin(), qmax = args.qmax();
  const float range = qmax - qmin;
  const float amax = std::max(std::fabs(min_val), std::fabs(max_val));
  CellQParams out;
  if (args.scale_dtype == ScaleDType::kE8m0) {
    // MX rule for groups; elsewhere the DSV4 release rule 2^ceil(log2(amax/qmax)), never clips.
    out.e8m0 = args.is_mx() ? mx_scale_byte(args, amax) : e8m0_encode_ceil(amax / qmax);
    out.scale = e8m0_decode(out.e8m0);
    return out;
  }
  float s = args.symmetric ? arith(args, amax / (range / 2.0f))
                           : arith(args, arith(args, max_val - min_val) / range);
  const bool has_global = global_scale > 0.0f;
  if (has_global) s = global_scale * s;
  if (args.scale_dtype == ScaleDType::kE4m3 &&
      (has_global || args.strategy != Strategy::kTensorGroup)) {
    s = e4m3_decode(e4m3_encode(std::min(s, kE4m3Max)));
  }
  if (s == 0.0f) s = scale_eps(args.scale_dtype);
  // The zero point uses the final (eps-replaced) scale, so an all-zero group gets zp = qmin
  // instead of 0/0 (codes equal zp, dequantized values 0).
  if (!args.symmetric) {
    float zp = arith(args, qmin - arith(args, min_val / s));
    zp = std::clamp(zp, qmin, qmax);
    out.zero_point = args.type == QuantType::kInt ? round_half_even(zp)
                                                  : e4m3_decode(e4m3_encode(zp));
  }
  out.scale = s;
  return out;
}

QParams qparams_from_minmax(const QuantArgs& args, int64_t rows, int64_t cols,
                            const std::vector<float>& min_vals, const std::vector<float>& max_vals,
                            float amax_tensor) {
  QParams qp;
  qp.rows = rows;
  qp.cols = cols;
  qparams_shape(args, rows, cols, &qp.scale_rows, &qp.scale_cols);
  const size_t n = static_cast<size_t>(qp.scale_rows * qp.scale_cols);
  DSV4_CHECK_IN("quant", min_vals.size() == n && max_vals.size() == n,
                "min_vals/max_vals: %zu/%zu values, expected %zu for the [%lld, %lld] qparam grid "
                "of weight [%lld, %lld] (%s)",
                min_vals.size(), max_vals.size(), n, static_cast<long long>(qp.scale_rows),
                static_cast<long long>(qp.scale_cols), static_cast<long long>(rows),
                static_cast<long long>(cols), args.to_string().c_str());
  float gs = 0.0f;
  if (args.strategy == Strategy::kTensorGroup) {
    gs = nvfp4_global_scale(amax_tensor);
    qp.has_global_scale = true;
    qp.global_scale = gs;
  }
  qp.scale.resize(n);
  qp.zero_point.resize(n);
  if (args.scale_dtype == ScaleDType::kE8m0) qp.scale_e8m0.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const CellQParams c = qparams_calculate(args, min_vals[i], max_vals[i], gs);
    qp.scale[i] = c.scale;
    qp.zero_point[i] = c.zero_point;
    if (!qp.scale_e8m0.empty()) qp.scale_e8m0[i] = c.e8m0;
  }
  return qp;
}

float qparams_effective_scale(const QParams& qp, int64_t cell) {
  const float s = qp.scale[static_cast<size_t>(cell)];
  return qp.has_global_scale ? s / qp.global_scale : s;
}

int32_t quantizer_quantize_value(const QuantArgs& args, float x, float s_eff, float zp,
                                 float* deq) {
  // zp == 0 is not added, so -0 stays -0 (e4m3 0x80 re-encodes to 0x80; the value is the same).
  const float v = std::clamp(zp == 0.0f ? x / s_eff : x / s_eff + zp, args.qmin(), args.qmax());
  int32_t code;
  if (args.type == QuantType::kInt) {
    code = static_cast<int32_t>(round_half_even(v));
  } else if (args.num_bits == 8) {
    code = e4m3_encode(v);
  } else {
    code = e2m1_encode(v);
  }
  if (deq != nullptr) *deq = quantizer_dequant_value(args, code, s_eff, zp);
  return code;
}

float quantizer_code_value(const QuantArgs& args, int32_t code) {
  if (args.type == QuantType::kInt) return static_cast<float>(code);
  if (args.num_bits == 8) return e4m3_decode(static_cast<uint8_t>(code));
  return e2m1_decode(static_cast<uint8_t>(code));
}

float quantizer_dequant_value(const QuantArgs& args, int32_t code, float s_eff, float zp) {
  // compressed-tensors multiplies in the scale's dtype: with bf16 ("model") scales the fake-quant
  // value is bf16(code * scale), and GPTQ propagates exactly that value's error. The difference
  // of code and zero point is exact (both small integers).
  const float d = (quantizer_code_value(args, code) - zp) * s_eff;
  return args.scale_dtype == ScaleDType::kModel ? bf16_round(d) : d;
}

void quantizer_fake_quant_column(const QuantArgs& args, const QParams& qp, int64_t col,
                                 const float* w_col, int64_t rows, int32_t* codes, float* deq) {
  DSV4_CHECK_IN("quant", rows == qp.rows && col >= 0 && col < qp.cols,
                "column %lld of %lld rows: qparams are for weight [%lld, %lld]",
                static_cast<long long>(col), static_cast<long long>(rows),
                static_cast<long long>(qp.rows), static_cast<long long>(qp.cols));
  const int64_t scale_col = qp.scale_col(args, col);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t cell = qp.scale_row(args, r) * qp.scale_cols + scale_col;
    float d;
    const int32_t c = quantizer_quantize_value(args, w_col[r], qparams_effective_scale(qp, cell),
                                               qp.zero_point[static_cast<size_t>(cell)], &d);
    if (codes != nullptr) codes[r] = c;
    if (deq != nullptr) deq[r] = d;
  }
}

RtnResult quantizer_rtn_with(const QuantArgs& args, const QParams& qp, const float* w) {
  RtnResult out;
  out.qparams = qp;
  const int64_t rows = qp.rows, cols = qp.cols;
  out.codes.resize(static_cast<size_t>(rows * cols));
  out.dequant.resize(static_cast<size_t>(rows * cols));
  std::vector<float> col_in(static_cast<size_t>(rows)), col_deq(static_cast<size_t>(rows));
  std::vector<int32_t> col_codes(static_cast<size_t>(rows));
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) col_in[r] = w[r * cols + c];
    quantizer_fake_quant_column(args, qp, c, col_in.data(), rows, col_codes.data(),
                                col_deq.data());
    for (int64_t r = 0; r < rows; ++r) {
      out.codes[r * cols + c] = col_codes[r];
      out.dequant[r * cols + c] = col_deq[r];
    }
  }
  return out;
}

RtnResult quantizer_rtn(const QuantArgs& args, const float* w, int64_t rows, int64_t cols) {
  args.check();
  quant_args_check_shape(args, rows, cols);
  return quantizer_rtn_with(args, observer_qparams(args, w, rows, cols), w);
}

RtnResult quantizer_fp8_block_reencode(const QuantArgs& args, const uint8_t* codes,
                                       const uint8_t* scales_e8m0, int64_t rows, int64_t cols) {
  args.check();
  DSV4_CHECK_IN("quant",
                args.type == QuantType::kFloat && args.num_bits == 8 &&
                    args.strategy == Strategy::kBlock && args.block_structure[0] == 128 &&
                    args.block_structure[1] == 128,
                "args %s: FP8 block re-encode needs float8 block [128,128]",
                args.to_string().c_str());
  const int64_t scale_cols = (cols + 127) / 128;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      w[r * cols + c] = e4m3_decode(codes[r * cols + c]) *
                        e8m0_decode(scales_e8m0[(r / 128) * scale_cols + c / 128]);
    }
  }
  if (args.scale_dtype != ScaleDType::kE8m0) return quantizer_rtn(args, w.data(), rows, cols);
  // Keep the source scales: w / 2^e is the source e4m3 value exactly, so the codes round-trip.
  QParams qp;
  qp.rows = rows;
  qp.cols = cols;
  qparams_shape(args, rows, cols, &qp.scale_rows, &qp.scale_cols);
  const size_t n = static_cast<size_t>(qp.scale_rows * qp.scale_cols);
  qp.scale_e8m0.assign(scales_e8m0, scales_e8m0 + n);
  qp.scale.resize(n);
  qp.zero_point.assign(n, 0.0f);
  for (size_t i = 0; i < n; ++i) qp.scale[i] = e8m0_decode(qp.scale_e8m0[i]);
  return quantizer_rtn_with(args, qp, w.data());
}

RtnResult quantizer_mxfp4_to_int4(const QuantArgs& args, const uint8_t* nibbles,
                                  const uint8_t* scales_e8m0, int64_t rows, int64_t cols) {
  args.check();
  DSV4_CHECK_IN("quant",
                args.type == QuantType::kInt && args.num_bits == 4 && args.symmetric &&
                    args.strategy == Strategy::kGroup && args.group_size == 32,
                "args %s: MXFP4 -> INT4 needs int4 symmetric group 32", args.to_string().c_str());
  quant_args_check_shape(args, rows, cols);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      w[r * cols + c] =
          e2m1_decode(nibbles[r * cols + c]) * e8m0_decode(scales_e8m0[r * (cols / 32) + c / 32]);
    }
  }
  // Same groups as the source, so each INT4 scale sees exactly one MX group: absmax/7.5 with the
  // min-max observer, or the MSE grid search's shrunk range (args.mse) with the MSE observer.
  return quantizer_rtn(args, w.data(), rows, cols);
}

}  // namespace dsv4::quant

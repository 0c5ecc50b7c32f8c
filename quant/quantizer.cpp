// quantizer.cpp: compressed-tensors calculate_qparams / fake_quantize on the CPU (see
// quantizer.h; spec gptq_and_formats.md §1.6, §1.8, §4.1). Tests: tests/quant/test_quantizer.cpp.
#include "quant/quantizer.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "common/check.h"
#include "common/codec.h"
#include "common/parallel.h"
#include "quant/observer.h"

namespace dsv4::quant {
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

float nvfp4_global_scale(float amax_tensor) { return global_scale_nvfp4(amax_tensor); }

CellQParams qparams_calculate(const QuantArgs& args, float min_val, float max_val,
                              float global_scale) {
  return cell_qparams(cell_args(args), min_val, max_val, global_scale);
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
  return quantize_value(cell_args(args), x, s_eff, zp, deq);
}

float quantizer_code_value(const QuantArgs& args, int32_t code) { return code_value(cell_args(args), code); }

float quantizer_dequant_value(const QuantArgs& args, int32_t code, float s_eff, float zp) {
  return dequant_value(cell_args(args), code, s_eff, zp);
}

void quantizer_fake_quant_column(const QuantArgs& args, const QParams& qp, int64_t col,
                                 const float* w_col, int64_t rows, int32_t* codes, float* deq) {
  DSV4_CHECK_IN("quant", rows == qp.rows && col >= 0 && col < qp.cols,
                "column %lld of %lld rows: qparams are for weight [%lld, %lld]",
                static_cast<long long>(col), static_cast<long long>(rows),
                static_cast<long long>(qp.rows), static_cast<long long>(qp.cols));
  const int64_t scale_col = qp.scale_col(args, col);
  const CellArgs ca = cell_args(args);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t cell = qp.scale_row(args, r) * qp.scale_cols + scale_col;
    float d;
    const int32_t c = quantize_value(ca, w_col[r], qparams_effective_scale(qp, cell),
                                     qp.zero_point[static_cast<size_t>(cell)], &d);
    if (codes != nullptr) codes[r] = c;
    if (deq != nullptr) deq[r] = d;
  }
}

RtnResult quantizer_rtn_with(const QuantArgs& args, const QParams& qp, const float* w, QuotientArith arith) {
  RtnResult out;
  out.qparams = qp;
  const int64_t rows = qp.rows, cols = qp.cols;
  out.codes.resize(static_cast<size_t>(rows * cols));
  out.dequant.resize(static_cast<size_t>(rows * cols));
  // Row-major: every value is rounded on its own (quantizer_fake_quant_column's arithmetic), so
  // the order is free; walking columns of a row-major weight missed the cache on every value
  // (seconds for a full-width attention matrix).
  std::vector<int64_t> scale_col(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) scale_col[static_cast<size_t>(c)] = qp.scale_col(args, c);
  const CellArgs ca = cell_args(args, arith);
  // Rows in blocks on all cores (a full-width attention matrix is 33M values): each value's
  // rounding is independent of the others, so the result does not depend on the split.
  const int64_t block = 64;
  parallel_for(static_cast<size_t>((rows + block - 1) / block), 0, [&](size_t b) {
    const int64_t r1 = std::min(rows, (static_cast<int64_t>(b) + 1) * block);
    for (int64_t r = static_cast<int64_t>(b) * block; r < r1; ++r) {
      const int64_t cell_row = qp.scale_row(args, r) * qp.scale_cols;
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t cell = cell_row + scale_col[static_cast<size_t>(c)];
        const size_t i = static_cast<size_t>(r * cols + c);
        out.codes[i] = quantize_value(ca, w[i], qparams_effective_scale(qp, cell),
                                      qp.zero_point[static_cast<size_t>(cell)], &out.dequant[i]);
      }
    }
  });
  return out;
}

RtnResult quantizer_rtn(const QuantArgs& args, const float* w, int64_t rows, int64_t cols, QuotientArith arith) {
  args.check();
  quant_args_check_shape(args, rows, cols);
  return quantizer_rtn_with(args, observer_qparams(args, w, rows, cols), w, arith);
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
  parallel_for(static_cast<size_t>(rows), 0, [&](size_t rr) {
    const int64_t r = static_cast<int64_t>(rr);
    for (int64_t c = 0; c < cols; ++c) {
      w[r * cols + c] = e4m3_decode(codes[r * cols + c]) * e8m0_decode(scales_e8m0[(r / 128) * scale_cols + c / 128]);
    }
  });
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

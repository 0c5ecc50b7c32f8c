// int_requant.cpp: the dsv4_int converter's scale rules (see int_requant.h).
#include "quant/int_requant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "common/check.h"
#include "common/codec.h"

namespace dsv4::quant {
namespace {

float bf16_of(float x) { return bf16_decode(bf16_encode(x)); }

// One qparam cell: the element offsets of a channel, group or block of a row-major weight.
struct Cell {
  int64_t r0, r1, c0, c1;
};

Cell cell_of(const QuantArgs& a, int64_t sr, int64_t sc, int64_t rows, int64_t cols) {
  switch (a.strategy) {
    case Strategy::kChannel: return {sr, sr + 1, 0, cols};
    case Strategy::kBlock: {
      const int64_t bh = a.block_structure[0], bw = a.block_structure[1];
      return {sr * bh, std::min(rows, (sr + 1) * bh), sc * bw, std::min(cols, (sc + 1) * bw)};
    }
    default: return {sr, sr + 1, sc * a.group_size, (sc + 1) * a.group_size};
  }
}

float code_of(float x, float s, float qmin, float qmax) { return std::clamp(std::nearbyint(x / s), qmin, qmax); }

// Squared error of the cell under scale s, summed in fp32 in row-major order.
float cell_error(const float* w, int64_t cols, const Cell& c, float s, float qmin, float qmax) {
  float err = 0.0f;
  for (int64_t r = c.r0; r < c.r1; ++r) {
    for (int64_t k = c.c0; k < c.c1; ++k) {
      const float x = w[r * cols + k];
      const float d = code_of(x, s, qmin, qmax) * s - x;
      err += d * d;
    }
  }
  return err;
}

}  // namespace

float requant_divisor(int i) { return 5.0f + 0.25f * static_cast<float>(i); }

RtnResult int_requant(const QuantArgs& a, DivisorRule rule, const float* w, int64_t rows, int64_t cols) {
  a.check();
  DSV4_CHECK_IN("quant",
                a.type == QuantType::kInt && a.symmetric &&
                    (a.strategy == Strategy::kChannel || a.strategy == Strategy::kGroup || a.strategy == Strategy::kBlock),
                "args %s: the dsv4_int scale rules need a symmetric int channel, group or block scheme",
                a.to_string().c_str());
  quant_args_check_shape(a, rows, cols);
  const float qmin = a.qmin(), qmax = a.qmax();
  RtnResult out;
  QParams& qp = out.qparams;
  qp.rows = rows;
  qp.cols = cols;
  qparams_shape(a, rows, cols, &qp.scale_rows, &qp.scale_cols);
  qp.scale.resize(static_cast<size_t>(qp.scale_rows * qp.scale_cols));
  qp.zero_point.assign(qp.scale.size(), 0.0f);
  out.codes.resize(static_cast<size_t>(rows * cols));
  out.dequant.resize(out.codes.size());
  for (int64_t sr = 0; sr < qp.scale_rows; ++sr) {
    for (int64_t sc = 0; sc < qp.scale_cols; ++sc) {
      const Cell c = cell_of(a, sr, sc, rows, cols);
      float absmax = 0.0f;
      for (int64_t r = c.r0; r < c.r1; ++r) {
        for (int64_t k = c.c0; k < c.c1; ++k) absmax = std::max(absmax, std::fabs(w[r * cols + k]));
      }
      absmax = std::max(absmax, FLT_MIN);
      float s = 0.0f;  // the scale the codes are rounded against
      if (rule == DivisorRule::kSearch) {
        float best_err = 0.0f;
        for (int i = 0; i < kRequantDivisorCount; ++i) {
          const float cand = bf16_of(absmax / requant_divisor(i));
          const float err = cell_error(w, cols, c, cand, qmin, qmax);
          if (i == 0 || err < best_err) best_err = err, s = cand;
        }
        s = std::max(s, FLT_MIN);
      } else {
        s = absmax / (rule == DivisorRule::kQmax ? qmax : -qmin);
      }
      const float stored = bf16_of(s);
      qp.scale[static_cast<size_t>(sr * qp.scale_cols + sc)] = stored;
      for (int64_t r = c.r0; r < c.r1; ++r) {
        for (int64_t k = c.c0; k < c.c1; ++k) {
          // Through the integer, so a small negative weight's -0 code decodes to +0 as stored.
          const int32_t q = static_cast<int32_t>(code_of(w[r * cols + k], s, qmin, qmax));
          out.codes[static_cast<size_t>(r * cols + k)] = q;
          out.dequant[static_cast<size_t>(r * cols + k)] = bf16_of(static_cast<float>(q) * stored);
        }
      }
    }
  }
  return out;
}

}  // namespace dsv4::quant

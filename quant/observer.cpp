// observer.cpp: memoryless min-max and MSE grid-search observers (see observer.h; spec
// gptq_and_formats.md §1.9). Tests: tests/quant/test_observer.cpp.
#include "quant/observer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/check.h"

namespace dsv4::quant {
namespace {

// Visits every element with its qparam cell index and its column.
template <typename F>
void for_each_cell_element(const QuantArgs& args, const QParams& grid, const float* w, F&& f) {
  for (int64_t r = 0; r < grid.rows; ++r) {
    const int64_t cell_row = grid.scale_row(args, r) * grid.scale_cols;
    for (int64_t c = 0; c < grid.cols; ++c) {
      f(static_cast<size_t>(cell_row + grid.scale_col(args, c)), w[r * grid.cols + c], c);
    }
  }
}

QParams empty_grid(const QuantArgs& args, int64_t rows, int64_t cols) {
  QParams g;
  g.rows = rows;
  g.cols = cols;
  qparams_shape(args, rows, cols, &g.scale_rows, &g.scale_cols);
  return g;
}

}  // namespace

MinMaxStats observer_minmax(const QuantArgs& args, const float* w, int64_t rows, int64_t cols) {
  args.check();
  quant_args_check_shape(args, rows, cols);
  const QParams grid = empty_grid(args, rows, cols);
  const size_t n = static_cast<size_t>(grid.scale_rows * grid.scale_cols);
  MinMaxStats st;
  st.min_vals.assign(n, std::numeric_limits<float>::infinity());
  st.max_vals.assign(n, -std::numeric_limits<float>::infinity());
  float amax = 0.0f;
  for_each_cell_element(args, grid, w, [&](size_t cell, float x, int64_t) {
    st.min_vals[cell] = std::min(st.min_vals[cell], x);
    st.max_vals[cell] = std::max(st.max_vals[cell], x);
    amax = std::max(amax, std::fabs(x));
  });
  st.amax_tensor = amax;
  return st;
}

MinMaxStats observer_mse(const QuantArgs& args, const float* w, int64_t rows, int64_t cols, const float* col_weights) {
  MinMaxStats base = observer_minmax(args, w, rows, cols);
  const QParams grid = empty_grid(args, rows, cols);
  const size_t n = base.min_vals.size();
  const MseOptions& o = args.mse;
  std::vector<float> min0(n), max0(n);
  for (size_t i = 0; i < n; ++i) {
    min0[i] = base.min_vals[i] * o.expand;
    max0[i] = base.max_vals[i] * o.expand;
  }
  // Starting from the (expanded) min-max means maxshrink = 0 or grid = 1 returns min-max itself.
  MinMaxStats best{min0, max0, base.amax_tensor};
  std::vector<double> best_err(n, std::numeric_limits<double>::infinity());
  std::vector<double> err(n);
  std::vector<float> s(n), zp(n);
  const int steps = static_cast<int>(o.maxshrink * static_cast<float>(o.grid));
  const CellArgs ca = cell_args(args);
  int no_improve = 0;
  for (int i = 0; i < steps; ++i) {
    const float p = 1.0f - static_cast<float>(i) / static_cast<float>(o.grid);
    for (size_t k = 0; k < n; ++k) {
      // No global scale in the search: for tensor_group the e4m3 scale rounding is skipped.
      const CellQParams q = cell_qparams(ca, p * min0[k], p * max0[k], 0.0f);
      s[k] = q.scale;
      zp[k] = q.zero_point;
    }
    std::fill(err.begin(), err.end(), 0.0);
    for_each_cell_element(args, grid, w, [&](size_t cell, float x, int64_t c) {
      float d;
      quantize_value(ca, x, s[cell], zp[cell], &d);
      const double e = std::pow(static_cast<double>(std::fabs(d - x)), static_cast<double>(o.norm));
      err[cell] += col_weights ? static_cast<double>(col_weights[c]) * e : e;
    });
    bool improved = false;
    for (size_t k = 0; k < n; ++k) {
      if (err[k] < best_err[k]) {
        best_err[k] = err[k];
        best.min_vals[k] = p * min0[k];
        best.max_vals[k] = p * max0[k];
        improved = true;
      }
    }
    if (improved) {
      no_improve = 0;
    } else if (++no_improve >= o.patience) {
      break;
    }
  }
  return best;
}

QParams observer_qparams(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                         float amax_tensor) {
  const MinMaxStats st = args.observer == ObserverKind::kMse ? observer_mse(args, w, rows, cols)
                                                              : observer_minmax(args, w, rows, cols);
  return qparams_from_minmax(args, rows, cols, st.min_vals, st.max_vals,
                             amax_tensor > 0.0f ? amax_tensor : st.amax_tensor);
}

QParams observer_qparams_weighted(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                                  const float* col_weights, float amax_tensor) {
  DSV4_CHECK_IN("quant", col_weights != nullptr, "weighted observer without column weights");
  const MinMaxStats st = observer_mse(args, w, rows, cols, col_weights);
  return qparams_from_minmax(args, rows, cols, st.min_vals, st.max_vals,
                             amax_tensor > 0.0f ? amax_tensor : st.amax_tensor);
}

std::vector<double> observer_cell_error(const QuantArgs& args, const QParams& qp, const float* w,
                                        float norm) {
  std::vector<double> err(qp.scale.size(), 0.0);
  const CellArgs ca = cell_args(args);
  for_each_cell_element(args, qp, w, [&](size_t cell, float x, int64_t) {
    float d;
    quantize_value(ca, x, qparams_effective_scale(qp, static_cast<int64_t>(cell)), qp.zero_point[cell], &d);
    err[cell] += std::pow(static_cast<double>(std::fabs(d - x)), static_cast<double>(norm));
  });
  return err;
}

}  // namespace dsv4::quant

// gptq_refine.cpp: coordinate descent after GPTQ (see gptq_refine.h).
// Tests: tests/quant/test_gptq_refine.cpp.
#include "quant/gptq_refine.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace dsv4::quant {
namespace {

// One row: e = q − w (double), g = e·Hd kept up to date as weights change. Returns the row's
// objective e·Hd·eᵀ before and after, and counts changed codes.
struct RowResult {
  double before = 0.0, after = 0.0;
  int64_t changed = 0;
  int passes = 0;
};

RowResult refine_row(const QuantArgs& args, const QParams& qp, const std::vector<int32_t>& g_idx, const float* wz,
                     int64_t r, int64_t cols, const std::vector<double>& hd, int passes, int32_t* codes, float* deq) {
  std::vector<double> e(static_cast<size_t>(cols)), g(static_cast<size_t>(cols), 0.0);
  for (int64_t c = 0; c < cols; ++c) e[c] = static_cast<double>(deq[c]) - wz[c];
  for (int64_t k = 0; k < cols; ++k) {
    if (e[k] == 0.0) continue;
    const double* hk = &hd[static_cast<size_t>(k * cols)];
    for (int64_t c = 0; c < cols; ++c) g[c] += e[k] * hk[c];
  }
  RowResult out;
  for (int64_t c = 0; c < cols; ++c) out.before += e[c] * g[c];
  const int64_t cell_row = qp.scale_row(args, r) * qp.scale_cols;
  for (int p = 0; p < passes; ++p) {
    ++out.passes;
    int64_t changed = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const double hjj = hd[static_cast<size_t>(j * cols + j)];
      const double target = wz[j] - (g[j] - e[j] * hjj) / hjj;
      const int64_t cell = cell_row + (g_idx.empty() ? qp.scale_col(args, j) : g_idx[static_cast<size_t>(j)]);
      float d = 0.0f;
      const int32_t code = quantizer_quantize_value(args, static_cast<float>(target), qparams_effective_scale(qp, cell),
                                                    qp.zero_point[static_cast<size_t>(cell)], &d);
      const double delta = static_cast<double>(d) - deq[j];
      // f changes by δ·(2 g_j + δ Hd_jj); keep only a strict decrease.
      if (delta == 0.0 || delta * (2.0 * g[j] + delta * hjj) >= 0.0) continue;
      codes[j] = code;
      deq[j] = d;
      e[j] += delta;
      const double* hj = &hd[static_cast<size_t>(j * cols)];
      for (int64_t c = 0; c < cols; ++c) g[c] += delta * hj[c];
      ++changed;
    }
    out.changed += changed;
    if (changed == 0) break;
  }
  for (int64_t c = 0; c < cols; ++c) out.after += e[c] * g[c];
  return out;
}

}  // namespace

GptqRefineStats gptq_refine(const QuantArgs& args, const QParams& qp, const std::vector<int32_t>& g_idx,
                            const float* w, int64_t rows, int64_t cols, const float* h, double damp,
                            const std::vector<int32_t>& dead, int passes, int32_t* codes, float* dequant) {
  DSV4_CHECK_IN("gptq", w && h && codes && dequant && rows > 0 && cols > 0 && passes >= 0,
                "refinement of a null or empty weight (%lld x %lld, %d passes)", static_cast<long long>(rows),
                static_cast<long long>(cols), passes);
  DSV4_CHECK_IN("gptq", g_idx.empty() || g_idx.size() == static_cast<size_t>(cols), "g_idx has %zu entries for %lld columns",
                g_idx.size(), static_cast<long long>(cols));
  const size_t n = static_cast<size_t>(cols);
  std::vector<uint8_t> is_dead(n, 0);
  for (const int32_t c : dead) is_dead[static_cast<size_t>(c)] = 1;
  std::vector<double> hd(n * n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) hd[i * n + j] = is_dead[i] || is_dead[j] ? 0.0 : static_cast<double>(h[i * n + j]);
    hd[i * n + i] = (is_dead[i] ? 1.0 : hd[i * n + i]) + damp;
  }
  GptqRefineStats st;
  std::vector<float> wz(n);
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < n; ++c) wz[c] = is_dead[c] ? 0.0f : w[r * cols + static_cast<int64_t>(c)];
    const RowResult rr = refine_row(args, qp, g_idx, wz.data(), r, cols, hd, passes, codes + r * cols, dequant + r * cols);
    st.loss_before += rr.before / 2.0;
    st.loss_after += rr.after / 2.0;
    st.codes_changed += rr.changed;
    st.passes_run = std::max(st.passes_run, rr.passes);
  }
  return st;
}

}  // namespace dsv4::quant

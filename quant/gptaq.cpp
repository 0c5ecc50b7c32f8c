// gptaq.cpp: GPTAQ's residual matrix (see gptaq.h). Tests: tests/quant/test_gptaq.cpp.
#include "quant/gptaq.h"

#include "common/check.h"

namespace dsv4::quant {

std::vector<float> gptaq_residual(const float* dxxt, int64_t cols, const std::vector<int32_t>& perm,
                                  const std::vector<int32_t>& dead, const float* u, float alpha) {
  DSV4_CHECK_IN("gptq", dxxt && u && cols > 0 && perm.size() == static_cast<size_t>(cols),
                "GPTAQ residual of a null or mis-sized input (%lld columns, %zu permuted)",
                static_cast<long long>(cols), perm.size());
  const size_t n = static_cast<size_t>(cols);
  std::vector<uint8_t> is_dead(n, 0);
  for (const int32_t c : dead) is_dead[static_cast<size_t>(c)] = 1;
  // C in permuted order, dead columns (inputs whose weight GPTQ zeroes) taken as zero.
  std::vector<double> c(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const int64_t oi = perm[i];
    for (size_t j = 0; j < n; ++j) {
      const int64_t oj = perm[j];
      if (!is_dead[static_cast<size_t>(oj)]) c[i * n + j] = dxxt[oi * cols + oj];
    }
  }
  // A = triu₁(C Uᵀ): A[i][k] = Σ_{j ≥ k} C[i][j] U[k][j], kept for k > i only.
  std::vector<double> a(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = i + 1; k < n; ++k) {
      double s = 0.0;
      for (size_t j = k; j < n; ++j) s += c[i * n + j] * static_cast<double>(u[k * n + j]);
      a[i * n + k] = s;
    }
  }
  // P = α · A U: P[i][j] = Σ_{i < k ≤ j} A[i][k] U[k][j].
  std::vector<float> p(n * n, 0.0f);
  std::vector<double> row(n);
  for (size_t i = 0; i < n; ++i) {
    std::fill(row.begin(), row.end(), 0.0);
    for (size_t k = i + 1; k < n; ++k) {
      const double aik = a[i * n + k];
      if (aik == 0.0) continue;
      for (size_t j = k; j < n; ++j) row[j] += aik * static_cast<double>(u[k * n + j]);
    }
    for (size_t j = i + 1; j < n; ++j) p[i * n + j] = static_cast<float>(alpha * row[j]);
  }
  return p;
}

void gptaq_cross_add(const float* x, const float* x_full, int64_t rows, int64_t cols, float* c) {
  DSV4_CHECK_IN("gptq", (x && x_full && c) || rows == 0, "GPTAQ ΔX·Xᵀ of null rows (%lld x %lld)",
                static_cast<long long>(rows), static_cast<long long>(cols));
  std::vector<float> d(static_cast<size_t>(cols));
  for (int64_t t = 0; t < rows; ++t) {
    const float* xt = x + t * cols;
    const float* ft = x_full + t * cols;
    for (int64_t i = 0; i < cols; ++i) d[static_cast<size_t>(i)] = ft[i] - xt[i];
    for (int64_t i = 0; i < cols; ++i) {
      const float di = d[static_cast<size_t>(i)];
      if (di == 0.0f) continue;  // X̃ = X on this entry: nothing to add (the usual case upstream of any quantized layer)
      float* ci = c + i * cols;
      for (int64_t j = 0; j < cols; ++j) ci[j] += di * xt[j];
    }
  }
}

}  // namespace dsv4::quant

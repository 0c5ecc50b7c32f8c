// cholesky_batched.cpp: see cholesky_batched.h. Column-major throughout: element (i, j) of an n×n
// matrix sits at j·n + i.
#include "quant/cholesky_batched.h"

#include <cmath>
#include <vector>

#include "common/check.h"

namespace dsv4::quant {
namespace {

// L of one matrix (lower, column-major; the upper triangle is left untouched). False when a pivot
// is not > 0 (NaN included).
bool cholesky_lower_colmajor(const double* a, int64_t n, double* l) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= l[k * n + j] * l[k * n + j];
    if (!(d > 0.0)) return false;
    const double ljj = std::sqrt(d);
    l[j * n + j] = ljj;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[j * n + i];
      for (int64_t k = 0; k < j; ++k) s -= l[k * n + i] * l[k * n + j];
      l[j * n + i] = s / ljj;
    }
  }
  return true;
}

}  // namespace

void cholesky_inverse_lower_batched_reference(const double* a, double* inv, int count, int64_t n, int* failed) {
  DSV4_CHECK_IN("gptq", count >= 0 && n > 0, "batched Cholesky of %d matrices of %lld", count,
                static_cast<long long>(n));
  const size_t per = static_cast<size_t>(n * n);
  std::vector<double> l(per);
  for (int b = 0; b < count; ++b) {
    const double* ab = a + b * per;
    double* m = inv + b * per;
    failed[b] = 0;
    if (!cholesky_lower_colmajor(ab, n, l.data())) {
      failed[b] = 1;
      continue;
    }
    // Column j of M = L⁻¹ solves L·m = e_j: zero above row j, forward substitution below it.
    for (int64_t j = 0; j < n; ++j) {
      double* mj = m + j * n;
      for (int64_t i = 0; i < j; ++i) mj[i] = 0.0;
      mj[j] = 1.0 / l[j * n + j];
      for (int64_t i = j + 1; i < n; ++i) {
        double s = 0.0;
        for (int64_t k = j; k < i; ++k) s += l[k * n + i] * mj[k];
        mj[i] = -s / l[i * n + i];
      }
    }
    for (size_t x = 0; x < per; ++x) {
      if (!std::isfinite(m[x])) {
        failed[b] = 1;
        break;
      }
    }
  }
}

}  // namespace dsv4::quant

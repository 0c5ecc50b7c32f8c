// cholesky_batched.cpp: see cholesky_batched.h. Column-major throughout: element (i, j) of an n×n
// matrix sits at j·n + i.
#include "quant/cholesky_batched.h"

#include <cmath>
#include <vector>

#include "common/check.h"
#include "quant/cholesky.h"

namespace dsv4::quant {

// Each matrix through the one-matrix reference (quant/cholesky.h, row-major): only the lower
// triangle of the column-major input is read, as the GPU's potrf reads it.
void cholesky_inverse_lower_batched_reference(const double* a, double* inv, int count, int64_t n, int* failed) {
  DSV4_CHECK_IN("gptq", count >= 0 && n > 0, "batched Cholesky of %d matrices of %lld", count,
                static_cast<long long>(n));
  const size_t per = static_cast<size_t>(n * n);
  std::vector<double> rows(per, 0.0), l_inv;
  for (int b = 0; b < count; ++b) {
    const double* ab = a + b * per;
    double* m = inv + b * per;
    // Column-major (i, j) at j·n + i: its lower triangle, row-major and mirrored.
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = j; i < n; ++i) rows[i * n + j] = rows[j * n + i] = ab[j * n + i];
    }
    failed[b] = cholesky_inverse_lower_reference(rows, n, &l_inv) ? 0 : 1;
    if (failed[b]) continue;
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < n; ++i) m[j * n + i] = l_inv[i * n + j];
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

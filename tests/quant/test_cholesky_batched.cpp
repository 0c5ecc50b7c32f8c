// test_cholesky_batched.cpp: the CPU reference of the batched Cholesky inverse
// (quant/cholesky_batched.h) on its own: L⁻¹·A·L⁻ᵀ = I within 1e-12 for well-conditioned matrices
// (eigenvalues in [1, 3]: rounding stays at a few n·eps), the zeros above the diagonal, the
// upper triangle never read, a closed form for n = 1 and 2, and the failure flags of matrices
// that are not positive definite.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/rng.h"
#include "quant/cholesky_batched.h"

namespace dsv4::quant {
namespace {

// A = I + QᵀQ/(3n) for a random Q [n, n]: symmetric, eigenvalues in [1, ~3]. Column-major; the
// strict upper triangle holds NaN (it must not be read).
std::vector<double> spd(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> q(static_cast<size_t>(n * n)), a(static_cast<size_t>(n * n));
  for (double& v : q) v = rng.normal();
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += q[i * n + k] * q[j * n + k];
      a[j * n + i] = i < j ? std::numeric_limits<double>::quiet_NaN() : s / (3.0 * n) + (i == j ? 1.0 : 0.0);
    }
  }
  return a;
}

TEST(CholeskyBatchedReference, InverseWhitensTheMatrix) {
  for (const int64_t n : {1, 2, 7, 64}) {
    const std::vector<double> a0 = spd(n, 10 + n), a1 = spd(n, 20 + n);
    std::vector<double> a(a0);
    a.insert(a.end(), a1.begin(), a1.end());
    std::vector<double> inv(a.size());
    std::vector<int> failed(2, -1);
    cholesky_inverse_lower_batched_reference(a.data(), inv.data(), 2, n, failed.data());
    for (int b = 0; b < 2; ++b) {
      ASSERT_EQ(failed[b], 0) << "n " << n << " matrix " << b;
      const double* m = inv.data() + b * n * n;
      const double* ab = a.data() + b * n * n;
      const auto sym = [&](int64_t i, int64_t j) { return i >= j ? ab[j * n + i] : ab[i * n + j]; };
      double worst = 0;
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          if (i < j) {
            EXPECT_EQ(m[j * n + i], 0.0) << "n " << n << " above the diagonal at (" << i << ", " << j << ")";
          }
          double s = 0;  // (M A Mᵀ)(i, j)
          for (int64_t k = 0; k < n; ++k) {
            for (int64_t l = 0; l < n; ++l) s += m[k * n + i] * sym(k, l) * m[l * n + j];
          }
          worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
        }
      }
      EXPECT_LE(worst, 1e-12) << "n " << n << " matrix " << b << ": L⁻¹ A L⁻ᵀ is not I";
    }
  }
  // n = 2 in closed form: A = [[4, 2], [2, 5]] -> L = [[2, 0], [1, 2]], L⁻¹ = [[1/2, 0], [-1/4, 1/2]].
  const std::vector<double> a = {4, 2, std::nan(""), 5};
  std::vector<double> inv(4);
  int failed = -1;
  cholesky_inverse_lower_batched_reference(a.data(), inv.data(), 1, 2, &failed);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(inv, (std::vector<double>{0.5, -0.25, 0.0, 0.5}));
}

TEST(CholeskyBatchedReference, IndefiniteMatricesAreFlaggedAlone) {
  const int64_t n = 6;
  std::vector<double> a;
  for (int b = 0; b < 3; ++b) {
    std::vector<double> m = spd(n, 30 + b);
    if (b == 1) m[3 * n + 3] = -1.0;            // a negative pivot
    if (b == 2) m[4 * n + 5] = 5.0;             // (5, 4) = 5: an indefinite 2x2 minor
    a.insert(a.end(), m.begin(), m.end());
  }
  std::vector<double> inv(a.size());
  std::vector<int> failed(3, -1);
  cholesky_inverse_lower_batched_reference(a.data(), inv.data(), 3, n, failed.data());
  EXPECT_EQ(failed, (std::vector<int>{0, 1, 1}));
}

}  // namespace
}  // namespace dsv4::quant

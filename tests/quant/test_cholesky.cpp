// test_cholesky.cpp: quant/cholesky.h, the fp64 CPU Cholesky chains. On an integer factor L
// (A = L·Lᵀ exact in double): L⁻¹·L = I and L⁻¹ lower; UᵀU·A = I with U upper and a positive
// diagonal; the reversed-matrix identity the GPU preparation relies on (U = J·L_J⁻¹·J with
// J·A·J = L_J·L_Jᵀ, gptq_cuda.cu); and false, not a throw, for indefinite or NaN matrices.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/check.h"
#include "quant/cholesky.h"

namespace dsv4::quant {
namespace {

// A = L·Lᵀ for an integer lower L with positive diagonal, n = 4: every entry an exact integer.
std::vector<double> integer_spd(std::vector<double>* l_out) {
  const int64_t n = 4;
  const std::vector<double> l = {2, 0, 0, 0,  //
                                 1, 3, 0, 0,  //
                                 -1, 2, 1, 0,  //
                                 4, -2, 3, 5};
  std::vector<double> a(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t k = 0; k < n; ++k) a[i * n + j] += l[i * n + k] * l[j * n + k];
    }
  }
  if (l_out) *l_out = l;
  return a;
}

double max_abs_diff_from_identity(const std::vector<double>& p, int64_t n) {
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) worst = std::max(worst, std::fabs(p[i * n + j] - (i == j ? 1.0 : 0.0)));
  }
  return worst;
}

TEST(Cholesky, InverseLowerInvertsTheFactor) {
  const int64_t n = 4;
  std::vector<double> l;
  const std::vector<double> a = integer_spd(&l);
  std::vector<double> m;
  ASSERT_TRUE(cholesky_inverse_lower_reference(a, n, &m));
  std::vector<double> p(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if (j > i) {
        EXPECT_EQ(m[i * n + j], 0.0) << "L⁻¹ must be lower: " << i << ", " << j;
      }
      for (int64_t k = 0; k < n; ++k) p[i * n + j] += m[i * n + k] * l[k * n + j];
    }
  }
  EXPECT_LT(max_abs_diff_from_identity(p, n), 1e-14) << "L⁻¹·L vs I, n = " << n;
  EXPECT_EQ(m[0], 0.5) << "1 / L[0][0]";
}

TEST(Cholesky, UpperOfInverseFactorsTheInverse) {
  const int64_t n = 4;
  const std::vector<double> a = integer_spd(nullptr);
  std::vector<double> u;
  ASSERT_TRUE(cholesky_upper_of_inverse_reference(a, n, &u));
  std::vector<double> p(static_cast<size_t>(n * n), 0.0);  // (UᵀU)·A
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_GT(u[i * n + i], 0.0) << i;
    for (int64_t j = 0; j < n; ++j) {
      if (j < i) {
        EXPECT_EQ(u[i * n + j], 0.0) << "U must be upper: " << i << ", " << j;
      }
      for (int64_t k = 0; k < n; ++k) {
        double utu = 0.0;
        for (int64_t r = 0; r < n; ++r) utu += u[r * n + i] * u[r * n + k];
        p[i * n + j] += utu * a[k * n + j];
      }
    }
  }
  EXPECT_LT(max_abs_diff_from_identity(p, n), 1e-12) << "UᵀU·A vs I, n = " << n;
}

// gptq_prepare_cuda computes U as J·L_J⁻¹·J (L_J the Cholesky factor of the reversed J·A·J):
// one potrf and one trtri instead of the reference's three steps. Same U up to fp64 rounding.
TEST(Cholesky, ReversedInverseLowerIsTheUpperFactorOfTheInverse) {
  const int64_t n = 4;
  const std::vector<double> a = integer_spd(nullptr);
  std::vector<double> rev(a.size()), m, u;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) rev[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)];
  }
  ASSERT_TRUE(cholesky_inverse_lower_reference(rev, n, &m));
  ASSERT_TRUE(cholesky_upper_of_inverse_reference(a, n, &u));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_NEAR(u[i * n + j], m[(n - 1 - i) * n + (n - 1 - j)], 1e-14) << i << ", " << j;
    }
  }
}

TEST(Cholesky, NotPositiveDefiniteIsFalseNotAThrow) {
  std::vector<double> out;
  const std::vector<double> indefinite = {1, 3, 3, 1};  // eigenvalues 4 and -2
  EXPECT_FALSE(cholesky_inverse_lower_reference(indefinite, 2, &out));
  EXPECT_FALSE(cholesky_upper_of_inverse_reference(indefinite, 2, &out));
  const std::vector<double> nan = {std::numeric_limits<double>::quiet_NaN(), 0, 0, 1};
  EXPECT_FALSE(cholesky_inverse_lower_reference(nan, 2, &out));
  EXPECT_FALSE(cholesky_upper_of_inverse_reference(nan, 2, &out));
  EXPECT_THROW(cholesky_inverse_lower_reference(indefinite, 3, &out), Error) << "4 values for a 3x3 matrix";
}

}  // namespace
}  // namespace dsv4::quant

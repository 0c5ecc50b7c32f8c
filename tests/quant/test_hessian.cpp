// test_hessian.cpp: quant/hessian.h. H = 2/n Σ x xᵀ with n = tokens on a hand-computed example;
// merging two partials equals one pass over all tokens (what the distributed reduce relies on);
// zero tokens are flagged; dims that are not a multiple of the 64-wide tile. hessian_error's two
// traces on integer data (exact in double), its zero-denominator rule and its row sum.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/check.h"
#include "quant/hessian.h"

namespace dsv4::quant {
namespace {

TEST(HessianTest, FinalizeIsTwoOverTokensSumXxt) {
  // 3 tokens of dim 2: Σ x xᵀ = [[10, 14], [14, 21]], H = (2/3)·that.
  const std::vector<float> x = {1, 2, 3, 4, 0, -1};
  HessianAccumulator acc(2);
  acc.add(x.data(), 3);
  const HessianResult h = acc.finalize();
  EXPECT_EQ(h.num_tokens, 3);
  EXPECT_FALSE(h.no_tokens);
  ASSERT_EQ(h.h.size(), 4u);
  EXPECT_FLOAT_EQ(h.h[0], 20.0f / 3.0f);
  EXPECT_FLOAT_EQ(h.h[1], 28.0f / 3.0f);
  EXPECT_FLOAT_EQ(h.h[2], 28.0f / 3.0f);
  EXPECT_FLOAT_EQ(h.h[3], 42.0f / 3.0f);
}

TEST(HessianTest, MergeOfTwoHalvesEqualsOnePass) {
  const int64_t d = 70, n = 301;  // 70: a full 64 tile plus a ragged one
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (float& v : x) v = nd(rng);
  HessianAccumulator all(d), a(d), b(d);
  all.add(x.data(), n);
  const int64_t half = 150;
  a.add(x.data(), half);
  b.add(x.data() + half * d, n - half);
  a.merge(b);
  EXPECT_EQ(a.num_tokens(), n);
  const HessianResult ha = a.finalize(), hall = all.finalize();
  double ref_max = 0.0;
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      // Independent double-precision reference.
      double s = 0.0;
      for (int64_t t = 0; t < n; ++t) s += double(x[t * d + i]) * x[t * d + j];
      const double ref = 2.0 * s / n;
      ref_max = std::max(ref_max, std::fabs(ref));
      const size_t k = static_cast<size_t>(i * d + j);
      EXPECT_NEAR(hall.h[k], ref, 1e-4 * (1.0 + std::fabs(ref))) << i << "," << j;
      EXPECT_NEAR(ha.h[k], hall.h[k], 1e-4 * (1.0 + std::fabs(ref))) << i << "," << j;
      EXPECT_EQ(hall.h[k], hall.h[static_cast<size_t>(j * d + i)]);  // exactly symmetric
    }
  }
  EXPECT_GT(ref_max, 1.0);
}

TEST(HessianTest, ZeroTokensAreFlagged) {
  HessianAccumulator acc(8);
  acc.add(nullptr, 0);  // an expert that got no tokens in this batch
  const HessianResult h = acc.finalize();
  EXPECT_TRUE(h.no_tokens);
  EXPECT_EQ(h.num_tokens, 0);
  for (float v : h.h) EXPECT_EQ(v, 0.0f);
}

TEST(HessianTest, BadArgumentsThrow) {
  EXPECT_THROW(HessianAccumulator(0), Error);
  HessianAccumulator a(4), b(5);
  EXPECT_THROW(a.merge(b), Error);
  EXPECT_THROW(a.add(nullptr, 2), Error);
}

// Integer-valued operands, so every product and sum is exact in double and the traces compare
// with ==. H = [[2, 1], [1, 3]]; rows W = (1, 2), (−1, 4); Q = (1, 1), (0, 4): Δ = (0, 1), (−1, 0).
TEST(HessianTest, ErrorTracesOnAnExactExample) {
  const std::vector<float> h = {2, 1, 1, 3};
  const std::vector<float> w = {1, 2, -1, 4};
  const std::vector<float> q = {1, 1, 0, 4};
  const HessianError e = hessian_error(w.data(), q.data(), 2, 2, h.data());
  // Δ: (0,1)·H·(0,1)ᵀ = 3, (−1,0)·H·(−1,0)ᵀ = 2. W: (1,2) -> 1·4 + 2·7 = 18; (−1,4) -> −1·2 + 4·11 = 42.
  EXPECT_EQ(e.delta_trace, 5.0);
  EXPECT_EQ(e.weight_trace, 60.0);
  EXPECT_EQ(e.rel(), 5.0 / 60.0);
  // Rows add: the trace of the two rows is the sum of each row's.
  const HessianError r0 = hessian_error(w.data(), q.data(), 1, 2, h.data());
  const HessianError r1 = hessian_error(w.data() + 2, q.data() + 2, 1, 2, h.data());
  EXPECT_EQ(r0.delta_trace + r1.delta_trace, e.delta_trace);
  EXPECT_EQ(r0.weight_trace + r1.weight_trace, e.weight_trace);
}

TEST(HessianTest, ErrorOfAnEmptyHessianIsZeroNotNan) {
  const std::vector<float> h(9, 0.0f), w = {1, 2, 3}, q = {0, 0, 0};
  const HessianError e = hessian_error(w.data(), q.data(), 1, 3, h.data());
  EXPECT_EQ(e.delta_trace, 0.0);
  EXPECT_EQ(e.weight_trace, 0.0);
  EXPECT_EQ(e.rel(), 0.0) << "tr(WHWᵀ) = 0 (no tokens): reported as 0";
  EXPECT_THROW(hessian_error(nullptr, q.data(), 1, 3, h.data()), Error);
}

}  // namespace
}  // namespace dsv4::quant

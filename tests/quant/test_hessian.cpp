// test_hessian.cpp: quant/hessian.h. H = 2/n Σ x xᵀ with n = tokens on a hand-computed example;
// merging two partials equals one pass over all tokens (what the distributed reduce relies on);
// zero tokens are flagged; dims that are not a multiple of the 64-wide tile.
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

}  // namespace
}  // namespace dsv4::quant

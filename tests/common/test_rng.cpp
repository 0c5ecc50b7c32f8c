// test_rng.cpp: the synthetic-data RNG is reproducible and has the moments it claims.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/rng.h"

namespace dsv4 {
namespace {

TEST(Rng, SameSeedSameStreamDifferentKeyDifferentStream) {
  Rng a(rng_seed_for(7, "layers.0.attn.wq_a.weight"));
  Rng b(rng_seed_for(7, "layers.0.attn.wq_a.weight"));
  Rng c(rng_seed_for(7, "layers.0.attn.wq_b.weight"));
  int equal_to_c = 0;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t x = a.next_u64();
    ASSERT_EQ(x, b.next_u64()) << "draw " << i;
    equal_to_c += (x == c.next_u64());
  }
  EXPECT_EQ(equal_to_c, 0);
}

TEST(Rng, Fnv1aKnownValueAndStreamedInPieces) {
  EXPECT_EQ(hash_fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(hash_fnv1a64("a"), 0xaf63dc4c8601ec8cull);  // the FNV-1a 64 test vector
  EXPECT_EQ(hash_fnv1a64("world", hash_fnv1a64("hello ")), hash_fnv1a64("hello world"));
}

TEST(Rng, KnownFirstValues) {
  // SplitMix64 reference values for seed 0 (the algorithm's published test vector), so a
  // silent change of the generator, which would change every synthetic checkpoint, fails here.
  Rng r(0);
  EXPECT_EQ(r.next_u64(), 0xe220a8397b1dcdafull);
  EXPECT_EQ(r.next_u64(), 0x6e789e6aa1b965f4ull);
  EXPECT_EQ(r.next_u64(), 0x06c45d188009454full);
  EXPECT_EQ(hash_fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(hash_fnv1a64("a"), 0xaf63dc4c8601ec8cull);
}

TEST(Rng, UniformBelowAndNormalMoments) {
  Rng r(42);
  const int n = 200000;
  double sum = 0, sum2 = 0, usum = 0;
  std::vector<int> hist(10, 0);
  for (int i = 0; i < n; ++i) {
    const double z = r.normal();
    sum += z;
    sum2 += z * z;
    const double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    usum += u;
    hist[r.below(10)]++;
  }
  // Tolerances: ~5 standard errors of the estimators at n = 2e5.
  EXPECT_NEAR(sum / n, 0.0, 0.012);
  EXPECT_NEAR(sum2 / n, 1.0, 0.016);
  EXPECT_NEAR(usum / n, 0.5, 0.0035);
  for (int k = 0; k < 10; ++k) EXPECT_NEAR(hist[k], n / 10, 700) << "bucket " << k;
}

TEST(Rng, NormalApproxHasUnitVarianceAndIsBounded) {
  Rng r(3);
  const int n = 200000;
  double sum = 0, sum2 = 0, max_abs = 0;
  for (int i = 0; i < n; ++i) {
    const double z = r.normal_approx();
    sum += z;
    sum2 += z * z;
    max_abs = std::max(max_abs, std::fabs(z));
  }
  EXPECT_NEAR(sum / n, 0.0, 0.012);
  EXPECT_NEAR(sum2 / n, 1.0, 0.012);
  EXPECT_LE(max_abs, 2.0 * std::sqrt(3.0));
  EXPECT_GT(max_abs, 2.5);  // the tails are there
}

}  // namespace
}  // namespace dsv4

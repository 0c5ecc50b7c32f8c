// test_hessian_exact.cpp: HessianExactSum: the same rows split into different partials, added in
// different orders and summed across "ranks" through their normalized limbs give the same bits;
// the result is the correctly summed value to within fp32's last bit; one add is the fp32 Gram
// itself; carries at the 2^20-add threshold keep the value; non-finite and out-of-range entries
// fail.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/check.h"
#include "quant/hessian_exact.h"
#include "quant/hessian_exact_inline.h"

namespace dsv4::quant {
namespace {

constexpr int64_t kDim = 7;

// Blocks of rows at very different scales (1e-6 to 1e3), so that the partial sums round.
std::vector<std::vector<float>> blocks(int count) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<std::vector<float>> out;
  for (int b = 0; b < count; ++b) {
    const float scale = std::pow(10.0f, static_cast<float>(b % 10) - 6.0f);
    std::vector<float> x(static_cast<size_t>((1 + b % 4) * kDim));
    for (float& v : x) v = g(rng) * scale;
    out.push_back(std::move(x));
  }
  return out;
}

int64_t rows_of(const std::vector<float>& x) { return static_cast<int64_t>(x.size()) / kDim; }

TEST(HessianExactSum, AnyGroupingGivesTheSameBits) {
  const auto xs = blocks(24);
  HessianExactSum forward(kDim), backward(kDim);
  for (const auto& x : xs) forward.add(x.data(), rows_of(x));
  for (auto it = xs.rbegin(); it != xs.rend(); ++it) backward.add(it->data(), rows_of(*it));
  // Three "ranks" holding every third block, their normalized limbs summed as integers.
  std::vector<HessianExactSum> ranks(3, HessianExactSum(kDim));
  for (size_t b = 0; b < xs.size(); ++b) ranks[b % 3].add(xs[b].data(), rows_of(xs[b]));
  HessianExactSum reduced = ranks[0];
  int64_t* sum = reduced.normalized_limbs();
  int64_t tokens = ranks[0].num_tokens();
  for (int r = 1; r < 3; ++r) {
    const int64_t* theirs = ranks[static_cast<size_t>(r)].normalized_limbs();
    for (size_t i = 0; i < reduced.limb_count(); ++i) sum[i] += theirs[i];
    tokens += ranks[static_cast<size_t>(r)].num_tokens();
  }
  reduced.set_num_tokens(tokens);
  const HessianAccumulator a = forward.rounded(), b = backward.rounded(), c = reduced.rounded();
  EXPECT_TRUE(a.sum() == b.sum());
  EXPECT_TRUE(a.sum() == c.sum());
  EXPECT_EQ(a.num_tokens(), c.num_tokens());
  // The fp32 accumulator, for contrast, depends on the order here (scales 1e-6..1e3 round).
  HessianAccumulator f(kDim), r(kDim);
  for (const auto& x : xs) f.add(x.data(), rows_of(x));
  for (auto it = xs.rbegin(); it != xs.rend(); ++it) r.add(it->data(), rows_of(*it));
  EXPECT_FALSE(f.sum() == r.sum()) << "pick data whose fp32 sums depend on the order";
}

TEST(HessianExactSum, IsTheSumOfTheFp32GramsToTheLastBit) {
  const auto xs = blocks(24);
  HessianExactSum s(kDim);
  std::vector<double> want(static_cast<size_t>(kDim * kDim), 0.0);
  for (const auto& x : xs) {
    s.add(x.data(), rows_of(x));
    std::vector<float> gram(want.size(), 0.0f);
    hessian_gram_add(x.data(), rows_of(x), kDim, gram.data());
    for (size_t i = 0; i < want.size(); ++i) want[i] += gram[i];  // double: 29 bits more than fp32
  }
  const HessianAccumulator got = s.rounded();
  for (size_t i = 0; i < want.size(); ++i) {
    // Entries below 2^-40 are truncated to 2^-64: far below one fp32 ulp of these sums.
    EXPECT_EQ(got.sum()[i], static_cast<float>(want[i])) << "entry " << i;
  }
}

TEST(HessianExactSum, OneAddIsTheFp32Gram) {
  const auto xs = blocks(4);
  HessianExactSum s(kDim);
  HessianAccumulator f(kDim);
  s.add(xs[3].data(), rows_of(xs[3]));  // scale 1e-3: every entry above 2^-40
  f.add(xs[3].data(), rows_of(xs[3]));
  EXPECT_TRUE(s.rounded().sum() == f.sum());
  EXPECT_EQ(s.rounded().finalize().h, f.finalize().h);
}

TEST(HessianExactSum, CarriesKeepTheValuePastTwoToTheTwentyAdds) {
  HessianExactSum s(1);
  const float x = -3.0f;  // Gram 9, a low limb of 9·2^64 mod 2^42 = 0: use a value with low bits
  const float y = 1.0f + 1.0f / 1024.0f;
  const int64_t adds = (int64_t{1} << 20) + 7;
  for (int64_t k = 0; k < adds; ++k) s.add(k % 2 ? &x : &y, 1);
  const double want = static_cast<double>(adds / 2) * 9.0 + static_cast<double>(adds - adds / 2) * y * y;
  EXPECT_EQ(s.rounded().sum()[0], static_cast<float>(want));
  EXPECT_EQ(s.num_tokens(), adds);
}

TEST(HessianExactSum, NonFiniteAndHugeEntriesFail) {
  HessianExactSum s(1);
  const float nan = std::nanf(""), huge = 2e9f;  // Gram 4e18 > 2^60
  EXPECT_THROW(s.add(&nan, 1), Error);
  EXPECT_THROW(s.add(&huge, 1), Error);
}

// The shared (host/device) conversions against the compiler's 128-bit arithmetic, which the CPU
// sum used before they were shared (and the GPU lacks): the addends' value is the entry's
// fixed-point value, and the rounding is the correctly rounded one, on values of every size.
TEST(HessianExactInline, AddendsAndRoundingMatchTheCompilersInt128) {
  std::mt19937_64 rng(5);
  for (int k = 0; k < 200000; ++k) {
    const int e = static_cast<int>(rng() % 120) - 70;  // 2^-70 .. 2^49
    const float v = std::ldexp(static_cast<float>(rng() % (1u << 24)) / 16777216.0f, e) * (rng() % 2 ? -1.0f : 1.0f);
    int64_t a[3];
    ASSERT_EQ(exact_addend(v, a), 0);
    const ExactI128 got = a[0] + (static_cast<ExactI128>(a[1]) << 42) + (static_cast<ExactI128>(a[2]) << 84);
    const long double want = std::ldexp(static_cast<long double>(v), 64);  // 64-bit mantissa: exact
    ASSERT_EQ(got, static_cast<ExactI128>(want)) << v;  // truncated toward zero below 2^-64
    // A random 126-bit value: limbs of up to 2^42, 2^42 and 2^38 with random signs.
    const int64_t l0 = static_cast<int64_t>(rng() >> 22) - (int64_t{1} << 41);
    const int64_t l1 = static_cast<int64_t>(rng() >> 22) - (int64_t{1} << 41);
    const int64_t l2 = static_cast<int64_t>(rng() >> (26 + rng() % 38)) * (rng() % 2 ? -1 : 1);
    const ExactI128 value = l0 + (static_cast<ExactI128>(l1) << 42) + (static_cast<ExactI128>(l2) << 84);
    int status = 0;
    ASSERT_EQ(exact_round(l0, l1, l2, &status), static_cast<float>(std::ldexp(static_cast<double>(value), -64)));
    ASSERT_EQ(exact_int128_to_double(value), static_cast<double>(value));
    ASSERT_EQ(status, 0);
  }
}

TEST(HessianExactSum, FromLimbsKeepsTheValue) {
  const auto xs = blocks(6);
  HessianExactSum s(kDim);
  for (const auto& x : xs) s.add(x.data(), rows_of(x));
  std::vector<int64_t> limbs(s.normalized_limbs(), s.normalized_limbs() + s.limb_count());
  limbs[0] += int64_t{1} << 42;                                 // the same value, not normalized:
  limbs[static_cast<size_t>(kDim * kDim)] -= 1;                 // one carry moved down
  const HessianExactSum t = HessianExactSum::from_limbs(kDim, limbs, s.num_tokens());
  EXPECT_TRUE(t.rounded().sum() == s.rounded().sum());
  EXPECT_EQ(t.num_tokens(), s.num_tokens());
  EXPECT_THROW(HessianExactSum::from_limbs(kDim, std::vector<int64_t>(5), 1), Error);
}

}  // namespace
}  // namespace dsv4::quant

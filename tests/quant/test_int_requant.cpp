// test_int_requant.cpp: the dsv4_int converter's scale rules (quant/int_requant.h) on small
// matrices whose codes and scales are worked out by hand.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "common/codec.h"
#include "quant/int_requant.h"

namespace dsv4::quant {
namespace {

QuantArgs int4_g32() {
  QuantArgs a;
  a.num_bits = 4;
  a.strategy = Strategy::kGroup;
  a.group_size = 32;
  return a;
}

float bf16_of(float x) { return bf16_decode(bf16_encode(x)); }

TEST(IntRequant, Absmax7RoundsAgainstTheFp32ScaleAndStoresItInBf16) {
  // One group: absmax 7.7 -> fp32 scale 1.1 (not a bf16 value); 3.85 / 1.1 = 3.5 rounds to 4 (even).
  std::vector<float> w(32, 0.0f);
  w[0] = 7.7f, w[1] = -7.7f, w[2] = 3.85f, w[3] = 0.5f;
  const RtnResult r = int_requant(int4_g32(), DivisorRule::kQmax, w.data(), 1, 32);
  const float s32 = 7.7f / 7.0f;
  ASSERT_EQ(r.qparams.scale.size(), 1u);
  EXPECT_EQ(r.qparams.scale[0], bf16_of(s32));
  EXPECT_NE(r.qparams.scale[0], s32);
  EXPECT_EQ(r.codes[0], 7);
  EXPECT_EQ(r.codes[1], -7);
  EXPECT_EQ(r.codes[2], static_cast<int32_t>(std::nearbyint(3.85f / s32)));
  EXPECT_EQ(r.codes[3], 0);
  EXPECT_EQ(r.dequant[0], bf16_of(7.0f * r.qparams.scale[0]));
}

TEST(IntRequant, Absmax8ClampsThePositiveEndpoint) {
  std::vector<float> w(32, 1.0f);
  w[5] = 8.0f, w[6] = -8.0f;
  const RtnResult r = int_requant(int4_g32(), DivisorRule::kNegQmin, w.data(), 1, 32);
  EXPECT_EQ(r.qparams.scale[0], 1.0f);
  EXPECT_EQ(r.codes[5], 7);  // 8 is outside [-8, 7]
  EXPECT_EQ(r.codes[6], -8);
  EXPECT_EQ(r.codes[0], 1);
}

TEST(IntRequant, SearchKeepsTheBf16CandidateWithTheLeastSquaredError) {
  std::vector<float> w(64);
  for (int i = 0; i < 64; ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * (i < 32 ? 3.0f : 0.02f);
  const RtnResult r = int_requant(int4_g32(), DivisorRule::kSearch, w.data(), 1, 64);
  for (int g = 0; g < 2; ++g) {
    float absmax = 0.0f;
    for (int k = 0; k < 32; ++k) absmax = std::max(absmax, std::fabs(w[g * 32 + k]));
    const auto error = [&](float s) {
      float e = 0.0f;
      for (int k = 0; k < 32; ++k) {
        const float x = w[g * 32 + k], d = std::clamp(std::nearbyint(x / s), -8.0f, 7.0f) * s - x;
        e += d * d;
      }
      return e;
    };
    const float chosen = r.qparams.scale[g];
    bool is_candidate = false;
    for (int i = 0; i < kRequantDivisorCount; ++i) {
      const float cand = bf16_of(absmax / requant_divisor(i));
      is_candidate |= cand == chosen;
      EXPECT_LE(error(chosen), error(cand)) << "group " << g << " divisor " << requant_divisor(i);
    }
    EXPECT_TRUE(is_candidate) << "group " << g << ": scale " << chosen;
  }
  EXPECT_EQ(requant_divisor(0), 5.0f);
  EXPECT_EQ(requant_divisor(kRequantDivisorCount - 1), 9.5f);
}

TEST(IntRequant, Int8ChannelAndBlockUseAbsmaxOver127) {
  QuantArgs a;
  a.num_bits = 8;
  a.strategy = Strategy::kChannel;
  std::vector<float> w = {127.0f, -63.5f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};  // [2, 4]; row 1 all zero
  const RtnResult r = int_requant(a, DivisorRule::kQmax, w.data(), 2, 4);
  EXPECT_EQ(r.qparams.scale[0], 1.0f);
  EXPECT_EQ(r.codes[0], 127);
  EXPECT_EQ(r.codes[1], -64);  // -63.5 rounds half to even
  EXPECT_EQ(r.qparams.scale[1], bf16_of(FLT_MIN / 127.0f));  // an all-zero row: absmax clamped to FLT_MIN
  EXPECT_EQ(r.codes[4], 0);
  a.strategy = Strategy::kBlock;
  a.block_structure = {128, 128};
  const RtnResult b = int_requant(a, DivisorRule::kQmax, w.data(), 2, 4);  // one ragged block
  ASSERT_EQ(b.qparams.scale.size(), 1u);
  EXPECT_EQ(b.qparams.scale[0], 1.0f);
  EXPECT_EQ(b.codes, r.codes);
}

}  // namespace
}  // namespace dsv4::quant

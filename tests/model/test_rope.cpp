// test_rope.cpp: the RoPE tables and rotation (model/rope.h): Appendix A's published YaRN numbers
// for the release config, transformers 5.17.0's inv_freq for a small original length (from the
// attention fixture), and the algebra of rope_apply (inverse, trailing dims only, position 0).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/check.h"
#include "common/safetensors.h"
#include "model/rope.h"

namespace dsv4::model {
namespace {

TEST(Rope, FlashCompressedTableMatchesAppendixA) {
  const ModelConfig c = ModelConfig::flash();
  const RopeTable t = rope_table_build(c, /*compressed=*/true, 4);
  ASSERT_EQ(t.rope_dim, 64);
  ASSERT_EQ(t.inv_freq.size(), 32u);
  const double published[] = {1.0, 0.68766, 0.47287, 0.32517};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(t.inv_freq[i], published[i], 1e-5) << "pair " << i;
  EXPECT_NEAR(t.inv_freq[31] / 5.6805e-7, 1.0, 1e-4);
  // Correction range low = 15, high = 25: pairs ≤ 15 keep 160000^(−2i/64), pairs ≥ 25 are divided
  // by the factor 16, the pairs between are a strict blend.
  for (int i = 0; i < 32; ++i) {
    const double base = std::pow(160000.0, -2.0 * i / 64.0);
    if (i <= 15) {
      EXPECT_NEAR(t.inv_freq[i] / base, 1.0, 1e-6) << "pair " << i;
    } else if (i >= 25) {
      EXPECT_NEAR(t.inv_freq[i] / (base / 16.0), 1.0, 1e-6) << "pair " << i;
    } else {
      EXPECT_LT(t.inv_freq[i], base * (1 - 1e-6)) << "pair " << i;
      EXPECT_GT(t.inv_freq[i], base / 16.0 * (1 + 1e-6)) << "pair " << i;
      const double ramp = (i - 15) / 10.0;
      EXPECT_NEAR(t.inv_freq[i] / (base * (1 - ramp) + base / 16.0 * ramp), 1.0, 1e-6) << "pair " << i;
    }
  }
}

TEST(Rope, MainTableIsPlainTheta) {
  const ModelConfig c = ModelConfig::flash();
  const RopeTable t = rope_table_build(c, /*compressed=*/false, 3);
  for (int i = 0; i < 32; ++i)
    EXPECT_NEAR(t.inv_freq[i] / std::pow(10000.0, -2.0 * i / 64.0), 1.0, 1e-6) << "pair " << i;
  // cos/sin are those of pos · inv_freq.
  for (int i = 0; i < 32; ++i) {
    EXPECT_NEAR(t.cos[2 * 32 + i], std::cos(2.0 * t.inv_freq[i]), 1e-6);
    EXPECT_NEAR(t.sin[2 * 32 + i], std::sin(2.0 * t.inv_freq[i]), 1e-6);
  }
}

TEST(Rope, CompressedWithoutYarnIsPlainCompressTheta) {
  ModelConfig c = ModelConfig::flash();
  c.yarn.enabled = false;
  const RopeTable t = rope_table_build(c, true, 1);
  for (int i = 0; i < 32; ++i)
    EXPECT_NEAR(t.inv_freq[i] / std::pow(160000.0, -2.0 * i / 64.0), 1.0, 1e-6) << "pair " << i;
}

// transformers 5.17.0's own main_inv_freq / compress_inv_freq (rope dim 16, original length 64:
// the correction range clamps low to 0), stored by tests/golden/make_attention_fixture.py.
TEST(Rope, SmallOriginalLengthMatchesTransformers) {
  const auto fx = SafetensorsFile::open(std::string(DSV4_SOURCE_DIR) +
                                        "/tests/golden/attention_small_seed7.safetensors");
  ModelConfig c = ModelConfig::tiny();
  c.head_dim = 32;
  c.rope_head_dim = 16;
  c.yarn = YarnScaling{true, 16.0, 64, 32.0, 1.0};
  for (bool compressed : {false, true}) {
    const TensorInfo* info = fx->find(compressed ? "compress_inv_freq" : "main_inv_freq");
    ASSERT_NE(info, nullptr);
    std::vector<float> want(static_cast<size_t>(info->numel()));
    std::memcpy(want.data(), fx->bytes(*info).data(), want.size() * 4);
    const RopeTable t = rope_table_build(c, compressed, 1);
    ASSERT_EQ(t.inv_freq.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(t.inv_freq[i] / want[i], 1.0, 2e-7) << (compressed ? "compress" : "main") << " pair " << i;
  }
}

TEST(Rope, ApplyRotatesOnlyTrailingPairsAndInverts) {
  const ModelConfig c = ModelConfig::flash();
  const RopeTable t = rope_table_build(c, true, 1000);
  std::mt19937 gen(3);
  std::normal_distribution<float> n(0.0f, 1.0f);
  const int64_t dim = 512;
  std::vector<float> v(dim);
  for (float& x : v) x = n(gen);
  for (int64_t pos : {0, 1, 17, 999}) {
    std::vector<float> r = v;
    rope_apply(r.data(), dim, t, pos, false);
    for (int64_t d = 0; d < dim - 64; ++d) ASSERT_EQ(r[d], v[d]) << "pos " << pos << " d " << d;
    if (pos == 0) {
      EXPECT_EQ(r, v) << "position 0 is the identity";
    } else {
      double moved = 0;
      for (int64_t d = dim - 64; d < dim; ++d) moved = std::max(moved, double(std::fabs(r[d] - v[d])));
      EXPECT_GT(moved, 1e-3) << "pos " << pos;
    }
    // Pair norms are preserved, and pair i turns by pos · inv_freq[i].
    for (int i = 0; i < 32; ++i) {
      const float a = v[448 + 2 * i], b = v[448 + 2 * i + 1];
      const double phi = double(float(pos) * float(t.inv_freq[i]));
      EXPECT_NEAR(r[448 + 2 * i], a * std::cos(phi) - b * std::sin(phi), 1e-5);
      EXPECT_NEAR(r[448 + 2 * i + 1], b * std::cos(phi) + a * std::sin(phi), 1e-5);
    }
    rope_apply(r.data(), dim, t, pos, /*inverse=*/true);
    for (int64_t d = 0; d < dim; ++d) ASSERT_NEAR(r[d], v[d], 1e-5) << "pos " << pos << " d " << d;
  }
}

TEST(Rope, RejectsOutOfRangeArguments) {
  const ModelConfig c = ModelConfig::flash();
  const RopeTable t = rope_table_build(c, false, 8);
  std::vector<float> v(512, 1.0f);
  EXPECT_THROW(rope_apply(v.data(), 512, t, 8, false), Error);
  EXPECT_THROW(rope_apply(v.data(), 32, t, 0, false), Error);
  ModelConfig odd = c;
  odd.rope_head_dim = 63;
  EXPECT_THROW(rope_table_build(odd, false, 1), Error);
}

}  // namespace
}  // namespace dsv4::model

// test_turboquant.cpp: the TurboQuant codec (quant/turboquant.h): worked packing examples, the
// codec's own invariants, and upstream's own bytes: tests/golden/turboquant_seed5.safetensors,
// written by tests/golden/make_turboquant_fixture.py with turboquant-plus-vllm 0.13.12's
// checkpoint._compress_tensor (the converter), unpack_indices and PolarQuantTorch.dequantize on
// Debian's torch 1.13 (x86-64, AVX-512 machine).
//
// Expectations, stated before measuring:
//  * codebooks (2, 3, 4 bits) and the seed-42 signs: bit-exact (same formulas; the Lloyd
//    iteration in double rounds to the same floats);
//  * decode of upstream's packed bytes and norms: bit-exact to upstream's dequantize (the same
//    fp32 operations in the same order);
//  * encode: packed bytes identical; norms within 4 ulps (upstream's torch.linalg.norm adds fp32
//    squares in vector-width order, ours adds them in double; see turboquant.h). An index could
//    flip where a rotated value lies within an ulp of a boundary; none does in the fixture.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/safetensors.h"
#include "quant/turboquant.h"
#include "quant/turboquant_gptq.h"

namespace dsv4::quant {
namespace {

std::string fixture_path() { return std::string(DSV4_SOURCE_DIR) + "/tests/golden/turboquant_seed5.safetensors"; }

template <class T>
std::vector<T> read(const SafetensorsFile& fx, const std::string& name, std::vector<int64_t>* shape = nullptr) {
  const TensorInfo* info = fx.find(name);
  EXPECT_NE(info, nullptr) << name;
  if (!info) return {};
  if (shape) *shape = info->shape;
  const auto bytes = fx.bytes(*info);
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

TEST(Turboquant, PacksThreeBitIndicesIntoALittleEndian24BitWord) {
  const TqCodec c(3, 8);
  // Index k sits at bits 3k..3k+2: 1,2,3,4,5,6,7,0 -> 0b000'111'110'101'100'011'010'001.
  const std::vector<uint8_t> p = tq_pack(c, {1, 2, 3, 4, 5, 6, 7, 0});
  ASSERT_EQ(p.size(), 3u);
  const uint32_t word = 1u | 2u << 3 | 3u << 6 | 4u << 9 | 5u << 12 | 6u << 15 | 7u << 18 | 0u << 21;
  EXPECT_EQ(p[0], word & 0xFF);
  EXPECT_EQ(p[1], (word >> 8) & 0xFF);
  EXPECT_EQ(p[2], word >> 16);
  EXPECT_EQ(p[0], 0xD1);  // idx0=1 | idx1=2<<3 | (idx2=3 & 3)<<6, upstream's byte0 formula
  EXPECT_EQ(tq_unpack(c, p.data(), 1), (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 0}));
}

TEST(Turboquant, PacksFourAndTwoBitIndicesLowFirst) {
  const TqCodec c4(4, 8), c2(2, 8);
  const std::vector<int32_t> i4 = {1, 15, 2, 3, 4, 5, 6, 7}, i2 = {1, 2, 3, 0, 3, 3, 0, 1};
  EXPECT_EQ(tq_pack(c4, i4), (std::vector<uint8_t>{0xF1, 0x32, 0x54, 0x76}));
  EXPECT_EQ(tq_pack(c2, i2), (std::vector<uint8_t>{0x39, 0x4F}));  // 1 | 2<<2 | 3<<4 ; 3 | 3<<2 | 0 | 1<<6
  EXPECT_EQ(tq_unpack(c4, tq_pack(c4, i4).data(), 1), i4);
  EXPECT_EQ(tq_unpack(c2, tq_pack(c2, i2).data(), 1), i2);
  EXPECT_THROW(tq_pack(c2, {4, 0, 0, 0, 0, 0, 0, 0}), Error);
}

TEST(Turboquant, RotationIsOrthogonalAndItsOwnInverse) {
  const TqCodec c(3, 128);
  std::vector<float> x(128), y;
  for (int i = 0; i < 128; ++i) x[static_cast<size_t>(i)] = static_cast<float>((i * 37) % 11) - 5.0f;
  y = x;
  c.rotate(y.data());
  EXPECT_NEAR(tq_norm(y.data(), 128), tq_norm(x.data(), 128), 1e-4);
  EXPECT_NE(y, x);
  c.rotate_inverse(y.data());
  for (int i = 0; i < 128; ++i) EXPECT_NEAR(y[static_cast<size_t>(i)], x[static_cast<size_t>(i)], 1e-5) << i;
}

TEST(Turboquant, CodebookIsSymmetricAndRejectsUnsupportedArgs) {
  for (int bits : {2, 3, 4}) {
    const TqCodec c(bits, 128);
    ASSERT_EQ(c.centroids().size(), static_cast<size_t>(1 << bits));
    for (size_t i = 0; i < c.centroids().size(); ++i) {
      EXPECT_NEAR(c.centroids()[i], -c.centroids()[c.centroids().size() - 1 - i], 1e-7) << bits << " " << i;
    }
  }
  // N(0, 1/128): the 3-bit Lloyd–Max outer centroid is 2.152·σ (the classic table).
  EXPECT_NEAR(TqCodec(3, 128).centroids().back() * std::sqrt(128.0f), 2.152f, 1e-3);
  EXPECT_THROW(TqCodec(5, 128), Error);
  EXPECT_THROW(TqCodec(3, 96), Error);
}

TEST(Turboquant, NormCorrectionMakesTheDecodeKeepTheGroupNorm) {
  const TqCodec c(3, 128);
  std::vector<float> w(2 * 200);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * 0.05f;
  const TqResult r = tq_quantize(c, w.data(), 2, 200);  // padded to 256: two groups a row
  ASSERT_EQ(r.indices.size(), 2u * 256u);
  ASSERT_EQ(r.norms.size(), 4u);
  // The first group of each row has no padding: its decode has the input's norm.
  for (int row = 0; row < 2; ++row) {
    const float n_in = tq_norm(w.data() + row * 200, 128), n_out = tq_norm(r.dequant.data() + row * 200, 128);
    EXPECT_NEAR(n_out / n_in, 1.0f, 1e-5) << row;
  }
  const std::vector<float> zero(128, 0.0f);
  const TqResult z = tq_quantize(c, zero.data(), 1, 128);
  EXPECT_EQ(z.norms[0], 0.0f);
  for (float v : z.dequant) EXPECT_EQ(v, 0.0f);
}

std::vector<float> wave(int64_t n, float f, float amp) {
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[static_cast<size_t>(i)] = amp * std::sin(f * static_cast<float>(i * i % 97 + i));
  return w;
}

TEST(TurboquantGptq, IdentityHessianGivesTheDataFreeCodes) {
  const TqCodec c(3, 128);
  const int64_t rows = 4, cols = 256;
  const std::vector<float> w = wave(rows * cols, 0.71f, 0.03f);
  std::vector<float> h(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) h[static_cast<size_t>(i * cols + i)] = 1.0f;
  const GptqResult g = tq_gptq_solve(c, w.data(), rows, cols, h.data(), GptqOptions{});
  const TqResult d = tq_quantize(c, w.data(), rows, cols);
  EXPECT_EQ(g.fallback, GptqFallback::kNone);
  EXPECT_EQ(g.codes, d.indices);
  // Stored norms: the group norm (GPTQ's scale), not the data-free corrected one.
  EXPECT_EQ(g.qparams.scale[0], tq_norm(w.data(), 128));
  EXPECT_NE(g.qparams.scale[0], d.norms[0]);
  EXPECT_EQ(g.dequant, tq_dequantize(c, g.codes, g.qparams.scale, rows, cols));
}

TEST(TurboquantGptq, BeatsTheDataFreeCodesOnACorrelatedHessian) {
  const TqCodec c(3, 128);
  const int64_t rows = 8, cols = 256, tokens = 512;
  const std::vector<float> w = wave(rows * cols, 0.37f, 0.02f);
  // H = XᵀX / tokens of inputs with a strong shared component (correlated columns).
  const std::vector<float> x = wave(tokens * cols, 0.113f, 1.0f), base = wave(tokens, 0.9f, 2.0f);
  std::vector<float> h(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < cols; ++i) {
      const float xi = x[static_cast<size_t>(t * cols + i)] + base[static_cast<size_t>(t)];
      for (int64_t j = 0; j < cols; ++j) {
        h[static_cast<size_t>(i * cols + j)] += xi * (x[static_cast<size_t>(t * cols + j)] + base[static_cast<size_t>(t)]) / tokens;
      }
    }
  }
  const GptqResult g = tq_gptq_solve(c, w.data(), rows, cols, h.data(), GptqOptions{});
  const TqResult d = tq_quantize(c, w.data(), rows, cols);
  const double eg = gptq_rel_error(w.data(), g.dequant.data(), rows, cols, h.data());
  const double ed = gptq_rel_error(w.data(), d.dequant.data(), rows, cols, h.data());
  std::printf("tq3 gptq rel error %.4g, data-free %.4g\n", eg, ed);
  EXPECT_GT(ed, 0.0);
  EXPECT_LT(eg, 0.8 * ed);
  // A Hessian of no tokens: the data-free result as is.
  const std::vector<float> zero(static_cast<size_t>(cols * cols), 0.0f);
  const GptqResult z = tq_gptq_solve(c, w.data(), rows, cols, zero.data(), GptqOptions{});
  EXPECT_EQ(z.fallback, GptqFallback::kRtnNoTokens);
  EXPECT_EQ(z.codes, d.indices);
  EXPECT_EQ(z.qparams.scale, d.norms);
}

class TurboquantFixture : public ::testing::Test {
 protected:
  void SetUp() override { fx_ = SafetensorsFile::open(fixture_path()); }
  std::unique_ptr<SafetensorsFile> fx_;
};

TEST_F(TurboquantFixture, CodebooksAndSignsAreUpstreams) {
  for (int bits : {2, 3, 4}) {
    const TqCodec c(bits, 128);
    const std::string p = "codebook.b" + std::to_string(bits);
    EXPECT_EQ(c.centroids(), read<float>(*fx_, p + ".centroids")) << bits;
    EXPECT_EQ(c.boundaries(), read<float>(*fx_, p + ".boundaries")) << bits;
  }
  const TqCodec c(3, 128);
  EXPECT_EQ(c.signs1(), read<float>(*fx_, "signs1"));
  EXPECT_EQ(c.signs2(), read<float>(*fx_, "signs2"));
}

TEST_F(TurboquantFixture, DecodesUpstreamBytesAndEncodesToThem) {
  const char* cases[] = {"w3_a", "w3_pad", "w4_a", "w2_a", "w3_expert3d", "w3_edge"};
  int64_t worst_ulps = 0, groups = 0;
  for (const std::string name : cases) {
    const int bits = std::stoi(fx_->metadata().at(name + ".bits"));
    const TqCodec c(bits, 128);
    std::vector<int64_t> ws, ps, ns;
    const std::vector<float> w = read<float>(*fx_, name + ".w", &ws);
    const std::vector<uint8_t> packed = read<uint8_t>(*fx_, name + ".tq_packed", &ps);
    const std::vector<float> norms = read<float>(*fx_, name + ".tq_norms", &ns);
    const std::vector<float> ref = read<float>(*fx_, name + ".dequant");
    const int64_t rows = ws[0], cols = ws[1], g = tq_groups_per_row(cols, 128);
    // Layout: packed [rows·groups, 128·bits/8], norms [rows, groups].
    ASSERT_EQ(ps, (std::vector<int64_t>{rows * g, c.group_bytes()})) << name;
    ASSERT_EQ(ns, (std::vector<int64_t>{rows, g})) << name;
    // Decode theirs: bit-exact.
    const std::vector<float> ours = tq_dequantize(c, tq_unpack(c, packed.data(), rows * g), norms, rows, cols);
    ASSERT_EQ(ours.size(), ref.size()) << name;
    int64_t diff = 0;
    for (size_t i = 0; i < ref.size(); ++i) diff += ours[i] != ref[i];
    EXPECT_EQ(diff, 0) << name << ": decoded values differing from upstream's dequantize";
    // Encode ours: their bytes, their norms within a few ulps.
    const TqResult r = tq_quantize(c, w.data(), rows, cols);
    EXPECT_EQ(tq_pack(c, r.indices), packed) << name;
    for (size_t i = 0; i < norms.size(); ++i) worst_ulps = std::max(worst_ulps, ulps(r.norms[i], norms[i]));
    groups += rows * g;
    double energy = 0;
    for (float v : ref) energy += static_cast<double>(v) * v;
    EXPECT_GT(energy, 0.0) << name;
  }
  std::printf("turboquant fixture: %lld groups, norms at most %lld ulps from upstream's\n",
              static_cast<long long>(groups), static_cast<long long>(worst_ulps));
  EXPECT_LE(worst_ulps, 4);
}

}  // namespace
}  // namespace dsv4::quant

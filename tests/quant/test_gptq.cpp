// test_gptq.cpp: quant/gptq.h on seeded small problems. H = I gives exactly RTN (codes and
// dequant, with and without act-order, lazy or upfront qparams); every code on its grid; the
// reported loss equals ½·tr((W−Q)(H+damp)(W−Q)ᵀ); zero-token, indefinite and singular Hessians
// fall back as reported and never produce NaN or a zeroed weight; dead columns; act-order group
// g_idx; and on a correlated Hessian GPTQ beats RTN by at least 2x in relative error (both
// numbers are printed for the record).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "common/check.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/observer.h"
#include "quant/quantizer.h"

namespace dsv4::quant {
namespace {

std::vector<float> random_vec(int64_t n, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<float> identity(int64_t n, float diag = 1.0f) {
  std::vector<float> h(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) h[static_cast<size_t>(i * n + i)] = diag;
  return h;
}

// Correlated activations: latent Z [tokens, cols] with a decaying spectrum 0.9^k, mixed by a
// random Gaussian matrix, plus one outlier channel ×20. Returns H = 2/n Σ x xᵀ.
std::vector<float> correlated_hessian(int64_t tokens, int64_t cols, uint32_t seed) {
  const std::vector<float> z = random_vec(tokens * cols, seed, 1.0f);
  const std::vector<float> mix = random_vec(cols * cols, seed + 1, 1.0f / std::sqrt(float(cols)));
  std::vector<float> x(static_cast<size_t>(tokens * cols), 0.0f);
  std::vector<float> decay(static_cast<size_t>(cols));
  for (int64_t k = 0; k < cols; ++k) decay[k] = std::pow(0.9f, float(k));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < cols; ++k) {
      const float zk = z[t * cols + k] * decay[k];
      if (zk == 0.0f) continue;
      for (int64_t c = 0; c < cols; ++c) x[t * cols + c] += zk * mix[k * cols + c];
    }
    x[t * cols + 3] *= 20.0f;  // outlier channel
  }
  HessianAccumulator acc(cols);
  acc.add(x.data(), tokens);
  return acc.finalize().h;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

void expect_equals_rtn(const QuantArgs& args, const GptqResult& r, const float* w, int64_t rows,
                       int64_t cols) {
  const RtnResult rtn = quantizer_rtn(args, w, rows, cols);
  ASSERT_EQ(r.codes.size(), rtn.codes.size());
  for (size_t i = 0; i < rtn.codes.size(); ++i) {
    ASSERT_EQ(r.codes[i], rtn.codes[i]) << "at " << i;
    ASSERT_EQ(r.dequant[i], rtn.dequant[i]) << "at " << i;
  }
  EXPECT_EQ(r.qparams.scale, rtn.qparams.scale);
  EXPECT_EQ(r.qparams.zero_point, rtn.qparams.zero_point);
}

struct IdentityCase {
  const char* preset;
  ActOrder actorder;
  QParamsTiming timing;
};

class GptqIdentityTest : public ::testing::TestWithParam<IdentityCase> {};

TEST_P(GptqIdentityTest, IdentityHessianEqualsRtnBitExactly) {
  const IdentityCase c = GetParam();
  const QuantArgs args = quant_args_preset(c.preset);
  const int64_t rows = 24, cols = 256;
  const std::vector<float> w = random_vec(rows * cols, 11, 0.02f);
  GptqOptions opts;
  opts.actorder = c.actorder;
  opts.qparams = c.timing;
  const GptqResult r = gptq_solve(args, w.data(), rows, cols, identity(cols).data(), opts);
  EXPECT_EQ(r.fallback, GptqFallback::kNone);
  EXPECT_EQ(r.dead_columns, 0);
  EXPECT_TRUE(r.g_idx.empty());
  expect_equals_rtn(args, r, w.data(), rows, cols);
  // Every code on the grid, and the dequant is what the codes and qparams say.
  for (int32_t q : r.codes) {
    ASSERT_GE(q, args.qmin());
    ASSERT_LE(q, args.qmax());
  }
  EXPECT_EQ(gptq_dequant_with_g_idx(args, r.qparams, r.codes, {}), r.dequant);
}

INSTANTIATE_TEST_SUITE_P(
    Presets, GptqIdentityTest,
    ::testing::Values(IdentityCase{"W4A16", ActOrder::kNone, QParamsTiming::kUpfront},
                      IdentityCase{"W4A16", ActOrder::kStatic, QParamsTiming::kUpfront},
                      IdentityCase{"W4A16", ActOrder::kNone, QParamsTiming::kLazy},
                      IdentityCase{"W4A16_ASYM", ActOrder::kStatic, QParamsTiming::kUpfront},
                      IdentityCase{"W8A16_CHANNEL", ActOrder::kNone, QParamsTiming::kUpfront},
                      IdentityCase{"W8A16_CHANNEL", ActOrder::kStatic, QParamsTiming::kUpfront}));

TEST(GptqTest, LossEqualsHalfTraceWithDampedHessian) {
  // (W−Q) = E·U with E the scaled errors, so Σ E²/2 = ½·tr((W−Q)(UᵀU)⁻¹(W−Q)ᵀ) and UᵀU = H_d⁻¹.
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 16, cols = 128;
  const std::vector<float> w = random_vec(rows * cols, 3, 0.05f);
  const std::vector<float> h = correlated_hessian(512, cols, 5);
  GptqOptions opts;
  opts.block_size = 32;  // exercise the between-block update
  const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
  ASSERT_EQ(r.fallback, GptqFallback::kNone);
  EXPECT_GT(r.damp, 0.0);
  std::vector<float> hd = h;
  for (int64_t i = 0; i < cols; ++i) hd[i * cols + i] += static_cast<float>(r.damp);
  const double tr = hessian_error(w.data(), r.dequant.data(), rows, cols, hd.data()).delta_trace;
  ASSERT_GT(tr, 0.0);
  std::printf("[ gptq ] loss %.6g, half trace %.6g\n", r.loss, tr / 2.0);
  EXPECT_NEAR(r.loss, tr / 2.0, 1e-3 * tr / 2.0);
}

TEST(GptqTest, ZeroTokenHessianIsRtnAndKeepsTheWeight) {
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 8, cols = 128;
  const std::vector<float> w = random_vec(rows * cols, 4, 0.02f);
  const std::vector<float> h(static_cast<size_t>(cols * cols), 0.0f);
  for (ActOrder a : {ActOrder::kNone, ActOrder::kStatic, ActOrder::kGroup}) {
    GptqOptions opts;
    opts.actorder = a;
    const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
    EXPECT_EQ(r.fallback, GptqFallback::kRtnNoTokens);
    EXPECT_EQ(r.dead_columns, 0);
    expect_equals_rtn(args, r, w.data(), rows, cols);
    int nonzero = 0;
    for (int32_t q : r.codes) nonzero += q != 0;
    EXPECT_GT(nonzero, rows * cols / 2);
  }
}

TEST(GptqTest, IndefiniteHessianRaisesDamping) {
  // One eigenvalue -0.5 with mean diag ~1: damp 0.01 and 0.1 fail, 1.0 succeeds.
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 8, cols = 128;
  const std::vector<float> w = random_vec(rows * cols, 6, 0.02f);
  std::vector<float> h = identity(cols);
  h[7 * cols + 7] = -0.5f;
  const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), GptqOptions{});
  EXPECT_EQ(r.fallback, GptqFallback::kDampingRaised);
  EXPECT_EQ(r.damping_escalations, 2);
  EXPECT_NEAR(r.dampening_frac_used, 1.0, 1e-6);
  EXPECT_TRUE(all_finite(r.dequant));
  EXPECT_TRUE(std::isfinite(r.loss));
}

TEST(GptqTest, HopelessHessianFallsBackToRtn) {
  // Negative mean diagonal: every damping makes it worse, so the cap is hit -> RTN.
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 8, cols = 128;
  const std::vector<float> w = random_vec(rows * cols, 8, 0.02f);
  std::vector<float> h = identity(cols);
  h[9 * cols + 9] = -1000.0f;
  const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), GptqOptions{});
  EXPECT_EQ(r.fallback, GptqFallback::kRtnCholeskyFailed);
  EXPECT_TRUE(all_finite(r.dequant));
  expect_equals_rtn(args, r, w.data(), rows, cols);
  // NaN in H also ends in RTN, not NaN weights.
  h[9 * cols + 9] = std::nanf("");
  const GptqResult rn = gptq_solve(args, w.data(), rows, cols, h.data(), GptqOptions{});
  EXPECT_EQ(rn.fallback, GptqFallback::kRtnCholeskyFailed);
  EXPECT_TRUE(all_finite(rn.dequant));
}

TEST(GptqTest, SingularHessianIsFixedByDamping) {
  // Rank-1 H = v vᵀ: singular but PSD, so the default 1% damping makes it positive definite.
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 8, cols = 128;
  const std::vector<float> w = random_vec(rows * cols, 9, 0.02f);
  const std::vector<float> v = random_vec(cols, 10, 1.0f);
  std::vector<float> h(static_cast<size_t>(cols * cols));
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) h[i * cols + j] = v[i] * v[j];
  }
  const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), GptqOptions{});
  EXPECT_TRUE(r.fallback == GptqFallback::kNone || r.fallback == GptqFallback::kDampingRaised)
      << gptq_fallback_name(r.fallback);
  EXPECT_TRUE(all_finite(r.dequant));
  EXPECT_TRUE(std::isfinite(r.loss));
}

TEST(GptqTest, DeadColumnIsZeroedAndReported) {
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 8, cols = 128, tokens = 300, dead = 5;
  const std::vector<float> w = random_vec(rows * cols, 12, 0.02f);
  std::vector<float> x = random_vec(tokens * cols, 13, 1.0f);
  for (int64_t t = 0; t < tokens; ++t) x[t * cols + dead] = 0.0f;
  HessianAccumulator acc(cols);
  acc.add(x.data(), tokens);
  const std::vector<float> h = acc.finalize().h;
  for (ActOrder a : {ActOrder::kNone, ActOrder::kStatic}) {
    GptqOptions opts;
    opts.actorder = a;
    const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
    EXPECT_EQ(r.fallback, GptqFallback::kNone);
    EXPECT_EQ(r.dead_columns, 1);
    for (int64_t row = 0; row < rows; ++row) {
      EXPECT_EQ(r.codes[row * cols + dead], 0);
      EXPECT_EQ(r.dequant[row * cols + dead], 0.0f);
    }
  }
}

TEST(GptqTest, CorrelatedHessianBeatsRtn) {
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 64, cols = 256, tokens = 4096;
  const std::vector<float> w = random_vec(rows * cols, 21, 0.02f);
  const std::vector<float> h = correlated_hessian(tokens, cols, 22);
  const RtnResult rtn = quantizer_rtn(args, w.data(), rows, cols);
  const double e_rtn = gptq_rel_error(w.data(), rtn.dequant.data(), rows, cols, h.data());
  struct Variant {
    const char* name;
    ActOrder a;
    QParamsTiming t;
  };
  for (const Variant& v : {Variant{"static/upfront", ActOrder::kStatic, QParamsTiming::kUpfront},
                           Variant{"none/upfront", ActOrder::kNone, QParamsTiming::kUpfront},
                           Variant{"group/upfront", ActOrder::kGroup, QParamsTiming::kUpfront},
                           Variant{"none/lazy", ActOrder::kNone, QParamsTiming::kLazy},
                           Variant{"group/lazy", ActOrder::kGroup, QParamsTiming::kLazy}}) {
    GptqOptions opts;
    opts.actorder = v.a;
    opts.qparams = v.t;
    const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
    const double e = gptq_rel_error(w.data(), r.dequant.data(), rows, cols, h.data());
    std::printf("[ gptq ] W4A16 g128 rows %lld cols %lld tokens %lld %-15s rel_error gptq %.6f "
                "rtn %.6f ratio %.3f loss %.6g\n",
                static_cast<long long>(rows), static_cast<long long>(cols),
                static_cast<long long>(tokens), v.name, e, e_rtn, e / e_rtn, r.loss);
    EXPECT_EQ(r.fallback, GptqFallback::kNone);
    EXPECT_LE(e, 0.5 * e_rtn) << v.name;
    EXPECT_TRUE(all_finite(r.dequant));
  }
}

TEST(GptqTest, GroupActorderWritesGIdx) {
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 16, cols = 256;
  const std::vector<float> w = random_vec(rows * cols, 31, 0.02f);
  const std::vector<float> h = correlated_hessian(1024, cols, 32);
  GptqOptions opts;
  opts.actorder = ActOrder::kGroup;
  const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
  EXPECT_EQ(r.actorder_used, ActOrder::kGroup);
  ASSERT_EQ(r.g_idx.size(), static_cast<size_t>(cols));
  std::vector<int> count(static_cast<size_t>(cols / args.group_size), 0);
  bool identity_map = true;
  for (int64_t c = 0; c < cols; ++c) {
    ASSERT_GE(r.g_idx[c], 0);
    ASSERT_LT(r.g_idx[c], cols / args.group_size);
    ++count[static_cast<size_t>(r.g_idx[c])];
    identity_map = identity_map && r.g_idx[c] == c / args.group_size;
  }
  for (int n : count) EXPECT_EQ(n, args.group_size);
  EXPECT_FALSE(identity_map);  // the outlier channel and decaying diag permute the columns
  EXPECT_EQ(gptq_dequant_with_g_idx(args, r.qparams, r.codes, r.g_idx), r.dequant);
  // Static order keeps the identity mapping: no g_idx, plain dequant reproduces the result.
  opts.actorder = ActOrder::kStatic;
  const GptqResult s = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
  EXPECT_TRUE(s.g_idx.empty());
  EXPECT_EQ(gptq_dequant_with_g_idx(args, s.qparams, s.codes, {}), s.dequant);
  // Group order on a channel scheme falls back to none, as llm-compressor does.
  opts.actorder = ActOrder::kGroup;
  const QuantArgs ch = quant_args_preset("W8A16_CHANNEL");
  const GptqResult c = gptq_solve(ch, w.data(), rows, cols, h.data(), opts);
  EXPECT_EQ(c.actorder_used, ActOrder::kNone);
  EXPECT_TRUE(c.g_idx.empty());
}

TEST(GptqTest, BadArgumentsThrow) {
  const QuantArgs args = quant_args_preset("W4A16");
  const int64_t rows = 4, cols = 128;
  const std::vector<float> w(static_cast<size_t>(rows * cols), 0.01f);
  const std::vector<float> h = identity(cols);
  GptqOptions opts;
  opts.block_size = 0;
  EXPECT_THROW(gptq_solve(args, w.data(), rows, cols, h.data(), opts), Error);
  opts = GptqOptions{};
  opts.qparams = QParamsTiming::kLazy;  // with the default static order
  EXPECT_THROW(gptq_solve(args, w.data(), rows, cols, h.data(), opts), Error);
  EXPECT_THROW(gptq_solve(args, w.data(), rows, 100, h.data(), GptqOptions{}), Error);
}

}  // namespace
}  // namespace dsv4::quant

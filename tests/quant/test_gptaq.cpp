// test_gptaq.cpp: GPTAQ (quant/gptaq.h, gptq_solve_asymmetric). With X̃ = X (ΔX Xᵀ = 0) it is
// classic GPTQ bit for bit; it matches a direct, unblocked double-precision reference of the
// paper's update; its result does not depend on block_size; and on inputs whose full-precision
// version differs from the quantized path's it lowers ‖W X̃ − Q X‖² against classic GPTQ.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "quant/cholesky.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/observer.h"
#include "quant/quantizer.h"

namespace dsv4::quant {
namespace {

std::vector<float> randn(int64_t n, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// Correlated activations [tokens, cols]: a few latent directions plus noise, one loud channel.
std::vector<float> activations(int64_t tokens, int64_t cols, uint32_t seed) {
  const int64_t k = 8;
  const std::vector<float> z = randn(tokens * k, seed, 1.0f);
  const std::vector<float> mix = randn(k * cols, seed + 1, 1.0f);
  std::vector<float> x = randn(tokens * cols, seed + 2, 0.3f);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t c = 0; c < cols; ++c) x[t * cols + c] += z[t * k + j] * mix[j * cols + c];
    }
    x[t * cols + 5] *= 6.0f;
  }
  return x;
}

struct Problem {
  int64_t rows, cols, tokens;
  std::vector<float> w, x, xt;  // weight, quantized-path input X, full-precision input X̃ ([tokens, cols])
  std::vector<float> h, dxxt;   // 2/n Σ x xᵀ and 2/n Σ (x̃ − x) xᵀ
};

// X̃ = X plus a correlated drift of relative size `drift` (what earlier layers' rounding does).
Problem make_problem(int64_t rows, int64_t cols, int64_t tokens, float drift, uint32_t seed) {
  Problem p{rows, cols, tokens, randn(rows * cols, seed, 0.05f), activations(tokens, cols, seed + 10), {}, {}, {}};
  const std::vector<float> d = activations(tokens, cols, seed + 20);
  p.xt = p.x;
  for (size_t i = 0; i < p.xt.size(); ++i) p.xt[i] += drift * d[i];
  HessianAccumulator acc(cols);
  acc.add(p.x.data(), tokens);
  p.h = acc.finalize().h;
  p.dxxt.assign(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0.0;
      for (int64_t t = 0; t < tokens; ++t) {
        s += static_cast<double>(p.xt[t * cols + i] - p.x[t * cols + i]) * p.x[t * cols + j];
      }
      p.dxxt[i * cols + j] = static_cast<float>(2.0 * s / static_cast<double>(tokens));
    }
  }
  return p;
}

// ‖W X̃ − Q X‖² over the tokens, in double.
double asymmetric_error(const Problem& p, const std::vector<float>& q) {
  double err = 0.0;
  for (int64_t t = 0; t < p.tokens; ++t) {
    for (int64_t r = 0; r < p.rows; ++r) {
      double y = 0.0;
      for (int64_t c = 0; c < p.cols; ++c) {
        y += static_cast<double>(p.w[r * p.cols + c]) * p.xt[t * p.cols + c] -
             static_cast<double>(q[r * p.cols + c]) * p.x[t * p.cols + c];
      }
      err += y * y;
    }
  }
  return err;
}

// The paper's update written directly: no blocks, no permutation, double precision, P from its
// definition α·triu₁(C Uᵀ)·U with full matrix products.
std::vector<int32_t> reference_codes(const QuantArgs& args, const Problem& p, float frac, float alpha) {
  const int64_t n = p.cols;
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += p.h[i * n + i];
  mean /= static_cast<double>(n);
  std::vector<double> hd(p.h.begin(), p.h.end()), u;
  for (int64_t i = 0; i < n; ++i) hd[i * n + i] += frac * mean;
  EXPECT_TRUE(cholesky_upper_of_inverse_reference(hd, n, &u));
  std::vector<double> cu(static_cast<size_t>(n * n), 0.0), pm(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < n; ++k) {
      double s = 0.0;
      for (int64_t j = 0; j < n; ++j) s += p.dxxt[i * n + j] * u[k * n + j];  // (C Uᵀ)[i][k]
      cu[i * n + k] = k > i ? s : 0.0;                                          // triu₁
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t k = 0; k < n; ++k) s += cu[i * n + k] * u[k * n + j];
      pm[i * n + j] = alpha * s;
    }
  }
  const QParams qp = observer_qparams(args, p.w.data(), p.rows, n);
  std::vector<double> w(p.w.begin(), p.w.end());
  std::vector<int32_t> codes(static_cast<size_t>(p.rows * n));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t r = 0; r < p.rows; ++r) {
      const int64_t cell = qp.index(args, r, j);
      float q = 0.0f;
      const double wj = w[r * n + j];
      codes[r * n + j] = quantizer_quantize_value(args, static_cast<float>(wj), qparams_effective_scale(qp, cell),
                                                  qp.zero_point[cell], &q);
      const double e = (wj - q) / u[j * n + j];
      for (int64_t k = j; k < n; ++k) w[r * n + k] -= e * u[j * n + k] - wj * pm[j * n + k];
    }
  }
  return codes;
}

double code_agreement(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return static_cast<double>(same) / static_cast<double>(a.size());
}

TEST(GptaqTest, ZeroCrossTermIsClassicGptqBitForBit) {
  const Problem p = make_problem(16, 128, 512, 0.0f, 1);  // X̃ = X: ΔX Xᵀ is exactly 0
  for (float v : p.dxxt) ASSERT_EQ(v, 0.0f);
  for (const char* preset : {"W4A16", "W4A16_ASYM", "W8A16_CHANNEL"}) {
    for (ActOrder order : {ActOrder::kNone, ActOrder::kStatic}) {
      const QuantArgs args = quant_args_preset(preset);
      GptqOptions opts;
      opts.actorder = order;
      opts.block_size = 32;
      opts.asymmetric = true;
      const GptqResult a = gptq_solve_asymmetric(args, p.w.data(), p.rows, p.cols, p.h.data(), p.dxxt.data(), opts);
      const GptqResult c = gptq_solve(args, p.w.data(), p.rows, p.cols, p.h.data(), GptqOptions{.block_size = 32, .actorder = order});
      EXPECT_EQ(a.codes, c.codes) << preset;
      EXPECT_EQ(a.dequant, c.dequant) << preset;
      EXPECT_EQ(a.qparams.scale, c.qparams.scale) << preset;
      EXPECT_EQ(a.loss, c.loss) << preset;
    }
  }
}

TEST(GptaqTest, MatchesDirectReferenceAndIgnoresBlockSize) {
  const Problem p = make_problem(12, 64, 256, 0.2f, 2);
  const QuantArgs args = quant_args_preset("W4A16");  // group 128 > cols: use channel-wide groups
  QuantArgs a = args;
  a.group_size = 32;
  const std::vector<int32_t> ref = reference_codes(a, p, 0.01f, 1.0f);
  GptqOptions opts;
  opts.actorder = ActOrder::kNone;
  opts.asymmetric = true;
  opts.asymmetric_alpha = 1.0f;
  for (int bs : {8, 64}) {
    opts.block_size = bs;
    const GptqResult r = gptq_solve_asymmetric(a, p.w.data(), p.rows, p.cols, p.h.data(), p.dxxt.data(), opts);
    const double agree = code_agreement(r.codes, ref);
    std::printf("[ gptaq ] block %d: %.4f of codes equal the direct double reference\n", bs, agree);
    // fp32 sweep vs double reference: a value on a rounding boundary may flip and move later ones.
    EXPECT_GE(agree, 0.99) << "block " << bs;
  }
  opts.block_size = 8;
  const GptqResult small = gptq_solve_asymmetric(a, p.w.data(), p.rows, p.cols, p.h.data(), p.dxxt.data(), opts);
  opts.block_size = 64;
  const GptqResult whole = gptq_solve_asymmetric(a, p.w.data(), p.rows, p.cols, p.h.data(), p.dxxt.data(), opts);
  EXPECT_GE(code_agreement(small.codes, whole.codes), 0.99);
  // The asymmetric term is live: GPTAQ's codes differ from classic GPTQ's.
  const GptqResult classic = gptq_solve(a, p.w.data(), p.rows, p.cols, p.h.data(), GptqOptions{.actorder = ActOrder::kNone});
  EXPECT_LT(code_agreement(whole.codes, classic.codes), 0.98);
}

TEST(GptaqTest, LowersTheAsymmetricErrorAgainstClassicGptq) {
  const Problem p = make_problem(32, 128, 1024, 0.15f, 3);
  const QuantArgs args = quant_args_preset("W4A16_ASYM");
  QuantArgs a = args;
  a.group_size = 32;
  const GptqResult classic = gptq_solve(a, p.w.data(), p.rows, p.cols, p.h.data(), GptqOptions{});
  const double e_classic = asymmetric_error(p, classic.dequant);
  for (float alpha : {0.25f, 1.0f}) {
    GptqOptions opts;
    opts.asymmetric = true;
    opts.asymmetric_alpha = alpha;
    const GptqResult g = gptq_solve_asymmetric(a, p.w.data(), p.rows, p.cols, p.h.data(), p.dxxt.data(), opts);
    const double e = asymmetric_error(p, g.dequant);
    std::printf("[ gptaq ] alpha %.2f: ||W X~ - Q X||^2 %.6g, classic GPTQ %.6g (ratio %.3f)\n", alpha, e, e_classic,
                e / e_classic);
    EXPECT_LT(e, e_classic) << "alpha " << alpha;
  }
}

TEST(GptaqTest, RtnFallbackIgnoresTheCrossTerm) {
  const Problem p = make_problem(8, 64, 128, 0.2f, 4);
  const QuantArgs args = quant_args_preset("W8A16_CHANNEL");
  const std::vector<float> zero(static_cast<size_t>(p.cols * p.cols), 0.0f);
  GptqOptions opts;
  opts.asymmetric = true;
  const GptqResult r = gptq_solve_asymmetric(args, p.w.data(), p.rows, p.cols, zero.data(), p.dxxt.data(), opts);
  EXPECT_EQ(r.fallback, GptqFallback::kRtnNoTokens);
  EXPECT_EQ(r.dequant, quantizer_rtn(args, p.w.data(), p.rows, p.cols).dequant);
}

}  // namespace
}  // namespace dsv4::quant

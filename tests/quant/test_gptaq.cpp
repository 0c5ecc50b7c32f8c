// test_gptaq.cpp: GPTAQ (quant/gptaq.h, gptq_solve_asymmetric). With X̃ = X (ΔX Xᵀ = 0) it is
// classic GPTQ bit for bit; it matches a direct, unblocked double-precision reference of the
// paper's update; its result does not depend on block_size; and on inputs whose full-precision
// version differs from the quantized path's it lowers ‖W X̃ − Q X‖² against classic GPTQ. Its
// residual P has a closed form that owes nothing to Cholesky factors: row j is the least-squares
// fit of column j's input drift onto the later columns' inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "quant/cholesky.h"
#include "quant/gptaq.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/observer.h"
#include "quant/quantizer.h"
#include "tests/latent_activations.h"

namespace dsv4::quant {
namespace {

// Correlated activations [tokens, cols]: a few latent directions plus noise, one loud channel.
std::vector<float> activations(int64_t tokens, int64_t cols, uint32_t seed) {
  std::vector<float> x = latent_activations(tokens, cols, 8, 0.3f, seed);
  for (int64_t t = 0; t < tokens; ++t) x[t * cols + 5] *= 6.0f;
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

// Solves a·x = b (n×n, row-major) by Gaussian elimination with partial pivoting, in double.
std::vector<double> solve_dense(std::vector<double> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t c = 0; c < n; ++c) {
    size_t piv = c;
    for (size_t i = c + 1; i < n; ++i) piv = std::fabs(a[i * n + c]) > std::fabs(a[piv * n + c]) ? i : piv;
    for (size_t k = 0; k < n; ++k) std::swap(a[c * n + k], a[piv * n + k]);
    std::swap(b[c], b[piv]);
    for (size_t i = c + 1; i < n; ++i) {
      const double f = a[i * n + c] / a[c * n + c];
      for (size_t k = c; k < n; ++k) a[i * n + k] -= f * a[c * n + k];
      b[i] -= f * b[c];
    }
  }
  std::vector<double> x(n);
  for (size_t i = n; i-- > 0;) {
    double s = b[i];
    for (size_t k = i + 1; k < n; ++k) s -= a[i * n + k] * x[k];
    x[i] = s / a[i * n + i];
  }
  return x;
}

// With α = 1, P[j][j+1:] = Δx_j X_{>j}ᵀ (X_{>j} X_{>j}ᵀ)⁻¹ (Δx_j: row j of ΔX [cols, tokens],
// X_{>j}: rows after j): the change of the later weights that best cancels w_j·Δx_j given the
// columns up to j fixed, which is what the sweep adds after column j. A brute-force least-squares
// solve per row against gptaq_residual from H's U factor.
TEST(GptaqTest, ResidualIsTheLeastSquaresFitOfEachColumnsDrift) {
  const int64_t n = 7, tokens = 40;
  const std::vector<float> xf = randn(n * tokens, 21, 1.0f), dxf = randn(n * tokens, 22, 0.1f);
  std::vector<double> h(static_cast<size_t>(n * n), 0.0), u;
  std::vector<float> c(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double hs = 0.0, cs = 0.0;
      for (int64_t t = 0; t < tokens; ++t) {
        hs += static_cast<double>(xf[i * tokens + t]) * xf[j * tokens + t];
        cs += static_cast<double>(dxf[i * tokens + t]) * xf[j * tokens + t];
      }
      h[i * n + j] = hs;
      c[i * n + j] = static_cast<float>(cs);
    }
  }
  ASSERT_TRUE(cholesky_upper_of_inverse_reference(h, n, &u));
  const std::vector<float> uf(u.begin(), u.end());
  std::vector<int32_t> perm(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) perm[j] = static_cast<int32_t>(j);
  const std::vector<float> p = gptaq_residual(c.data(), n, perm, {}, uf.data(), 1.0f);
  double worst = 0.0, largest = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t k = 0; k <= j; ++k) EXPECT_EQ(p[j * n + k], 0.0f) << "P not strictly upper at " << j << "," << k;
    if (j == n - 1) break;
    const int64_t m = n - 1 - j;  // later columns j+1..n-1
    std::vector<double> gram(static_cast<size_t>(m * m)), rhs(static_cast<size_t>(m));
    for (int64_t a = 0; a < m; ++a) {
      for (int64_t b = 0; b < m; ++b) gram[a * m + b] = h[(j + 1 + a) * n + (j + 1 + b)];
      rhs[a] = c[j * n + (j + 1 + a)];
    }
    const std::vector<double> fit = solve_dense(gram, rhs);
    for (int64_t a = 0; a < m; ++a) {
      worst = std::max(worst, std::fabs(p[j * n + j + 1 + a] - fit[a]));
      largest = std::max(largest, std::fabs(fit[a]));
    }
  }
  std::printf("[ gptaq ] P vs least squares (%lld columns, %lld tokens): max |diff| %.3g, max |P| %.3g\n",
              static_cast<long long>(n), static_cast<long long>(tokens), worst, largest);
  ASSERT_GT(largest, 1e-3);  // the drift is not negligible, so the comparison is not vacuous
  // fp32 inputs (C, U) and output, n = 7: a few ulps of the largest entry.
  EXPECT_LE(worst, 1e-5 * largest + 1e-7);
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

// The pipeline's ΔX·Xᵀ sum (gptaq_cross_add, fp32, token by token) against make_problem's direct
// double-precision one; rows given in two calls add up to one call's sum; X̃ = X adds nothing.
TEST(GptaqTest, CrossAddMatchesDirectReference) {
  const Problem p = make_problem(4, 24, 40, 0.3f, 9);
  std::vector<float> c(static_cast<size_t>(p.cols * p.cols), 0.0f);
  const int64_t first = 17;  // two calls, as two taps of one Hessian
  gptaq_cross_add(p.x.data(), p.xt.data(), first, p.cols, c.data());
  gptaq_cross_add(p.x.data() + first * p.cols, p.xt.data() + first * p.cols, p.tokens - first, p.cols, c.data());
  double scale = 0.0;
  for (float v : p.dxxt) scale = std::max(scale, std::fabs(static_cast<double>(v)));
  ASSERT_GT(scale, 0.01) << "vacuous reference";
  const float n = static_cast<float>(p.tokens);
  for (int64_t i = 0; i < p.cols; ++i) {
    for (int64_t j = 0; j < p.cols; ++j) {
      const size_t k = static_cast<size_t>(i * p.cols + j);
      // 40 fp32 products of order 1: 1e-5 of the largest entry.
      EXPECT_NEAR(2.0f * c[k] / n, p.dxxt[k], 1e-5 * scale) << "entry (" << i << ", " << j << ") of " << p.cols;
    }
  }
  std::vector<float> zero(static_cast<size_t>(p.cols * p.cols), 0.0f);
  gptaq_cross_add(p.x.data(), p.x.data(), p.tokens, p.cols, zero.data());
  for (float v : zero) ASSERT_EQ(v, 0.0f);
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

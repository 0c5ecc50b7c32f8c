// test_gptq_refine.cpp: the coordinate-descent refinement after GPTQ (quant/gptq_refine.h,
// GptqOptions::refine_passes) and the Hessian-weighted scale search (ScaleSearch::kHessian,
// observer_qparams_weighted). Refinement never raises GPTQ's objective, lowers it on a
// correlated Hessian, reports it as the loss, and changes nothing where GPTQ is already optimal
// (a diagonal Hessian: RTN). The weighted search with unit weights is the MSE observer bit for
// bit, and with a non-uniform diagonal H it lowers the H-weighted rounding error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "common/check.h"
#include "quant/gptq.h"
#include "quant/gptq_refine.h"
#include "quant/hessian.h"
#include "quant/observer.h"
#include "quant/quantizer.h"
#include "tests/latent_activations.h"

namespace dsv4::quant {
namespace {

std::vector<float> correlated_h(int64_t tokens, int64_t cols, uint32_t seed) {
  const std::vector<float> x = latent_activations(tokens, cols, 6, 0.2f, seed);
  HessianAccumulator acc(cols);
  acc.add(x.data(), tokens);
  return acc.finalize().h;
}

double half_trace(const std::vector<float>& w, const std::vector<float>& q, int64_t rows, int64_t cols,
                  std::vector<float> h, double damp) {
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] += static_cast<float>(damp);
  return hessian_error(w.data(), q.data(), rows, cols, h.data()).delta_trace / 2.0;
}

TEST(GptqRefineTest, LowersTheObjectiveAndReportsItAsLoss) {
  const int64_t rows = 32, cols = 128;
  const std::vector<float> w = randn(rows * cols, 7, 0.05f);
  const std::vector<float> h = correlated_h(1024, cols, 8);
  for (const char* preset : {"W4A16", "W4A16_ASYM", "W8A16_CHANNEL"}) {
    QuantArgs args = quant_args_preset(preset);
    if (args.group_size > 0) args.group_size = 32;
    for (ActOrder order : {ActOrder::kStatic, ActOrder::kGroup}) {
      GptqOptions opts;
      opts.actorder = order;
      const GptqResult base = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
      opts.refine_passes = 3;
      const GptqResult ref = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
      const double before = half_trace(w, base.dequant, rows, cols, h, base.damp);
      const double after = half_trace(w, ref.dequant, rows, cols, h, ref.damp);
      std::printf("[ refine ] %s actorder %s: objective %.6g -> %.6g (%.2f%%)\n", preset,
                  std::string(actorder_name(order)).c_str(), before, after, 100.0 * (after - before) / before);
      EXPECT_LT(after, before) << preset;
      EXPECT_NEAR(ref.loss, after, 1e-3 * after) << preset;
      EXPECT_EQ(ref.qparams.scale, base.qparams.scale) << "refinement keeps the scales";
      EXPECT_EQ(gptq_dequant_with_g_idx(args, ref.qparams, ref.codes, ref.g_idx), ref.dequant) << preset;
    }
  }
}

TEST(GptqRefineTest, DiagonalHessianChangesNothing) {
  const int64_t rows = 16, cols = 64;
  const std::vector<float> w = randn(rows * cols, 9, 0.05f);
  std::vector<float> h(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] = 1.0f + static_cast<float>(i % 7);
  QuantArgs args = quant_args_preset("W4A16");
  args.group_size = 32;
  const GptqResult r = gptq_solve(args, w.data(), rows, cols, h.data(), GptqOptions{});
  std::vector<int32_t> codes = r.codes;
  std::vector<float> deq = r.dequant;
  const GptqRefineStats st = gptq_refine(args, r.qparams, r.g_idx, w.data(), rows, cols, h.data(), r.damp, {}, 4,
                                         codes.data(), deq.data());
  EXPECT_EQ(st.codes_changed, 0);
  EXPECT_EQ(st.passes_run, 1);
  EXPECT_EQ(codes, r.codes);
}

TEST(GptqRefineTest, BadArgumentsThrow) {
  GptqOptions opts;
  opts.refine_passes = -1;
  EXPECT_THROW(opts.check(), Error);
  opts = GptqOptions{};
  opts.asymmetric_alpha = -0.5f;
  EXPECT_THROW(opts.check(), Error);
  // GPTAQ asked for without its cross term is an error, not a silent classic GPTQ.
  opts = GptqOptions{};
  opts.asymmetric = true;
  const QuantArgs args = quant_args_preset("W4A16");
  const std::vector<float> w = randn(4 * 128, 3, 0.05f);
  const std::vector<float> h = correlated_h(256, 128, 4);
  EXPECT_THROW(gptq_solve(args, w.data(), 4, 128, h.data(), opts), Error);
}

TEST(GptqRefineTest, NewOptionsSolveOnTheCpu) {
  const QuantArgs args = quant_args_preset("W4A16");
  EXPECT_TRUE(gptq_cuda_unsupported(args, GptqOptions{}).empty());
  GptqOptions o;
  o.refine_passes = 1;
  EXPECT_FALSE(gptq_cuda_unsupported(args, o).empty());
  o = GptqOptions{};
  o.scale_search = ScaleSearch::kHessian;
  EXPECT_FALSE(gptq_cuda_unsupported(args, o).empty());
  o = GptqOptions{};
  o.asymmetric = true;
  EXPECT_FALSE(gptq_cuda_unsupported(args, o).empty());
}

TEST(ScaleSearchTest, UnitWeightsAreTheMseObserver) {
  const int64_t rows = 16, cols = 128;
  const std::vector<float> w = randn(rows * cols, 11, 0.05f);
  QuantArgs args = quant_args_preset("W4A16");
  args.observer = ObserverKind::kMse;
  const std::vector<float> ones(static_cast<size_t>(cols), 1.0f);
  const QParams a = observer_qparams(args, w.data(), rows, cols);
  const QParams b = observer_qparams_weighted(args, w.data(), rows, cols, ones.data());
  EXPECT_EQ(a.scale, b.scale);
  EXPECT_EQ(a.zero_point, b.zero_point);
}

TEST(ScaleSearchTest, HessianWeightedScalesLowerTheWeightedError) {
  // With a diagonal H GPTQ is RTN, so its objective is the diag(H)-weighted rounding error the
  // search minimizes (norm 2 here); the grid starts at min-max, so it can only be lower.
  const int64_t rows = 64, cols = 256;
  const std::vector<float> w = randn(rows * cols, 12, 0.05f);
  std::vector<float> h(static_cast<size_t>(cols * cols), 0.0f);
  std::mt19937 rng(13);
  std::lognormal_distribution<float> ln(0.0f, 1.5f);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] = ln(rng);
  QuantArgs args = quant_args_preset("W4A16_ASYM");
  args.mse.norm = 2.0f;
  args.mse.patience = 1000;
  GptqOptions opts;
  opts.dampening_frac = 0.0f;
  const GptqResult minmax = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
  opts.scale_search = ScaleSearch::kHessian;
  const GptqResult weighted = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
  QuantArgs mse = args;
  mse.observer = ObserverKind::kMse;
  const GptqResult plain_mse = gptq_solve(mse, w.data(), rows, cols, h.data(), GptqOptions{.dampening_frac = 0.0f});
  const double e_minmax = gptq_rel_error(w.data(), minmax.dequant.data(), rows, cols, h.data());
  const double e_weighted = gptq_rel_error(w.data(), weighted.dequant.data(), rows, cols, h.data());
  const double e_mse = gptq_rel_error(w.data(), plain_mse.dequant.data(), rows, cols, h.data());
  std::printf("[ scale search ] diag-H rel error: minmax %.6g, mse %.6g, hessian-weighted %.6g\n", e_minmax, e_mse,
              e_weighted);
  EXPECT_LT(e_weighted, e_minmax);
  EXPECT_LT(e_weighted, e_mse);
  EXPECT_NE(weighted.qparams.scale, plain_mse.qparams.scale);
}

}  // namespace
}  // namespace dsv4::quant

// test_gptq_prepare.cpp: quant/gptq_prepare.h, the preparation policy both GPTQ paths share:
// the act-order sort (descending, stable, NaN last), dead columns and the mean diagonal, the
// damping schedule and how its outcome is recorded, and gptq_prepare_reference's U (UᵀU inverts
// the damped, permuted H; identity for the RTN fallbacks) against what gptq_solve reports.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "quant/gptq.h"
#include "quant/gptq_prepare.h"

namespace dsv4::quant {
namespace {

// H = A·Aᵀ/cols + 0.1·I for a seeded Gaussian A [cols, cols]: SPD, with distinct diagonals.
std::vector<float> spd_hessian(int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(cols * cols));
  for (float& x : a) x = d(rng);
  std::vector<float> h(a.size(), 0.0f);
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0.0;
      for (int64_t k = 0; k < cols; ++k) s += double(a[i * cols + k]) * a[j * cols + k];
      h[i * cols + j] = static_cast<float>(s / cols) + (i == j ? 0.1f : 0.0f);
    }
  }
  return h;
}

TEST(GptqPrepare, PlanSortsDiagonalDescendingStablyWithNanLast) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> diag = {1.0f, 3.0f, nan, 3.0f, 0.5f, 2.0f};
  for (const ActOrder order : {ActOrder::kStatic, ActOrder::kGroup}) {
    const GptqPreparePlan plan = gptq_prepare_plan(diag, order, false);
    EXPECT_EQ(plan.prepared.perm, (std::vector<int32_t>{1, 3, 5, 0, 4, 2})) << actorder_name(order);
    EXPECT_TRUE(plan.prepared.dead.empty());
    EXPECT_EQ(plan.prepared.fallback, GptqFallback::kNone);
  }
  const GptqPreparePlan none = gptq_prepare_plan(diag, ActOrder::kNone, false);
  EXPECT_EQ(none.prepared.perm, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
}

TEST(GptqPrepare, PlanCountsDeadColumnsAsOneInTheMean) {
  // Columns 1 and 4 are dead; sorted order 3, 0, 2, 1, 4 (the zeros keep their natural order).
  const std::vector<float> diag = {2.0f, 0.0f, 1.0f, 4.0f, -0.0f};
  const GptqPreparePlan plan = gptq_prepare_plan(diag, ActOrder::kStatic, false);
  EXPECT_EQ(plan.prepared.perm, (std::vector<int32_t>{3, 0, 2, 1, 4}));
  EXPECT_EQ(plan.prepared.dead, (std::vector<int32_t>{1, 4}));
  EXPECT_DOUBLE_EQ(plan.diag_mean, (4.0 + 2.0 + 1.0 + 1.0 + 1.0) / 5.0);
  EXPECT_FALSE(plan.no_tokens);
}

TEST(GptqPrepare, PlanWithoutTokensIsRtnInNaturalOrder) {
  const std::vector<float> diag = {0.0f, 0.0f, 0.0f};
  const GptqPreparePlan plan = gptq_prepare_plan(diag, ActOrder::kStatic, true);
  EXPECT_TRUE(plan.no_tokens);
  EXPECT_EQ(plan.prepared.fallback, GptqFallback::kRtnNoTokens);
  EXPECT_EQ(plan.prepared.perm, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_TRUE(plan.prepared.dead.empty()) << "no column is dead when the whole H is empty (§1.4)";
}

TEST(GptqPrepare, DampingScheduleEscalatesByTheFactor) {
  GptqOptions opts;
  opts.dampening_frac = 0.01f;
  opts.damping_escalation_factor = 10.0f;
  opts.max_damping_escalations = 3;
  const double mean = 2.5;
  const std::vector<GptqDampingStep> steps = gptq_damping_schedule(opts, mean);
  ASSERT_EQ(steps.size(), 4u);
  double frac = static_cast<double>(0.01f);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(steps[static_cast<size_t>(k)].attempt, k);
    EXPECT_EQ(steps[static_cast<size_t>(k)].frac, frac) << "attempt " << k;
    EXPECT_EQ(steps[static_cast<size_t>(k)].damp, frac * mean) << "attempt " << k;
    frac *= 10.0;
  }
  EXPECT_NEAR(steps[3].frac, 10.0, 1e-6);
  opts.max_damping_escalations = 0;
  EXPECT_EQ(gptq_damping_schedule(opts, mean).size(), 1u) << "no escalation: one attempt";
}

TEST(GptqPrepare, DampingRecordNamesTheFallback) {
  GptqOptions opts;
  opts.max_damping_escalations = 4;
  GptqPrepared first, raised, failed;
  const GptqDampingStep s0{0, 0.01, 0.02}, s2{2, 1.0, 2.0};
  gptq_damping_record(first, opts, &s0);
  EXPECT_EQ(first.fallback, GptqFallback::kNone);
  EXPECT_EQ(first.damping_escalations, 0);
  EXPECT_EQ(first.damp, 0.02);
  gptq_damping_record(raised, opts, &s2);
  EXPECT_EQ(raised.fallback, GptqFallback::kDampingRaised);
  EXPECT_EQ(raised.damping_escalations, 2);
  EXPECT_EQ(raised.dampening_frac_used, 1.0);
  gptq_damping_record(failed, opts, nullptr);
  EXPECT_EQ(failed.fallback, GptqFallback::kRtnCholeskyFailed);
  EXPECT_EQ(failed.damping_escalations, 4);
  EXPECT_EQ(failed.damp, 0.0);
}

// UᵀU must be (Hp + damp·I)⁻¹ with Hp = H[perm][perm], dead diagonals 1.
TEST(GptqPrepare, ReferenceFactorInvertsTheDampedPermutedHessian) {
  const int64_t cols = 24;
  std::vector<float> h = spd_hessian(cols, 11);
  for (int64_t j = 0; j < cols; ++j) h[5 * cols + j] = h[j * cols + 5] = 0.0f;  // column 5 dead
  const GptqOptions opts;
  std::vector<float> u(static_cast<size_t>(cols * cols));
  const GptqPrepared p = gptq_prepare_reference(h.data(), cols, opts, ActOrder::kStatic, u.data());
  ASSERT_EQ(p.fallback, GptqFallback::kNone);
  EXPECT_EQ(p.dead, (std::vector<int32_t>{5}));
  EXPECT_EQ(p.perm.back(), 5) << "the dead column has the smallest diagonal";
  EXPECT_GT(p.damp, 0.0);
  double worst = 0.0;
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      if (j < i) {
        EXPECT_EQ(u[static_cast<size_t>(i * cols + j)], 0.0f) << "U must be upper: " << i << ", " << j;
      }
      if (j == i) {
        EXPECT_GT(u[static_cast<size_t>(i * cols + j)], 0.0f) << "U's diagonal must be positive: " << i;
      }
      // (UᵀU · Hd)[i][j] = Σ_k (Σ_m U[m][i] U[m][k]) Hd[k][j]
      double s = 0.0;
      for (int64_t k = 0; k < cols; ++k) {
        double uu = 0.0;
        for (int64_t m = 0; m < cols; ++m) uu += double(u[m * cols + i]) * u[m * cols + k];
        double hd = h[static_cast<int64_t>(p.perm[k]) * cols + p.perm[j]];
        if (k == j) hd = (hd == 0.0 ? 1.0 : hd) + p.damp;
        s += uu * hd;
      }
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  }
  EXPECT_LT(worst, 1e-4) << "UᵀU·(Hp + damp) vs I, [" << cols << ", " << cols << "], fp32 U";
}

// The reference reports what gptq_solve reports (it is what gptq_solve runs), including an
// escalation: one eigenvalue -0.5 with mean diagonal ~1 fails at damping 0.01 and 0.1.
TEST(GptqPrepare, ReferenceAgreesWithTheSolverOnEscalationAndFallbacks) {
  const int64_t rows = 4, cols = 16;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * static_cast<float>(static_cast<int>(i % 7) - 3);
  std::vector<float> negative(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) negative[static_cast<size_t>(i * cols + i)] = 1.0f;
  negative[static_cast<size_t>(7 * cols + 7)] = -0.5f;
  const std::vector<float> zero(static_cast<size_t>(cols * cols), 0.0f);
  const QuantArgs args = quant_args_preset("W4A16");
  for (const std::vector<float>* h : std::vector<const std::vector<float>*>{&negative, &zero}) {
    std::vector<float> u(static_cast<size_t>(cols * cols), -1.0f);
    const GptqPrepared p = gptq_prepare_reference(h->data(), cols, GptqOptions{}, ActOrder::kStatic, u.data());
    QuantArgs a = args;
    a.group_size = cols;
    const GptqResult r = gptq_solve(a, w.data(), rows, cols, h->data(), GptqOptions{});
    EXPECT_EQ(p.fallback, r.fallback);
    EXPECT_EQ(p.damping_escalations, r.damping_escalations);
    EXPECT_EQ(p.damp, r.damp);
    EXPECT_EQ(p.dampening_frac_used, r.dampening_frac_used);
    EXPECT_EQ(static_cast<int64_t>(p.dead.size()), r.dead_columns);
    if (h == &negative) {
      EXPECT_EQ(p.fallback, GptqFallback::kDampingRaised);
      EXPECT_EQ(p.damping_escalations, 2);
    } else {
      EXPECT_EQ(p.fallback, GptqFallback::kRtnNoTokens);
      for (int64_t i = 0; i < cols; ++i) {
        for (int64_t j = 0; j < cols; ++j) ASSERT_EQ(u[static_cast<size_t>(i * cols + j)], i == j ? 1.0f : 0.0f) << i << ", " << j;
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::quant

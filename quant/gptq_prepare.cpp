// gptq_prepare.cpp: the GPTQ preparation policy and its CPU reference (see gptq_prepare.h).
#include "quant/gptq_prepare.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/check.h"
#include "quant/cholesky.h"

namespace dsv4::quant {

GptqPreparePlan gptq_prepare_plan(std::span<const float> diag, ActOrder order, bool no_tokens) {
  const int64_t n = static_cast<int64_t>(diag.size());
  GptqPreparePlan plan;
  plan.no_tokens = no_tokens;
  GptqPrepared& p = plan.prepared;
  p.perm.resize(static_cast<size_t>(n));
  std::iota(p.perm.begin(), p.perm.end(), 0);
  if (no_tokens) {
    p.fallback = GptqFallback::kRtnNoTokens;  // never let "all dead" zero the weight (§1.4)
    return plan;
  }
  if (order != ActOrder::kNone) {
    // NOTE: NaN compares false both ways, which would break the strict weak order the sort needs.
    std::vector<float> key(diag.begin(), diag.end());
    for (float& k : key) {
      if (std::isnan(k)) k = -std::numeric_limits<float>::infinity();
    }
    std::stable_sort(p.perm.begin(), p.perm.end(), [&](int32_t a, int32_t b) {
      return key[static_cast<size_t>(a)] > key[static_cast<size_t>(b)];
    });
  }
  double diag_sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t col = p.perm[static_cast<size_t>(i)];
    double d = diag[static_cast<size_t>(col)];
    if (d == 0.0) {
      d = 1.0;
      p.dead.push_back(col);
    }
    diag_sum += d;
  }
  plan.diag_mean = diag_sum / static_cast<double>(n);
  return plan;
}

std::vector<GptqDampingStep> gptq_damping_schedule(const GptqOptions& opts, double diag_mean) {
  std::vector<GptqDampingStep> steps;
  double frac = opts.dampening_frac;
  for (int attempt = 0; attempt <= opts.max_damping_escalations; ++attempt) {
    steps.push_back({attempt, frac, frac * diag_mean});
    frac *= opts.damping_escalation_factor;
  }
  return steps;
}

void gptq_damping_record(GptqPrepared& p, const GptqOptions& opts, const GptqDampingStep* factorised) {
  if (!factorised) {
    p.fallback = GptqFallback::kRtnCholeskyFailed;
    p.damping_escalations = opts.max_damping_escalations;
    return;
  }
  p.damping_escalations = factorised->attempt;
  p.dampening_frac_used = factorised->frac;
  p.damp = factorised->damp;
  p.fallback = factorised->attempt > 0 ? GptqFallback::kDampingRaised : GptqFallback::kNone;
}

GptqPrepared gptq_prepare_reference(const float* h, int64_t cols, const GptqOptions& opts, ActOrder order, float* u) {
  opts.check();
  DSV4_CHECK_IN("gptq", h != nullptr && u != nullptr && cols > 0, "preparation of a null or empty Hessian (%lld columns)",
                static_cast<long long>(cols));
  const size_t nh = static_cast<size_t>(cols * cols);
  const bool no_tokens = std::all_of(h, h + nh, [](float x) { return x == 0.0f; });
  std::vector<float> diag(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) diag[static_cast<size_t>(i)] = h[i * cols + i];
  GptqPreparePlan plan = gptq_prepare_plan(diag, order, no_tokens);
  GptqPrepared& p = plan.prepared;
  std::fill(u, u + nh, 0.0f);
  bool factorised = false;
  if (!no_tokens) {
    // H in permuted order, in fp64; dead columns get diagonal 1.
    const std::vector<int32_t>& perm = p.perm;
    std::vector<double> hp(nh);
    for (int64_t i = 0; i < cols; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        hp[static_cast<size_t>(i * cols + j)] = h[static_cast<int64_t>(perm[static_cast<size_t>(i)]) * cols +
                                                  perm[static_cast<size_t>(j)]];
      }
    }
    for (int64_t i = 0; i < cols; ++i) {
      double& d = hp[static_cast<size_t>(i * cols + i)];
      if (d == 0.0) d = 1.0;
    }
    const std::vector<GptqDampingStep> steps = gptq_damping_schedule(opts, plan.diag_mean);
    const GptqDampingStep* ok = nullptr;
    std::vector<double> hd, ud;
    for (const GptqDampingStep& s : steps) {
      hd = hp;
      for (int64_t i = 0; i < cols; ++i) hd[static_cast<size_t>(i * cols + i)] += s.damp;
      if (cholesky_upper_of_inverse_reference(hd, cols, &ud)) {
        ok = &s;
        break;
      }
    }
    gptq_damping_record(p, opts, ok);
    if (ok) {
      factorised = true;
      for (size_t i = 0; i < nh; ++i) u[i] = static_cast<float>(ud[i]);
    }
  }
  if (!factorised) {
    for (int64_t i = 0; i < cols; ++i) u[i * cols + i] = 1.0f;
  }
  return p;
}

}  // namespace dsv4::quant

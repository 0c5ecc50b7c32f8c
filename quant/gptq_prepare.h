// gptq_prepare.h: GPTQ's preparation policy, written once for the CPU solver (gptq.cpp) and the
// GPU preparation (gptq_prepare_cuda.cu) (issue 22): the act-order permutation, dead columns, relative
// damping with escalation, and which fallback applies. Both paths call the same host functions,
// so their plans (permutation, dead columns, damping values, fallback) agree bit for bit; only the
// factorisation itself differs (CPU: cholesky_upper_of_inverse_reference in fp64, cholesky.h;
// GPU: cuSOLVER in fp64).
//
//   GptqPreparePlan plan = gptq_prepare_plan(diag, ActOrder::kStatic, /*no_tokens=*/false);
//   const GptqDampingStep* ok = nullptr;
//   for (const GptqDampingStep& s : gptq_damping_schedule(opts, plan.diag_mean)) {
//     if (factorise(H[perm][perm] with dead diagonals 1, + s.damp)) { ok = &s; break; }
//   }
//   gptq_damping_record(plan.prepared, opts, ok);  // kNone, kDampingRaised or kRtnCholeskyFailed
//
// gptq_prepare_reference runs the whole preparation on the CPU (the reference of
// gptq_prepare_cuda in gptq_cuda.h). Tests: tests/quant/test_gptq_prepare.cpp.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "quant/gptq.h"

namespace dsv4::quant {

// The outcome of one Hessian's preparation, shared by every matrix that uses the Hessian.
struct GptqPrepared {
  std::vector<int32_t> perm;   // permuted column j -> original column (host)
  std::vector<int32_t> dead;   // original indices of dead columns (diag(H) == 0), in permuted order
  double dampening_frac_used = 0.0, damp = 0.0;
  int damping_escalations = 0;
  GptqFallback fallback = GptqFallback::kNone;  // kRtnNoTokens / kRtnCholeskyFailed: U is identity
};

// The host half of a preparation, from diag(H) alone.
struct GptqPreparePlan {
  GptqPrepared prepared;   // perm and dead; fallback kRtnNoTokens when no_tokens
  double diag_mean = 0.0;  // mean of the permuted diagonal with dead entries set to 1: damping is relative to it
  bool no_tokens = false;
};

// diag: diag(H) [cols] in the original order. no_tokens: H holds no tokens (the caller's test: the
// CPU path scans all of H, the GPU path only its diagonal, which for a Gram matrix is the same and
// spares copying H to the host). Act-order (static or group) sorts the columns by descending
// diag(H), stably (ties such as H = I keep their natural order, so results are reproducible; NaN
// sorts last); no sort without tokens. A column with diag(H) == 0 is dead: the caller sets its
// diagonal to 1 and its weights to 0 (§1.4), and counts it as 1 in diag_mean.
GptqPreparePlan gptq_prepare_plan(std::span<const float> diag, ActOrder order, bool no_tokens);

// One attempt of the damping schedule: damp = frac · diag_mean is added to the diagonal.
struct GptqDampingStep {
  int attempt = 0;
  double frac = 0.0;
  double damp = 0.0;
};

// Attempts 0..max_damping_escalations: frac starts at dampening_frac and is multiplied by
// damping_escalation_factor after each failed factorisation (in double, in this order).
std::vector<GptqDampingStep> gptq_damping_schedule(const GptqOptions& opts, double diag_mean);

// Records the outcome in p: the step whose factorisation succeeded (kDampingRaised past attempt
// 0), or null when every step failed (kRtnCholeskyFailed, escalations at the cap, U identity).
void gptq_damping_record(GptqPrepared& p, const GptqOptions& opts, const GptqDampingStep* factorised);

// The CPU reference of gptq_prepare_cuda: h [cols, cols] fp32 (finalized H, original order);
// writes u [cols, cols] fp32, the upper Cholesky factor of (H[perm][perm] + damp·I)⁻¹ in permuted
// order (dead diagonals 1), or the identity for the RTN fallbacks. Never throws for a bad Hessian.
GptqPrepared gptq_prepare_reference(const float* h, int64_t cols, const GptqOptions& opts, ActOrder order, float* u);

}  // namespace dsv4::quant

// ops.h: the CPU reference's dense primitives, fp32 in and out. The GEMM goes through OpenBLAS
// (multithreaded); everything else is plain loops written for clarity, not speed.
//
//   linear_forward(x, T, in, w, out, y);          // y[T, out] = x[T, in] · w[out, in]ᵀ
//   rmsnorm_forward(x, T, dim, weight, 1e-6f, y);  // weight may be null (unweighted norm)
//   bf16_round(v.data(), v.size());               // storage rounding of the bf16 numeric mode
//
// Tests: tests/model/test_ops.cpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace dsv4::model {

// y[rows, out] = x[rows, in] · w[out, in]ᵀ, all row-major fp32 (sgemm, fp32 accumulation).
void linear_forward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y);

// linear_forward zero-padded to at least kRowStableMinOutputs / out rows: OpenBLAS 0.3.21 takes
// another sgemm path, rounding differently, for rows·out ≤ ~1200 (measured on an AVX-512 EPYC).
// Used where a GEMM's row set depends on other tokens (MoE experts run on the rows routed to them)
// or T differs between runs sharing a prefix (HC mixing logits, router, shared expert). With the
// AVX-512 (SkylakeX, Cooperlake) and Sandybridge kernels each row's bits then depend on that row
// only, whatever the row count or offset. NOT with the Haswell and Zen kernels (what OpenBLAS picks
// on AMD Zen, or OPENBLAS_CORETYPE=Haswell|Zen): a row's bits also depend on its place in the call,
// on M and on the thread split, by a few ulp of its K-term sums (issue 28). A run is deterministic
// for its shapes; tests comparing rows across shapes or places use argued tolerances (test_moe.cpp:
// MoeTaps.AllExpertsModeKeepsTheOutputAndShowsEveryRow, MoeForward.RowsDoNotDependOnOtherTokens).
inline constexpr int64_t kRowStableMinOutputs = 8192;
void linear_forward_row_stable(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y);

// Per row: y = x / sqrt(mean(x²) + eps) ⊙ weight; weight == nullptr means no weight. In-place
// (y == x) is allowed. The mean is accumulated in double so the reference has no order effects.
void rmsnorm_forward(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
                     float* y);

// Rounds every value to the nearest bf16 (RNE) in place.
void bf16_round(float* values, size_t count);

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
// torch.nn.functional.softplus with beta 1 and threshold 20 (returns x above 20).
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

}  // namespace dsv4::model

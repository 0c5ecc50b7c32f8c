// ops.h: the CPU reference's dense primitives, fp32 in and out. The GEMM goes through OpenBLAS
// (multithreaded); everything else is plain loops written for clarity, not speed.
//
//   linear_forward(x, T, in, w, out, y);          // y[T, out] = x[T, in] · w[out, in]ᵀ
//   rmsnorm_forward(x, T, dim, weight, 1e-6f, y);  // weight may be null (unweighted norm)
//   bf16_round(v.data(), v.size());               // storage rounding of the bf16 numeric mode
//   swiglu_clamped(g, u, n, limit);                // g = silu(min(g, L)) ⊙ clamp(u, −L, L)
//
// The *_reference functions are the CPU references of the row-wise GPU kernels of ops_cuda.h
// (norm_rope_cuda, swiglu_cuda): the bf16 numeric mode built from the primitives above, on bf16
// values held in fp32. Tests: tests/model/test_ops.cpp; GPU against them: tests/model/test_ops_cuda.cu.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace dsv4::model {

struct RopeTable;

// y[rows, out] = x[rows, in] · w[out, in]ᵀ, all row-major fp32 (sgemm, fp32 accumulation), as
// single-threaded sgemm calls over fixed blocks of kLinearColumnBlock outputs, run on
// parallel_for's threads when large: every output's bits depend on the shapes alone, never on the
// number of threads (OpenBLAS's own threading would make them depend on it with its Haswell and
// Zen kernels: the same bits at any number of ranks, issue 29). Sets OpenBLAS to one thread.
// threads: parallel_for's (<= 0: every hardware thread).
inline constexpr int64_t kLinearColumnBlock = 256;
void linear_forward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y,
                    int threads = 0);

// linear_forward zero-padded to at least kRowStableMinOutputs / min(out, kLinearColumnBlock) rows
// (the width of one sgemm call): OpenBLAS 0.3.21 takes
// another sgemm path, rounding differently, for rows·out ≤ ~1200 (measured on an AVX-512 EPYC).
// Used where a GEMM's row set depends on other tokens (MoE experts run on the rows routed to them)
// or T differs between runs sharing a prefix (HC mixing logits, router, shared expert). With the
// AVX-512 (SkylakeX, Cooperlake) and Sandybridge kernels each row's bits then depend on that row
// only, whatever the row count or offset. NOT with the Haswell and Zen kernels (what OpenBLAS picks
// on AMD Zen, or OPENBLAS_CORETYPE=Haswell|Zen): a row's bits also depend on its place in the call,
// and on M (not on threads: linear_forward's blocks are fixed), by a few ulp of its K-term sums
// (issue 28). A run is deterministic
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

// SwiGLU with the swiglu_limit clamps, in place into g: g = silu(min(g, L)) ⊙ clamp(u, −L, L).
// NOTE: the gate is clamped from above only, the up projection on both sides (transformers
// lines 978-979 and 1019-1020; §3.3 step 4 says the same).
void swiglu_clamped(float* g, const float* u, size_t count, float limit);

// norm_rope_cuda's work per row of `dim` values (model/ops_cuda.h NormRope, with a host table).
struct NormRopeArgs {
  bool normalize = true;
  const float* weight = nullptr;  // [dim] or null
  float eps = 1e-6f;
  const RopeTable* rope = nullptr;
  bool inverse = false;
  // Row r sits at position ((r / rows_per_token) % tokens_per_seq) · stride.
  int64_t rows_per_token = 1, tokens_per_seq = 1, stride = 1;
};
// Per row: rmsnorm_forward then bf16_round (when normalize); then, with a rope, rope_apply at the
// row's position and bf16_round. In place (y == x) is allowed.
void norm_rope_reference(const float* x, int64_t rows, int64_t dim, const NormRopeArgs& op, float* y);

// swiglu_cuda's work: gu [rows, 2·inter] (gate columns, then up) -> h [rows, inter] =
// bf16(swiglu_clamped); with row_weights [rows], also hw = bf16(swiglu · row_weights[r]) from the
// unrounded swiglu (hw null otherwise).
void swiglu_reference(const float* gu, int64_t rows, int64_t inter, float limit, float* h, const float* row_weights,
                      float* hw);

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
// torch.nn.functional.softplus with beta 1 and threshold 20 (returns x above 20).
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

}  // namespace dsv4::model

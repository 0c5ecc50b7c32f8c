// gptq.h: the GPTQ solver of one weight (gptq_and_formats.md §1.3-§1.7, §1.10), llm-compressor's
// algorithm on the CPU: act-order permutation, dead columns, relative damping, Cholesky ->
// inverse -> upper Cholesky U of H⁻¹, the 128-column lazy-batch sweep, un-permutation.
//
//   HessianResult h = acc.finalize();                          // hessian.h
//   GptqResult r = gptq_solve(args, w, rows, cols, h.h.data(), GptqOptions{});
//   if (r.fallback != GptqFallback::kNone) ...                 // meaningful but worth reporting
//   double e = gptq_rel_error(w, r.dequant.data(), rows, cols, h.h.data());
//
// Weights are row-major [rows, cols] fp32 (rows = out features); H is [cols, cols]. The sweep
// runs in fp32 like llm-compressor; the Cholesky/inverse chain runs in double (more robust than
// torch's fp32 LAPACK call; U is then rounded to fp32). Never throws for a bad Hessian: a failed
// factorization raises the damping, then falls back to RTN; an all-zero H (no tokens) is RTN
// with the weight kept. Tests: tests/quant/test_gptq.cpp.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "quant/cholesky.h"
#include "quant/quant_args.h"
#include "quant/quantizer.h"

namespace dsv4::quant {

// §1.7. kStatic ("weight"): qparams from the original column order, then permute by descending
// diag(H); no g_idx on disk. kGroup ("dynamic"): permute first, qparams on the permuted W, and a
// g_idx is written. kGroup on a strategy other than group/tensor_group falls back to kNone (as
// llm-compressor does; reported in GptqResult::actorder_used).
enum class ActOrder : uint8_t { kNone, kStatic, kGroup };

// §1.3. kUpfront: current llm-compressor, all qparams once from the original W. kLazy: the
// classic GPTQ / AutoGPTQ / GPTQModel(static_groups=False) rule, a group's qparams taken at its
// first column from the lazily updated full W (which holds the updates of earlier blocks but
// not the in-block updates of the current block). kLazy affects only group / tensor_group
// strategies (others have no column groups and use kUpfront) and cannot be combined with
// kStatic (a static order needs qparams fixed before permuting).
enum class QParamsTiming : uint8_t { kUpfront, kLazy };

// Which scales GPTQ rounds against (issue 24). kObserver: the weight's observer (min-max, or
// llm-compressor's `observer: mse` grid). kHessian: the same MSE grid search (args.mse's grid,
// maxshrink, norm, patience) with each column's error weighted by diag(H), the cost a column's
// rounding error has in GPTQ's objective; dsv4's extra, llm-compressor has no such observer.
enum class ScaleSearch : uint8_t { kObserver, kHessian };
std::string_view scale_search_name(ScaleSearch s);

enum class GptqFallback : uint8_t {
  kNone,
  kDampingRaised,      // factorization succeeded only after raising the damping
  kRtnCholeskyFailed,  // still failed at the cap: RTN (identity U) with the chosen qparams
  kRtnNoTokens,        // H all zero: RTN with identity H; the weight is NOT zeroed (§1.4)
};

std::string_view actorder_name(ActOrder a);
std::string_view gptq_fallback_name(GptqFallback f);

struct GptqOptions {
  float dampening_frac = 0.01f;  // damp = dampening_frac * mean(diag H)
  int block_size = 128;          // lazy-batch width
  ActOrder actorder = ActOrder::kStatic;
  QParamsTiming qparams = QParamsTiming::kUpfront;
  int max_damping_escalations = 4;  // after a failed Cholesky: frac *= escalation_factor
  float damping_escalation_factor = 10.0f;
  // Past classic GPTQ (issue 24); the defaults are classic GPTQ, bit for bit.
  ScaleSearch scale_search = ScaleSearch::kObserver;
  // Passes of coordinate descent on GPTQ's objective after the sweep (quant/gptq_refine.h).
  int refine_passes = 0;
  // GPTAQ (quant/gptaq.h): the solve takes ΔX Xᵀ beside H; alpha scales its residual term as
  // the authors' code does (0.25 there and in GPTQModel's v2_alpha).
  bool asymmetric = false;
  float asymmetric_alpha = 0.25f;

  ArgsProblem problem() const;  // the field named as in a GPTQModifier recipe ("block_size")
  void check() const;           // throws problem() as dsv4::Error("gptq", ...)
};

struct GptqResult {
  QParams qparams;
  std::vector<int32_t> codes;    // [rows, cols], original column order
  std::vector<float> dequant;    // [rows, cols] fake-quantized weight, original column order
  // Only for actorder kGroup (and kLazy with a permutation): qparam column of each original
  // column, int32 [cols] (compressed-tensors weight_g_idx). Empty otherwise.
  std::vector<int32_t> g_idx;
  // llm-compressor's loss Σ_rows Σ_cols ((w−q)/d)² / 2, d = diag(U) (§1.10), in double.
  // It equals ½·tr((W−Q)·H_damped·(W−Q)ᵀ) and scales with the H normalization (tokens here).
  double loss = 0.0;
  double dampening_frac_used = 0.0;  // 0 for the RTN fallbacks
  double damp = 0.0;                 // absolute value added to diag(H)
  int damping_escalations = 0;
  GptqFallback fallback = GptqFallback::kNone;
  int64_t dead_columns = 0;          // diag(H) == 0: H[i][i] = 1, W[:, i] = 0
  ActOrder actorder_used = ActOrder::kNone;
};

// Quantizes w [rows, cols] with Hessian h [cols, cols]. Throws only for bad arguments (args,
// shapes, options), never for a bad Hessian.
GptqResult gptq_solve(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                      const float* h, const GptqOptions& opts);
// The same with GPTAQ's asymmetric term: dxxt [cols, cols] = ΔX Xᵀ (ΔX = X̃ − X, the
// full-precision input minus the quantized-path one) normalized as H is (2/n Σ). Null dxxt is
// gptq_solve. See quant/gptaq.h.
GptqResult gptq_solve_asymmetric(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                                 const float* h, const float* dxxt, const GptqOptions& opts);

// tr((W−Q) H (W−Q)ᵀ) / tr(W H Wᵀ) in double; 0 when the denominator is 0. hessian_error(...).rel()
// (hessian.h), which also gives the two traces.
double gptq_rel_error(const float* w, const float* q, int64_t rows, int64_t cols, const float* h);

// Dequantizes codes with qparams, column c using qparam column g_idx[c] (identity mapping when
// g_idx is empty). Shared by the tests and loaders of act-order (g_idx) checkpoints.
std::vector<float> gptq_dequant_with_g_idx(const QuantArgs& args, const QParams& qp,
                                           const std::vector<int32_t>& codes,
                                           const std::vector<int32_t>& g_idx);

std::ostream& operator<<(std::ostream& os, const GptqOptions& o);

// Empty when the GPU sweep (quant/gptq_cuda.h, gptq_batch_cuda.h) handles (args, opts); else why
// not, so the caller solves on the CPU. Defined here so CPU builds can ask too.
std::string gptq_cuda_unsupported(const QuantArgs& args, const GptqOptions& opts);

}  // namespace dsv4::quant

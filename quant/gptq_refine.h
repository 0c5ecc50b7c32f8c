// gptq_refine.h: coordinate descent on GPTQ's objective after the sweep, with the scales fixed
// (QuantEase: Behdin, Acharya, Gupta, Song, Zhu, Keerthi, Mazumder, "QuantEase: Optimization-
// based Quantization for Language Models", arXiv 2309.01885, §3: cyclic coordinate descent
// started from GPTQ's solution, which they report lowers perplexity against GPTQ at 3 and 4
// bits). GPTQ visits each column once and never revisits a rounding decision once later columns
// moved; a pass here revisits every weight.
//
// The objective is f(Q) = ½·tr((W−Q) Hd (W−Q)ᵀ), Hd = H + damp·I with dead columns (diag 0)
// given diagonal 1 and weight 0, exactly the one GPTQ's sweep minimizes and reports as loss.
// It separates over rows. For one weight q_rj with every other fixed, f is a quadratic in q_rj
// whose minimum is at t = w_rj − Σ_{k≠j} (q_rk − w_rk) Hd_kj / Hd_jj; the grid point nearest to t
// under the cell's scale is the best code, and it is taken only when it lowers f (a bf16-rounded
// grid is not exactly uniform), so f never rises. A pass visits every column in order; passes
// stop early when one changes nothing.
//
//   GptqRefineStats st = gptq_refine(args, qp, g_idx, w, rows, cols, h, damp, dead, 2, codes, deq);
//
// Tests: tests/quant/test_gptq_refine.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/quant_args.h"
#include "quant/quantizer.h"

namespace dsv4::quant {

struct GptqRefineStats {
  double loss_before = 0.0;  // ½·tr((W−Q)Hd(W−Q)ᵀ) of the codes given
  double loss_after = 0.0;   // the same after the passes (<= loss_before)
  int64_t codes_changed = 0;
  int passes_run = 0;
};

// codes/dequant [rows, cols] (original column order) are updated in place; g_idx (empty: the
// qparams' own column mapping) names each column's qparam column as GptqResult's does. h: H
// [cols, cols] before damping; dead: original indices of dead columns.
GptqRefineStats gptq_refine(const QuantArgs& args, const QParams& qp, const std::vector<int32_t>& g_idx,
                            const float* w, int64_t rows, int64_t cols, const float* h, double damp,
                            const std::vector<int32_t>& dead, int passes, int32_t* codes, float* dequant);

}  // namespace dsv4::quant

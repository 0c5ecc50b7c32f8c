// gptaq.h: GPTAQ's asymmetric calibration term (Li, Yin, Lee, Xiao, Panda, "GPTAQ: Efficient
// Finetuning-Free Quantization for Asymmetric Calibration", ICML 2025, arXiv 2504.02692; code:
// Intelligent-Computing-Lab-Yale/GPTAQ, fake_quant/gptaq_utils.py, read at 883afc6).
//
// Classic GPTQ fits Q X to W X, X the layer input along the quantized path. GPTAQ fits Q X to
// W X̃, X̃ the full-precision model's input to the same linear, so each layer also corrects
// what the layers before it lost: min ‖W X̃ − Q X‖². Its closed form keeps GPTQ's sweep and adds
// one residual term per column: with U the upper Cholesky factor of H⁻¹ (H = X Xᵀ) and
// C = ΔX Xᵀ (ΔX = X̃ − X),
//   P = α · triu₁(C Uᵀ) · U                      (strictly upper triangular)
//   after quantizing column j:  W[:, j+1:] −= e_j · U[j, j+1:] − w_j · P[j, j+1:]
// where e_j = (w_j − q_j)/U[j, j] as in GPTQ and w_j is column j as the sweep found it (before
// rounding). Row j of P (α = 1) is the least-squares fit of column j's input drift onto the later
// columns' inputs, Δx_j X_{>j}ᵀ (X_{>j} X_{>j}ᵀ)⁻¹: the change of the later weights that best
// cancels w_j·Δx_j once columns up to j are fixed. The authors' code multiplies the block's
// rounded columns into the later blocks' residual instead of these w_j; here every block uses w_j,
// so the result does not depend on block_size (tests/quant/test_gptaq.cpp checks it), and C = 0 (X̃ = X) is classic GPTQ bit for
// bit. α = 0.25 is the authors' and GPTQModel's default ("due to collection of dXXT and H").
//
//   GptqResult r = gptq_solve_asymmetric(args, w, rows, cols, h, dxxt, opts);   // gptq.h
//
// Not in the pipeline yet: recipes refuse calibration.gptq.asymmetric: true (recipe_parse.cpp).
// The pipeline runs one stream of HC states, the quantized path's (propagate_error), so it has
// no X̃. Supplying C needs a second stream advanced through each unquantized block beside it, the
// taps of both passes paired row for row (the same tokens reach every expert only in all-experts
// mode; w2's rows with the same routing convention), C summed beside H with H's normalization and
// reduced to the module's owner with it, and the second stream in the activation snapshots.
//
// Tests: tests/quant/test_gptaq.cpp.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4::quant {

// P [cols, cols] fp32 in the sweep's permuted order. dxxt: C [cols, cols] in the original
// order; its columns `dead` (original indices, diag(H) == 0) are taken as zero, as the weight's
// are. u: GPTQ's U in permuted order (gptq_prepare.h). In double, rounded once to fp32.
std::vector<float> gptaq_residual(const float* dxxt, int64_t cols, const std::vector<int32_t>& perm,
                                  const std::vector<int32_t>& dead, const float* u, float alpha);

}  // namespace dsv4::quant

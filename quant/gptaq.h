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
// In the pipeline (recipe key calibration.gptq.asymmetric, CPU executor only): a second stream of
// HC states advanced with the source weights gives X̃; pass A's taps of both streams are paired
// row for row (calib/paired_taps.h) and C is summed beside H with gptaq_cross_add below, then
// normalized as H is (2/n) and reduced to the module's owner with it.
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

// c += (X̃ − X)ᵀ X over `rows` token rows: c[i][j] += Σ_t (x̃_t[i] − x_t[i]) · x_t[j], the
// unnormalized ΔX Xᵀ. x, x_full: [rows, cols] row-major fp32 (the quantized-path and the
// full-precision input of the same tokens); c: [cols, cols] fp32, not symmetric. In fp32, token by
// token in row order, so one sample's rows give the same values whoever sums them (the pipeline
// adds them to an exact sum, quant/hessian_exact.h, for world-size-independent bytes).
void gptaq_cross_add(const float* x, const float* x_full, int64_t rows, int64_t cols, float* c);

}  // namespace dsv4::quant

// turboquant_gptq.h: GPTQ-aware TurboQuant: the same codebook, rotation and on-disk layout as
// quant/turboquant.h, with the codes chosen by GPTQ's error feedback instead of independently.
//
//   GptqResult r = tq_gptq_solve(codec, w, rows, cols, h, opts);
//   r.codes;          // [rows, groups·G] codebook indices (tq_pack stores them)
//   r.qparams.scale;  // [rows, groups] the group norms stored as tq_norms
//   r.dequant;        // [rows, cols] = tq_dequantize(codes, norms), what the artifact decodes to
//
// The rotation R (block-diagonal, one D2·H·D1 per group of G columns, orthogonal) moves the
// problem to the rotated domain exactly: W·X = (W·Rᵀ)(R·X), so W' = W·Rᵀ and H' = R·H·Rᵀ give
// the same layer-output error. There every element is quantized on its own, as in upstream's
// quantizer: q = s·c[searchsorted(boundaries, v / s)] with s the row-group's norm ‖w_group‖
// (fixed before the sweep, as qparams up front). GPTQ (gptq_prepare.h's damping, dead columns and
// fallbacks; no act-order: the sweep runs in column order) pushes each column's error onto the
// columns not yet quantized, row by row. The stored norm is s itself: the decode s·Rᵀc[idx] is
// then exactly the q the sweep assumed. With H = I (or a Hessian that fails to factor, or one of
// no tokens: GptqFallback's RTN cases) the codes are the data-free quantizer's, and the RTN cases
// return tq_quantize's result (norm-corrected) unchanged.
// Tests: tests/quant/test_turboquant.cpp (TurboquantGptq.*).
#pragma once

#include <cstdint>

#include "quant/gptq.h"
#include "quant/turboquant.h"

namespace dsv4::quant {

// w: [rows, cols] fp32; h: [cols, cols] fp32. opts: dampening and escalation (actorder ignored).
GptqResult tq_gptq_solve(const TqCodec& codec, const float* w, int64_t rows, int64_t cols, const float* h,
                         const GptqOptions& opts);

}  // namespace dsv4::quant

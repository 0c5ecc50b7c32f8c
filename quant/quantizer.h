// quantizer.h: the compressed-tensors quantizer arithmetic (gptq_and_formats.md §1.6, §1.8):
// qparams from per-cell min/max, per-column fake quantization (what a GPTQ sweep calls for each
// column), and whole-matrix round-to-nearest.
//
//   QParams qp = observer_qparams(args, w, rows, cols);           // observer.h
//   for (int64_t c = 0; c < cols; ++c) {
//     quantizer_fake_quant_column(args, qp, c, col, rows, codes, deq);   // col = W[:, c]
//   }
//   RtnResult r = quantizer_rtn(args, w, rows, cols);             // data-free
//
// Weights are row-major [rows, cols] floats (rows = out features). Codes are int32: the signed
// integer for int schemes, the e4m3 byte for fp8, the e2m1 nibble for fp4. Scales are floats
// holding exactly the value stored in the scale dtype. Tests: tests/quant/test_quantizer.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/quant_args.h"
#include "quant/quantizer_inline.h"  // CellQParams, and the arithmetic below as host/device code

namespace dsv4::quant {

// Quantization parameters of one weight, on the strategy's qparam grid (§1.6):
// tensor (1,1); channel (rows,1); group/tensor_group (rows, cols/group); block
// (ceil(rows/bh), ceil(cols/bw)). Row-major.
struct QParams {
  int64_t rows = 0, cols = 0;              // weight shape
  int64_t scale_rows = 0, scale_cols = 0;  // qparam grid shape
  std::vector<float> scale;                // stored scale (exact value of the scale dtype)
  std::vector<float> zero_point;           // signed-range zero point; all 0 when symmetric
  std::vector<uint8_t> scale_e8m0;         // the e8m0 bytes when scale_dtype is e8m0, else empty
  bool has_global_scale = false;           // tensor_group: s_eff = scale / global_scale
  float global_scale = 1.0f;

  int64_t scale_row(const QuantArgs& args, int64_t row) const;  // which qparam row a row uses
  int64_t scale_col(const QuantArgs& args, int64_t col) const;  // g_idx[col] (§1.6)
  int64_t index(const QuantArgs& args, int64_t row, int64_t col) const {
    return scale_row(args, row) * scale_cols + scale_col(args, col);
  }
};

// Qparam grid shape for a weight [rows, cols].
void qparams_shape(const QuantArgs& args, int64_t rows, int64_t cols, int64_t* scale_rows,
                   int64_t* scale_cols);

// NVFP4 global scale 448*6/amax in fp32; amax is clamped to >= FLT_MIN and a non-finite
// result becomes 1 (compressed-tensors PR #595).
float nvfp4_global_scale(float amax_tensor);

// calculate_qparams for one cell: min/max -> (scale, zero point). `global_scale` <= 0 means none.
// For tensor_group with no global scale (the MSE search) the e4m3 rounding is skipped (§1.9).
CellQParams qparams_calculate(const QuantArgs& args, float min_val, float max_val,
                              float global_scale);

// Qparams of a weight from per-cell min/max (each scale_rows*scale_cols long). For tensor_group,
// `amax_tensor` sets the global scale (pass the max |w| over the tensor or its fused set).
QParams qparams_from_minmax(const QuantArgs& args, int64_t rows, int64_t cols,
                            const std::vector<float>& min_vals, const std::vector<float>& max_vals,
                            float amax_tensor = 0.0f);

// Effective dequantization scale of a cell: scale, or scale/global_scale for tensor_group.
float qparams_effective_scale(const QParams& qp, int64_t cell);

// Quantize one value with an effective scale and zero point: returns the code; *deq gets
// quantizer_dequant_value of it. int: clamp(rne(x/s + zp)); fp8: clamp ±448 then RNE e4m3;
// fp4: e2m1 RNE grid.
int32_t quantizer_quantize_value(const QuantArgs& args, float x, float s_eff, float zp,
                                 float* deq);
// Value a code stands for before scaling (int code itself, e4m3/e2m1 decoded).
float quantizer_code_value(const QuantArgs& args, int32_t code);
// The fake-quant value of a code: (value(code) - zp) * s_eff, computed as compressed-tensors
// does it, in the scale's dtype: rounded to bf16 for model-dtype (bf16) scales, fp32 otherwise.
float quantizer_dequant_value(const QuantArgs& args, int32_t code, float s_eff, float zp);

// Fake-quantizes column `col` (rows values, W[:, col]) with the qparams. codes/deq may be null.
void quantizer_fake_quant_column(const QuantArgs& args, const QParams& qp, int64_t col,
                                 const float* w_col, int64_t rows, int32_t* codes, float* deq);

// Data-free round to nearest of a whole weight, qparams from args.observer.
struct RtnResult {
  QParams qparams;
  std::vector<int32_t> codes;   // [rows, cols]
  std::vector<float> dequant;   // [rows, cols]
};
// `arith` kBf16Model gives the peer's RTN (kPeerRtnArith below), for baselines only.
RtnResult quantizer_rtn(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                        QuotientArith arith = QuotientArith::kFp32);
// Same with given qparams (e.g. from an MSE observer or shared global scale).
RtnResult quantizer_rtn_with(const QuantArgs& args, const QParams& qp, const float* w,
                             QuotientArith arith = QuotientArith::kFp32);

// The RTN a user of llm-compressor gets on the BF16 copy of the release: the baseline that the
// "GPTQ vs RTN" figures of reports, manifests and `solve` compare against (issue 27). Artifacts
// solved data-free keep the fp32 quotient, which is never worse.
inline constexpr QuotientArith kPeerRtnArith = QuotientArith::kBf16Model;

// Re-encode a weight that is already FP8 e4m3 with per-[128,128] e8m0 block scales (the DSV4
// release) as `args` (FP8_BLOCK or FP8_BLOCK_E8M0). With e8m0 scales the source scales are kept,
// so codes and scales come back bit-identical; otherwise qparams come from the dequantized weight.
// codes: [rows, cols] e4m3 bytes; scales: [ceil(rows/128), ceil(cols/128)] e8m0 bytes.
RtnResult quantizer_fp8_block_reencode(const QuantArgs& args, const uint8_t* codes,
                                       const uint8_t* scales_e8m0, int64_t rows, int64_t cols);

// Direct MXFP4 (e2m1 nibbles one per int/uint8, e8m0 scales per 32 columns) -> INT4 group 32
// symmetric (args must be int4 sym group 32), one INT4 group per MX group. The scale per group is
// absmax/7.5 with args.observer == kMinMax, or the MSE search's choice with kMse.
RtnResult quantizer_mxfp4_to_int4(const QuantArgs& args, const uint8_t* nibbles,
                                  const uint8_t* scales_e8m0, int64_t rows, int64_t cols);

}  // namespace dsv4::quant

// quantizer_inline.h: the per-cell and per-value arithmetic of quantizer.h as inline host/device
// functions, so the CPU reference (quantizer.cpp) and the CUDA kernels (observer_cuda.cu,
// quantizer_cuda.cu, gptq_cuda.cu) run the same code and agree bit for bit.
//
//   const CellArgs ca = cell_args(args);                      // host: flatten QuantArgs once
//   CellQParams q = cell_qparams(ca, min_val, max_val, gs);   // calculate_qparams of one cell
//   float deq;
//   int32_t code = quantize_value(ca, x, s_eff, zp, &deq);    // fake quantization of one value
//
// Semantics are quantizer.h's (gptq_and_formats.md §1.8). The std::min/max/clamp comparisons are
// spelled out so NaN and ±0 behave as in the C++ reference, and every float operation is an
// explicitly rounded one on the device (no FMA contraction can change a result).
#pragma once

#include <cstdint>

#include "common/codec_inline.h"
#include "quant/quant_args.h"

#if !defined(__CUDA_ARCH__)
#include <cmath>
#endif

namespace dsv4::quant {

// calculate_qparams' result for one cell (quantizer.h re-exports it).
struct CellQParams {
  float scale = 0.0f;
  float zero_point = 0.0f;
  uint8_t e8m0 = 0;
};

// How x / s (and the zero-point add) is rounded before a code is chosen. kFp32: in fp32, as our RTN
// and every GPTQ sweep (llm-compressor's included: it widens the weight to fp32). kBf16Model: as
// llm-compressor's round-to-nearest on a BF16 model, where compressed-tensors divides the bf16
// weight by the bf16 scale in bf16; it differs from kFp32 only for model-dtype (bf16) scales, and
// at 8 bits by several percent of the error (tests/golden/make_peer_rtn_fixture.py).
enum class QuotientArith : uint8_t { kFp32, kBf16Model };

// QuantArgs reduced to what the per-cell arithmetic reads; a plain struct a kernel can take by
// value.
struct CellArgs {
  float qmin = 0.0f, qmax = 0.0f;
  int num_bits = 8;
  bool is_int = true;
  bool symmetric = true;
  bool is_mx = false;         // e8m0 scales on a group strategy (MX rule)
  bool tensor_group = false;  // NVFP4: scales multiplied by the global scale
  ScaleDType scale_dtype = ScaleDType::kModel;
  bool bf16_quotient = false;  // QuotientArith::kBf16Model with bf16 scales
};

inline CellArgs cell_args(const QuantArgs& a, QuotientArith arith = QuotientArith::kFp32) {
  CellArgs c;
  c.qmin = a.qmin();
  c.qmax = a.qmax();
  c.num_bits = a.num_bits;
  c.is_int = a.type == QuantType::kInt;
  c.symmetric = a.symmetric;
  c.is_mx = a.is_mx();
  c.tensor_group = a.strategy == Strategy::kTensorGroup;
  c.scale_dtype = a.scale_dtype;
  c.bf16_quotient = arith == QuotientArith::kBf16Model && a.scale_dtype == ScaleDType::kModel;
  return c;
}

namespace qi {  // the primitives; not part of the API

#if defined(__CUDA_ARCH__)
__device__ inline float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float rint_even(float x) { return rintf(x); }
#else
inline float div_rn(float a, float b) { return a / b; }
inline float add_rn(float a, float b) { return a + b; }
inline float sub_rn(float a, float b) { return a - b; }
inline float mul_rn(float a, float b) { return a * b; }
// torch.round: half to even (the default FP environment rounds to nearest even).
inline float rint_even(float x) { return std::nearbyint(x); }
#endif

// std::min / std::max / std::clamp, comparison for comparison.
DSV4_HOST_DEVICE inline float std_min(float a, float b) { return b < a ? b : a; }
DSV4_HOST_DEVICE inline float std_max(float a, float b) { return a < b ? b : a; }
DSV4_HOST_DEVICE inline float std_clamp(float v, float lo, float hi) { return v < lo ? lo : (hi < v ? hi : v); }
DSV4_HOST_DEVICE inline float abs_f(float x) { return codec::bits_to_float(codec::float_to_bits(x) & 0x7fffffffu); }
DSV4_HOST_DEVICE inline bool is_finite_f(float x) { return (codec::float_to_bits(x) & 0x7f800000u) != 0x7f800000u; }
DSV4_HOST_DEVICE inline float bf16_round(float x) { return codec::bf16_decode(codec::bf16_encode(x)); }
DSV4_HOST_DEVICE inline float e4m3_round(float x) { return codec::e4m3_decode(codec::e4m3_encode(x)); }

// Scale arithmetic in the model dtype: llm-compressor runs calculate_qparams on bf16 min/max
// tensors, so each torch op result is rounded to bf16 (§1.8). Other scale dtypes compute in fp32.
DSV4_HOST_DEVICE inline float arith(const CellArgs& a, float x) {
  return a.scale_dtype == ScaleDType::kModel ? bf16_round(x) : x;
}

// torch.finfo(scale dtype).eps, which replaces zero scales.
DSV4_HOST_DEVICE inline float scale_eps(ScaleDType d) {
  switch (d) {
    case ScaleDType::kModel: return 0.0078125f;              // bf16: 2^-7
    case ScaleDType::kF32: return 1.1920928955078125e-7f;    // FLT_EPSILON
    case ScaleDType::kE4m3: return 0.125f;
    case ScaleDType::kE8m0: return 1.0f;  // unreachable: e8m0 scales are never 0
  }
  return 1.1920928955078125e-7f;
}

// generate_mx_scales: round amax to a power of two at the element format's mantissa precision
// (fp32 bits + 2^21 for e2m1's 1 mantissa bit, then drop the mantissa), take its exponent, and
// subtract the element emax (2 for fp4: floor(log2 6); 8 for fp8: floor(log2 448)).
DSV4_HOST_DEVICE inline uint8_t mx_scale_byte(const CellArgs& a, float amax) {
  const int mantissa_bits = a.num_bits == 4 ? 1 : 3;
  const int elem_emax = a.num_bits == 4 ? 2 : 8;
  uint32_t bits = codec::float_to_bits(abs_f(amax));
  bits = (bits + (1u << (23 - mantissa_bits - 1))) & 0x7F800000u;
  if (bits == 0) return 0;  // log2(0) = -inf clamps to the smallest scale
  const int e = 127 + (static_cast<int>(bits >> 23) - 127) - elem_emax;
  return static_cast<uint8_t>(e < 0 ? 0 : (e > 254 ? 254 : e));
}

}  // namespace qi

// NVFP4 global scale 448*6/amax in fp32; amax is clamped to >= FLT_MIN and a non-finite result
// becomes 1 (compressed-tensors PR #595).
DSV4_HOST_DEVICE inline float global_scale_nvfp4(float amax_tensor) {
  const float amax = qi::std_max(qi::abs_f(amax_tensor), 1.17549435e-38f);  // FLT_MIN
  const float gs = qi::div_rn(448.0f * 6.0f, amax);
  return qi::is_finite_f(gs) ? gs : 1.0f;
}

// calculate_qparams for one cell: min/max -> (scale, zero point). `global_scale` <= 0 means none.
// For tensor_group with no global scale (the MSE search) the e4m3 rounding is skipped (§1.9).
DSV4_HOST_DEVICE inline CellQParams cell_qparams(const CellArgs& a, float min_val, float max_val,
                                                 float global_scale) {
  using namespace qi;
  min_val = std_min(min_val, 0.0f);  // zero must be representable
  max_val = std_max(max_val, 0.0f);
  const float range = sub_rn(a.qmax, a.qmin);
  const float amax = std_max(abs_f(min_val), abs_f(max_val));
  CellQParams out;
  if (a.scale_dtype == ScaleDType::kE8m0) {
    // MX rule for groups; elsewhere the DSV4 release rule 2^ceil(log2(amax/qmax)), never clips.
    out.e8m0 = a.is_mx ? mx_scale_byte(a, amax) : codec::e8m0_encode_ceil(div_rn(amax, a.qmax));
    out.scale = codec::e8m0_decode(out.e8m0);
    return out;
  }
  float s = a.symmetric ? arith(a, div_rn(amax, div_rn(range, 2.0f)))
                        : arith(a, div_rn(arith(a, sub_rn(max_val, min_val)), range));
  const bool has_global = global_scale > 0.0f;
  if (has_global) s = mul_rn(global_scale, s);
  if (a.scale_dtype == ScaleDType::kE4m3 && (has_global || !a.tensor_group)) {
    s = e4m3_round(std_min(s, 448.0f));
  }
  if (s == 0.0f) s = scale_eps(a.scale_dtype);
  // The zero point uses the final (eps-replaced) scale, so an all-zero group gets zp = qmin
  // instead of 0/0 (codes equal zp, dequantized values 0).
  if (!a.symmetric) {
    float zp = arith(a, sub_rn(a.qmin, arith(a, div_rn(min_val, s))));
    zp = std_clamp(zp, a.qmin, a.qmax);
    out.zero_point = a.is_int ? rint_even(zp) : e4m3_round(zp);
  }
  out.scale = s;
  return out;
}

// Value a code stands for before scaling (int code itself, e4m3/e2m1 decoded).
DSV4_HOST_DEVICE inline float code_value(const CellArgs& a, int32_t code) {
  if (a.is_int) return static_cast<float>(code);
  if (a.num_bits == 8) return codec::e4m3_decode(static_cast<uint8_t>(code));
  return codec::e2m1_decode(static_cast<uint8_t>(code));
}

// compressed-tensors multiplies in the scale's dtype: with bf16 ("model") scales the fake-quant
// value is bf16(code * scale), and GPTQ propagates exactly that value's error. The difference of
// code and zero point is exact (both small integers).
DSV4_HOST_DEVICE inline float dequant_value(const CellArgs& a, int32_t code, float s_eff, float zp) {
  const float d = qi::mul_rn(qi::sub_rn(code_value(a, code), zp), s_eff);
  return a.scale_dtype == ScaleDType::kModel ? qi::bf16_round(d) : d;
}

// x/s + zp, each step rounded to bf16 when bf16_quotient (QuotientArith::kBf16Model).
DSV4_HOST_DEVICE inline float scaled_value(float x, float s, float zp, bool bf16_quotient) {
  using namespace qi;
  if (!bf16_quotient) return zp == 0.0f ? div_rn(x, s) : add_rn(div_rn(x, s), zp);
  const float q = bf16_round(div_rn(x, s));
  return zp == 0.0f ? q : bf16_round(add_rn(q, zp));
}

// The integer branch of quantize_value with its arguments unpacked, for the GPTQ sweep kernels
// (gptq_cuda.cu), whose inner loop cannot afford the format dispatch: clamp(rne(x/s + zp)) and
// the dequantized value (c - zp)·s, rounded to bf16 for model-dtype scales.
DSV4_HOST_DEVICE inline int32_t quantize_int(float x, float s, float zp, float qmin, float qmax, bool bf16_dequant,
                                             float* deq, bool bf16_quotient = false) {
  using namespace qi;
  const float v = std_clamp(scaled_value(x, s, zp, bf16_quotient), qmin, qmax);
  const int32_t code = static_cast<int32_t>(rint_even(v));
  const float d = mul_rn(sub_rn(static_cast<float>(code), zp), s);
  *deq = bf16_dequant ? bf16_round(d) : d;
  return code;
}

// Quantize one value with an effective scale and zero point: returns the code; *deq gets
// dequant_value of it. int: clamp(rne(x/s + zp)); fp8: clamp ±448 then RNE e4m3; fp4: e2m1 grid.
// zp == 0 is not added, so -0 stays -0 (e4m3 0x80 re-encodes to 0x80; the value is the same).
DSV4_HOST_DEVICE inline int32_t quantize_value(const CellArgs& a, float x, float s_eff, float zp, float* deq) {
  using namespace qi;
  if (a.is_int) {
    float d;
    const int32_t code =
        quantize_int(x, s_eff, zp, a.qmin, a.qmax, a.scale_dtype == ScaleDType::kModel, &d, a.bf16_quotient);
    if (deq != nullptr) *deq = d;
    return code;
  }
  const float v = std_clamp(scaled_value(x, s_eff, zp, a.bf16_quotient), a.qmin, a.qmax);
  int32_t code;
  if (a.num_bits == 8) {
    code = codec::e4m3_encode(v);
  } else {
    code = codec::e2m1_encode(v);
  }
  if (deq != nullptr) *deq = dequant_value(a, code, s_eff, zp);
  return code;
}

}  // namespace dsv4::quant

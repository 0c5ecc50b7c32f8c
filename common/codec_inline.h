// codec_inline.h: the bodies of the scalar codecs of codec.h, as inline host/device functions,
// so CUDA kernels and the CPU reference run the same code. Host callers use codec.h (thin
// out-of-line wrappers in codec.cpp); kernels include this header and call dsv4::codec::*.
//
//   __global__ void k(const uint8_t* q, const uint8_t* s, float* w) {
//     w[i] = dsv4::codec::e4m3_decode(q[i]) * dsv4::codec::e8m0_decode(s[i / 128]);
//   }
//
// The semantics (rounding, saturation, NaN handling) are documented in codec.h and tested in
// tests/common/test_codec.cpp (CPU) and tests/common/test_codec_cuda.cu (GPU == CPU bitwise).
// Everything works on the IEEE bit patterns with integer arithmetic (e2m1_encode adds exact
// comparisons), so results never depend on the FPU rounding mode or on flush-to-zero (nvcc
// --use_fast_math flushes float denormals, and e8m0 byte 0 decodes to the denormal 2^-127).
// No CUDA header is included: under nvcc the device intrinsics are predeclared.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define DSV4_HOST_DEVICE __host__ __device__
#else
#define DSV4_HOST_DEVICE
#endif

namespace dsv4::codec {

// Bit casts that work in both passes: memcpy and std::bit_cast are not device functions.
DSV4_HOST_DEVICE inline uint32_t float_to_bits(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#else
  return __builtin_bit_cast(uint32_t, value);
#endif
}

DSV4_HOST_DEVICE inline float bits_to_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  return __builtin_bit_cast(float, bits);
#endif
}

// significand >> shift, rounded to nearest, ties to even; shift in [1, 31].
DSV4_HOST_DEVICE inline uint32_t shift_right_rne(uint32_t significand, int shift) {
  const uint32_t kept = significand >> shift;
  const uint32_t rest = significand & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  return kept + ((rest > half || (rest == half && (kept & 1u) != 0)) ? 1u : 0u);
}

// bf16 ------------------------------------------------------------------------------------------

DSV4_HOST_DEVICE inline float bf16_decode(uint16_t bits) {
  return bits_to_float(static_cast<uint32_t>(bits) << 16);
}

DSV4_HOST_DEVICE inline uint16_t bf16_encode(float value) {
  const uint32_t u = float_to_bits(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    // NaN: plain truncation could clear every payload bit and produce inf; set the quiet bit.
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  // RNE on the low 16 bits. A carry out of the mantissa bumps the exponent, which is the right
  // result, including the overflow of values >= max + half ulp to inf.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// fp16 ------------------------------------------------------------------------------------------

DSV4_HOST_DEVICE inline float fp16_decode(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_float(sign);
  // Subnormal m * 2^-24: normalise so the leading 1 sits at bit 10 (the implicit bit).
  uint32_t e = 113;  // float exponent field of 2^-14, the fp16 subnormal scale times 2^10
  uint32_t m = mantissa;
  while ((m & 0x400u) == 0) {
    m <<= 1;
    --e;
  }
  return bits_to_float(sign | (e << 23) | ((m & 0x3ffu) << 13));
}

DSV4_HOST_DEVICE inline uint16_t fp16_encode(float value) {
  const uint32_t u = float_to_bits(value);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {  // NaN: keep the top payload bits, force quiet so it stays NaN
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) {  // >= 65520 = 65504 + half ulp: ties to even go to inf (0x7bff is odd)
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (a >= 0x38800000u) {  // >= 2^-14: normal; rebias 127 -> 15 and RNE at bit 13
    return static_cast<uint16_t>(sign | ((a - (112u << 23)) + 0xfffu + ((a >> 13) & 1u)) >> 13);
  }
  const uint32_t exponent = a >> 23;
  if (exponent < 102) return static_cast<uint16_t>(sign);  // < 2^-25: rounds to 0
  // Subnormal: value / 2^-24 = significand * 2^(exponent - 126), shift in [14, 24]. Rounding up
  // from 0x3ff to 0x400 yields the smallest normal, which is the correct encoding.
  const uint32_t significand = (a & 0x7fffffu) | 0x800000u;
  return static_cast<uint16_t>(sign |
                               shift_right_rne(significand, 126 - static_cast<int>(exponent)));
}

// e4m3 (OCP FP8 E4M3FN) -------------------------------------------------------------------------

DSV4_HOST_DEVICE inline float e4m3_decode(uint8_t code) {
  const uint32_t sign = static_cast<uint32_t>(code & 0x80u) << 24;
  const uint32_t exponent = (code >> 3) & 0xfu;
  const uint32_t mantissa = code & 0x7u;
  if ((code & 0x7fu) == 0x7fu) return bits_to_float(sign | 0x7fc00000u);
  if (exponent != 0) return bits_to_float(sign | ((exponent + 120u) << 23) | (mantissa << 20));
  if (mantissa == 0) return bits_to_float(sign);
  // Subnormal m/8 * 2^-6 = m * 2^-9, m in 1..7: leading bit at position p gives 2^(p - 9).
  const uint32_t p = mantissa >= 4 ? 2u : (mantissa >= 2 ? 1u : 0u);
  const uint32_t fraction = (mantissa << (23 - p)) & 0x7fffffu;  // drop the leading bit
  return bits_to_float(sign | ((118u + p) << 23) | fraction);
}

DSV4_HOST_DEVICE inline uint8_t e4m3_encode(float value) {
  const uint32_t u = float_to_bits(value);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint8_t>(sign | 0x7fu);  // NaN
  // E4M3FN has no inf, and 0x7F would be NaN: everything from 448 up (incl. inf) saturates.
  if (a >= 0x43e00000u) return static_cast<uint8_t>(sign | 0x7eu);
  if (a >= 0x3c800000u) {  // >= 2^-6: normal; rebias 127 -> 7 and RNE at bit 20
    return static_cast<uint8_t>(sign | ((a - (120u << 23)) + 0x7ffffu + ((a >> 20) & 1u)) >> 20);
  }
  const uint32_t exponent = a >> 23;
  if (exponent < 117) return static_cast<uint8_t>(sign);  // < 2^-10 (half of 2^-9): to ±0
  // Subnormal: value / 2^-9 = significand * 2^(exponent - 141), shift in [21, 24]; 7 rounding up
  // to 8 is code 0x08, the smallest normal.
  const uint32_t significand = (a & 0x7fffffu) | 0x800000u;
  return static_cast<uint8_t>(sign | shift_right_rne(significand, 141 - static_cast<int>(exponent)));
}

// e8m0 ------------------------------------------------------------------------------------------

DSV4_HOST_DEVICE inline float e8m0_decode(uint8_t code) {
  if (code == 0xff) return bits_to_float(0x7fc00000u);
  if (code == 0) return bits_to_float(0x00400000u);  // 2^-127 is a float denormal
  return bits_to_float(static_cast<uint32_t>(code) << 23);
}

DSV4_HOST_DEVICE inline uint8_t e8m0_from_exponent(int exponent) {
  const int clamped = exponent < -127 ? -127 : (exponent > 127 ? 127 : exponent);
  return static_cast<uint8_t>(clamped + 127);
}

DSV4_HOST_DEVICE inline uint8_t e8m0_encode_ceil(float value) {
  const uint32_t u = float_to_bits(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0xff;  // NaN
  if ((u & 0x80000000u) != 0) return 0;              // negative or -0: <= 2^-127
  if (u > 0x7f000000u) return 254;                   // > 2^127, incl. inf
  const uint32_t exponent = u >> 23;
  const uint32_t mantissa = u & 0x7fffffu;
  if (exponent == 0) return mantissa > 0x400000u ? 1 : 0;  // denormal: (2^-127, 2^-126) -> 2^-126
  // 2^(e-127) * 1.m: an exact power when m == 0, otherwise the next one up.
  return static_cast<uint8_t>(exponent + (mantissa != 0 ? 1u : 0u));
}

// e2m1 (OCP FP4) --------------------------------------------------------------------------------

DSV4_HOST_DEVICE inline float e2m1_decode(uint8_t nibble) {
  const uint32_t sign = static_cast<uint32_t>(nibble & 0x8u) << 28;
  const uint32_t exponent = (nibble >> 1) & 0x3u;
  const uint32_t mantissa = nibble & 0x1u;
  if (exponent == 0) return bits_to_float(sign | (mantissa != 0 ? 0x3f000000u : 0u));  // 0, 0.5
  // Bias 1: 2^(e-1) * (1 + m/2).
  return bits_to_float(sign | ((exponent + 126u) << 23) | (mantissa << 22));
}

DSV4_HOST_DEVICE inline uint8_t e2m1_encode(float value) {
  const uint32_t u = float_to_bits(value);
  const uint32_t a_bits = u & 0x7fffffffu;
  if (a_bits > 0x7f800000u) return 0;  // NaN: e2m1 has none
  const float a = bits_to_float(a_bits);
  // Decision points are the midpoints of the grid 0, .5, 1, 1.5, 2, 3, 4, 6. At a midpoint the
  // even code wins (codes 0, 2, 4, 6), hence <= below an even code and < below an odd one.
  // Anything above 5 (incl. inf) is code 7 = 6, which is the clamp.
  uint8_t code;
  if (a <= 0.25f) code = 0;
  else if (a < 0.75f) code = 1;
  else if (a <= 1.25f) code = 2;
  else if (a < 1.75f) code = 3;
  else if (a <= 2.5f) code = 4;
  else if (a < 3.5f) code = 5;
  else if (a <= 5.0f) code = 6;
  else code = 7;
  return static_cast<uint8_t>(code | ((u >> 28) & 0x8u));
}

}  // namespace dsv4::codec

// hessian_exact_inline.h: HessianExactSum's per-entry arithmetic (hessian_exact.h) as inline
// host/device functions, so that the CPU sum (hessian_exact.cpp) and the GPU's
// (hessian_exact_cuda.cu) turn an fp32 Gram entry into the same fixed-point addends and round
// the same limbs to the same fp32 value, bit for bit.
//
//   int64_t a[3];  int status = exact_addend(v, a);   // v in units of 2^-64, as 3 limb addends
//   exact_normalize(l0, l1, l2);                       // carries propagated, l0 and l1 in [0, 2^42)
//   float s = exact_round(l0, l1, l2, &status);        // the 126-bit value, rounded to fp32
//
// exact_round rounds as the C++ reference did before it was shared: the 126-bit integer to the
// nearest double (ties to even), times 2^-64 (exact), to the nearest float. Nothing here calls a
// library conversion of a 128-bit integer, which the device lacks.
#pragma once

#include <cstdint>

#include "common/codec_inline.h"

namespace dsv4::quant {

// 128-bit integers: GCC's and nvcc's extension (__extension__ keeps -Wpedantic quiet).
__extension__ typedef __int128 ExactI128;
__extension__ typedef unsigned __int128 ExactU128;

constexpr int kExactFracBits = 64;
constexpr int kExactLimbBits = 42;
constexpr int64_t kExactLimbMask = (int64_t{1} << kExactLimbBits) - 1;

// Status bits (0: fine); the host turns them into the CPU sum's messages (hessian_exact.cpp).
enum ExactStatus : int {
  kExactNonFinite = 1,     // a Gram entry is NaN or infinite
  kExactEntryTooLarge = 2, // a Gram entry with |v| >= 2^60
  kExactSumTooLarge = 4,   // a sum beyond ±2^59 when rounded
};

// v as an integer count of 2^-64 split into limb addends a[0] + a[1]·2^42 + a[2]·2^84: exact
// when v's last mantissa bit is at or above 2^-64, else truncated toward zero (the same for every
// caller, so sums stay grouping-independent). |a[0]|, |a[1]| < 2^42, so 2^20 adds need no carry.
DSV4_HOST_DEVICE inline int exact_addend(float v, int64_t a[3]) {
  a[0] = a[1] = a[2] = 0;
  const uint32_t bits = codec::float_to_bits(v);
  const int biased = static_cast<int>((bits >> 23) & 0xff);
  if (biased == 0xff) return kExactNonFinite;
  if (biased == 0 && (bits & 0x7fffff) == 0) return 0;
  // |v| = m · 2^(e - 23) with m < 2^24 (subnormals: no implicit bit, e = -126).
  const uint64_t m = biased == 0 ? (bits & 0x7fffffu) : ((bits & 0x7fffffu) | 0x800000u);
  const int e = biased == 0 ? -126 : biased - 127;
  if (e >= 60) return kExactEntryTooLarge;
  const int shift = e - 23 + kExactFracBits;  // < 101
  const ExactU128 magnitude =
      shift >= 0 ? static_cast<ExactU128>(m) << shift : (shift > -64 ? static_cast<ExactU128>(m >> -shift) : 0);
  const int64_t l0 = static_cast<int64_t>(static_cast<uint64_t>(magnitude) & kExactLimbMask);
  const int64_t l1 = static_cast<int64_t>(static_cast<uint64_t>(magnitude >> kExactLimbBits) & kExactLimbMask);
  const int64_t l2 = static_cast<int64_t>(magnitude >> (2 * kExactLimbBits));
  const bool negative = (bits >> 31) != 0;
  a[0] = negative ? -l0 : l0;
  a[1] = negative ? -l1 : l1;
  a[2] = negative ? -l2 : l2;
  return 0;
}

// The unique normalized form of the same value: l0, l1 in [0, 2^42) (the arithmetic shift
// floors, so negative values carry down correctly), l2 signed.
DSV4_HOST_DEVICE inline void exact_normalize(int64_t& l0, int64_t& l1, int64_t& l2) {
  int64_t carry = l0 >> kExactLimbBits;
  l0 &= kExactLimbMask;
  l1 += carry;
  carry = l1 >> kExactLimbBits;
  l1 &= kExactLimbMask;
  l2 += carry;
}

// The nearest double to a signed 128-bit integer (ties to even): the top 64 significant bits
// with every lower bit folded into a sticky bit, converted (one correctly rounded conversion).
DSV4_HOST_DEVICE inline double exact_int128_to_double(ExactI128 v) {
  const bool negative = v < 0;
  const ExactU128 u = negative ? ExactU128{0} - static_cast<ExactU128>(v) : static_cast<ExactU128>(v);
  const uint64_t hi = static_cast<uint64_t>(u >> 64);
  double d;
  if (hi == 0) {
    d = static_cast<double>(static_cast<uint64_t>(u));
  } else {
#if defined(__CUDA_ARCH__)
    const int shift = 64 - __clzll(static_cast<long long>(hi));
#else
    const int shift = 64 - __builtin_clzll(hi);
#endif
    uint64_t top = static_cast<uint64_t>(u >> shift);
    if ((u & ((ExactU128{1} << shift) - 1)) != 0) top |= 1;  // below the rounding bit: only "nonzero" matters
    d = static_cast<double>(top) * static_cast<double>(uint64_t{1} << shift);  // shift <= 62: exact
  }
  return negative ? -d : d;
}

// The (not necessarily normalized) limbs' value l0 + l1·2^42 + l2·2^84 in units of 2^-64,
// rounded to fp32 through double; *status gains kExactSumTooLarge beyond ±2^59.
DSV4_HOST_DEVICE inline float exact_round(int64_t l0, int64_t l1, int64_t l2, int* status) {
  exact_normalize(l0, l1, l2);
  if (!(l2 > -(int64_t{1} << 39) && l2 < (int64_t{1} << 39))) {
    *status |= kExactSumTooLarge;
    return 0.0f;
  }
  const ExactI128 v =
      (static_cast<ExactI128>(l2) << (2 * kExactLimbBits)) + (static_cast<ExactI128>(l1) << kExactLimbBits) + l0;
  return static_cast<float>(exact_int128_to_double(v) * 0x1p-64);  // the product is exact
}

}  // namespace dsv4::quant

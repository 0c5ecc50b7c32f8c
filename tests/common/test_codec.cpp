// test_codec.cpp: exhaustive checks of the scalar codecs of common/codec.h against references
// written here from the format definitions (and, for fp16, GCC's _Float16 conversions). Every
// decoder is checked on all of its codes; encoders on every code, every midpoint between
// adjacent codes, and a brute-force nearest-ties-to-even search over all 65536 bf16 inputs.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec.h"

namespace dsv4 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kFloatMax = std::numeric_limits<float>::max();

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
float from_bits(uint32_t u) { return std::bit_cast<float>(u); }
float next_up(float f) { return std::nextafter(f, kInf); }
float next_down(float f) { return std::nextafter(f, -kInf); }

// Which of the grid values a, b is nearer to x: -1 a, +1 b, 0 tie. Compares x with the midpoint
// instead of subtracting, because |x - a| rounds in double for large x (|2^60 - 4| == |2^60 - 6|)
// and would fake ties. The midpoint of two values of a small format is exact.
int grid_nearer(float x, double a, double b) {
  if (a == b) return 0;
  const double mid = (a + b) / 2;
  const double xd = x;
  if (xd == mid) return 0;
  return (xd < mid) == (a < b) ? -1 : 1;
}

// Brute-force RNE onto a grid: the nearest of `count` codes (value(code), NaN codes skipped), ties
// to the even code (= even mantissa, the lowest code bit); between +0 and -0, the one with x's
// sign (`sign_bit` is the code's sign bit).
template <typename Value>
uint32_t nearest_code_reference(float x, uint32_t count, uint32_t sign_bit, Value value) {
  int64_t best = -1;
  double best_value = 0;
  for (uint32_t c = 0; c < count; ++c) {
    const double v = value(c);
    if (std::isnan(v)) continue;
    const int order = best < 0 ? -1 : grid_nearer(x, v, best_value);
    bool take = order < 0;
    if (order == 0) {
      const bool c_even = (c & 1u) == 0;
      const bool best_even = (best & 1) == 0;
      take = (c_even && !best_even) ||
             (c_even == best_even && ((c & sign_bit) != 0) == std::signbit(x));
    }
    if (take) {
      best = c;
      best_value = v;
    }
  }
  return static_cast<uint32_t>(best);
}

// Counts checks and failures of one sweep and keeps the first failure's description, so a broken
// codec reports "1234/65536 wrong; first: ..." instead of 1234 lines. `describe` only runs on
// failure, which keeps million-element sweeps fast.
struct Tally {
  size_t checked = 0;
  size_t failed = 0;
  std::string first;
  void check(bool ok, auto&& describe) {
    ++checked;
    if (!ok && failed++ == 0) first = describe();
  }
};

#define EXPECT_TALLY_CLEAN(tally, min_checked)                                             \
  do {                                                                                     \
    EXPECT_GE((tally).checked, static_cast<size_t>(min_checked)) << "sweep too small";     \
    EXPECT_EQ((tally).failed, 0u) << (tally).failed << "/" << (tally).checked              \
                                  << " wrong; first: " << (tally).first;                   \
  } while (0)

// The float sweep used by several encoders: 2^20 bit patterns spread over all 2^32 (stride
// 4096), once with zero low bits (exact ties for formats that drop <= 12 bits) and once with
// hashed low bits (sticky bits set).
std::vector<uint32_t> float_sweep_bits() {
  std::vector<uint32_t> out;
  out.reserve(2u << 20);
  for (uint32_t i = 0; i < (1u << 20); ++i) {
    out.push_back(i << 12);
    out.push_back((i << 12) | ((i * 2654435761u) >> 20));
  }
  return out;
}

// bf16 ------------------------------------------------------------------------------------------

bool bf16_is_nan(uint32_t code) { return (code & 0x7f80u) == 0x7f80u && (code & 0x7fu) != 0; }

TEST(CodecBf16, DecodeAllCodes) {
  Tally t;
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint32_t got = bits_of(bf16_decode(static_cast<uint16_t>(c)));
    t.check(got == c << 16, [&] { return strfmt("code 0x%04x -> bits 0x%08x", c, got); });
  }
  EXPECT_TALLY_CLEAN(t, 65536);
}

TEST(CodecBf16, EncodeRoundTripsEveryCode) {
  Tally t;
  size_t nans = 0;
  for (uint32_t c = 0; c < 65536; ++c) {
    const uint16_t got = bf16_encode(bf16_decode(static_cast<uint16_t>(c)));
    if (bf16_is_nan(c)) {
      ++nans;
      t.check(bf16_is_nan(got) && (got & 0x8000u) == (c & 0x8000u),
              [&] { return strfmt("NaN code 0x%04x -> 0x%04x", c, got); });
    } else {
      t.check(got == c, [&] { return strfmt("code 0x%04x -> 0x%04x", c, got); });
    }
  }
  EXPECT_EQ(nans, 2u * 127u);
  EXPECT_TALLY_CLEAN(t, 65536);
}

TEST(CodecBf16, MidpointsTieToEven) {
  // Between magnitude codes c and c+1 the midpoint is c's bits with only bit 15 set below; for
  // c = 0x7f7f, c+1 is inf, so this also checks that max + half ulp (odd max) overflows to inf.
  Tally t;
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t c = 0; c <= 0x7f7fu; ++c) {
      const uint32_t even = (c & 1u) == 0 ? c : c + 1;
      const uint32_t mid = ((sign | c) << 16) | 0x8000u;
      const uint16_t at = bf16_encode(from_bits(mid));
      const uint16_t above = bf16_encode(from_bits(mid + 1));
      const uint16_t below = bf16_encode(from_bits(mid - 1));
      t.check(at == (sign | even) && above == (sign | (c + 1)) && below == (sign | c), [&] {
        return strfmt("c 0x%04x: mid -> 0x%04x (want 0x%04x), above -> 0x%04x, below -> 0x%04x",
                      sign | c, at, sign | even, above, below);
      });
    }
  }
  EXPECT_TALLY_CLEAN(t, 2 * 0x7f80);
}

TEST(CodecBf16, EncodeMatchesNearestSearchOnFloatSweep) {
  // Reference: the two bf16 neighbours of |x| (truncation and the next code), chosen by distance
  // in double; inf counts as 2^128, as IEEE overflow rounding does.
  Tally t;
  for (uint32_t u : float_sweep_bits()) {
    const float x = from_bits(u);
    if (std::isnan(x) || std::isinf(x)) continue;
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t lo = (u & 0x7fffffffu) >> 16;
    const double a = std::fabs(static_cast<double>(x));
    const double lo_value = std::fabs(static_cast<double>(bf16_decode(static_cast<uint16_t>(lo))));
    const double hi_value = lo + 1 == 0x7f80u
                                ? std::ldexp(1.0, 128)
                                : static_cast<double>(bf16_decode(static_cast<uint16_t>(lo + 1)));
    const double d_lo = a - lo_value;
    const double d_hi = hi_value - a;
    const uint32_t want =
        sign | (d_lo < d_hi ? lo : (d_hi < d_lo ? lo + 1 : ((lo & 1u) == 0 ? lo : lo + 1)));
    const uint16_t got = bf16_encode(x);
    t.check(got == want, [&] { return strfmt("x bits 0x%08x -> 0x%04x, want 0x%04x", u, got, want); });
  }
  EXPECT_TALLY_CLEAN(t, 2000000);
}

TEST(CodecBf16, OverflowRoundsToInf) {
  EXPECT_EQ(bf16_encode(kFloatMax), 0x7f80);
  EXPECT_EQ(bf16_encode(-kFloatMax), 0xff80);
  EXPECT_EQ(bf16_encode(kInf), 0x7f80);
  EXPECT_EQ(bf16_encode(-kInf), 0xff80);
  EXPECT_EQ(bf16_encode(from_bits(0x7f7f7fffu)), 0x7f7f);  // just below max + half ulp
  EXPECT_EQ(bf16_encode(1.0f), 0x3f80);
  EXPECT_EQ(bf16_encode(-0.0f), 0x8000);
}

TEST(CodecBf16, NanPayloadStaysNan) {
  // Payloads living only in the low 16 bits would truncate to inf without the quiet bit.
  Tally t;
  for (uint32_t sign : {0u, 0x80000000u}) {
    for (uint32_t payload = 1; payload <= 0xffffu; ++payload) {
      for (uint32_t high : {0u, 0x10000u, 0x400000u}) {
        const uint32_t u = sign | 0x7f800000u | high | payload;
        const uint16_t got = bf16_encode(from_bits(u));
        t.check(bf16_is_nan(got) && (got & 0x8000u) == (sign >> 16),
                [&] { return strfmt("NaN bits 0x%08x -> 0x%04x", u, got); });
      }
    }
  }
  EXPECT_TALLY_CLEAN(t, 6 * 65535);
  EXPECT_TRUE(std::isnan(bf16_decode(bf16_encode(kNan))));
}

// fp16 ------------------------------------------------------------------------------------------

// Independent reference: GCC's _Float16 (soft-float or F16C conversions, IEEE RNE).
float fp16_reference_decode(uint16_t code) {
  return static_cast<float>(std::bit_cast<_Float16>(code));
}
uint16_t fp16_reference_encode(float x) { return std::bit_cast<uint16_t>(static_cast<_Float16>(x)); }

bool fp16_is_nan(uint32_t code) { return (code & 0x7c00u) == 0x7c00u && (code & 0x3ffu) != 0; }

TEST(CodecFp16, DecodeAllCodesMatchesFloat16) {
  Tally t;
  size_t nans = 0;
  for (uint32_t c = 0; c < 65536; ++c) {
    const float got = fp16_decode(static_cast<uint16_t>(c));
    const float want = fp16_reference_decode(static_cast<uint16_t>(c));
    if (fp16_is_nan(c)) {
      ++nans;
      t.check(std::isnan(got) && std::signbit(got) == std::signbit(want),
              [&] { return strfmt("NaN code 0x%04x -> %g", c, got); });
    } else {
      t.check(bits_of(got) == bits_of(want), [&] {
        return strfmt("code 0x%04x -> %a, want %a", c, static_cast<double>(got),
                      static_cast<double>(want));
      });
    }
  }
  EXPECT_EQ(nans, 2u * 1023u);
  EXPECT_TALLY_CLEAN(t, 65536);
}

TEST(CodecFp16, EncodeMatchesFloat16) {
  std::vector<float> inputs;
  for (uint32_t u : float_sweep_bits()) inputs.push_back(from_bits(u));
  for (uint32_t c = 0; c < 65536; ++c) inputs.push_back(bf16_decode(static_cast<uint16_t>(c)));
  // Every midpoint between adjacent finite fp16 magnitudes (exact in float: 12 significant
  // bits), and the floats on either side of it; the last one is 65504 + 16 = 65520.
  for (uint32_t h = 0; h < 0x7bffu; ++h) {
    const double lo = fp16_decode(static_cast<uint16_t>(h));
    const double hi = fp16_decode(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((lo + hi) / 2);
    for (float x : {mid, next_up(mid), next_down(mid)}) {
      inputs.push_back(x);
      inputs.push_back(-x);
    }
  }
  for (float x : {65520.0f, next_down(65520.0f), 65504.0f, kInf, -kInf, kFloatMax}) {
    inputs.push_back(x);
  }
  Tally t;
  for (float x : inputs) {
    const uint16_t got = fp16_encode(x);
    const uint16_t want = fp16_reference_encode(x);
    if (std::isnan(x)) {
      t.check(fp16_is_nan(got) && (got & 0x8000u) == (want & 0x8000u),
              [&] { return strfmt("NaN bits 0x%08x -> 0x%04x", bits_of(x), got); });
    } else {
      t.check(got == want, [&] {
        return strfmt("x %a (bits 0x%08x) -> 0x%04x, want 0x%04x", static_cast<double>(x),
                      bits_of(x), got, want);
      });
    }
  }
  EXPECT_TALLY_CLEAN(t, (2u << 20) + 65536 + 6 * 0x7bff);
}

TEST(CodecFp16, KnownValues) {
  EXPECT_EQ(fp16_encode(1.0f), 0x3c00);
  EXPECT_EQ(fp16_encode(-2.0f), 0xc000);
  EXPECT_EQ(fp16_encode(-0.0f), 0x8000);
  EXPECT_EQ(fp16_encode(65504.0f), 0x7bff);
  EXPECT_EQ(fp16_encode(next_down(65520.0f)), 0x7bff);
  EXPECT_EQ(fp16_encode(65520.0f), 0x7c00);  // tie with odd max: overflows to inf
  EXPECT_EQ(fp16_encode(kInf), 0x7c00);
  EXPECT_EQ(fp16_encode(-kInf), 0xfc00);
  EXPECT_EQ(fp16_encode(std::ldexp(1.0f, -14)), 0x0400);             // smallest normal
  EXPECT_EQ(fp16_encode(next_down(std::ldexp(1.0f, -14))), 0x0400);  // rounds up into it
  EXPECT_EQ(fp16_encode(std::ldexp(1.0f, -24)), 0x0001);             // smallest subnormal
  EXPECT_EQ(fp16_encode(std::ldexp(1.0f, -25)), 0x0000);             // tie -> even 0
  EXPECT_EQ(fp16_encode(next_up(std::ldexp(1.0f, -25))), 0x0001);
  EXPECT_EQ(fp16_encode(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units -> 2
  EXPECT_EQ(fp16_encode(std::ldexp(5.0f, -25)), 0x0002);  // 2.5 units -> 2
  EXPECT_EQ(fp16_encode(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_TRUE(fp16_is_nan(fp16_encode(from_bits(0x7f800001u))));  // payload below fp16 bits
  EXPECT_EQ(fp16_encode(-kNan) & 0x8000u, 0x8000u);
  EXPECT_EQ(fp16_decode(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_decode(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_decode(0xfc00), -kInf);
}

// e4m3 ------------------------------------------------------------------------------------------

bool e4m3_is_nan(uint32_t code) { return (code & 0x7fu) == 0x7fu; }

// OCP E4M3FN from its definition: sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is
// subnormal m/8 * 2^-6; S.1111.111 is NaN; there are no infinities.
double e4m3_reference(uint32_t code) {
  const int sign = (code >> 7) & 1;
  const int exponent = (code >> 3) & 15;
  const int mantissa = code & 7;
  if (exponent == 15 && mantissa == 7) return std::nan("");
  const double magnitude = exponent == 0 ? (mantissa / 8.0) * std::ldexp(1.0, -6)
                                         : (1.0 + mantissa / 8.0) * std::ldexp(1.0, exponent - 7);
  return sign != 0 ? -magnitude : magnitude;
}

// Nearest finite code of the 254 by exhaustive search (ties: see nearest_code_reference).
uint8_t e4m3_nearest_reference(float x) {
  return static_cast<uint8_t>(nearest_code_reference(x, 256, 0x80, e4m3_reference));
}

TEST(CodecE4m3, DecodeAllCodesMatchesDefinition) {
  Tally t;
  size_t nans = 0;
  for (uint32_t c = 0; c < 256; ++c) {
    const float got = e4m3_decode(static_cast<uint8_t>(c));
    const double want = e4m3_reference(c);
    if (std::isnan(want)) {
      ++nans;
      t.check(std::isnan(got), [&] { return strfmt("NaN code 0x%02x -> %g", c, got); });
    } else {
      t.check(bits_of(got) == bits_of(static_cast<float>(want)),
              [&] { return strfmt("code 0x%02x -> %a, want %a", c, static_cast<double>(got), want); });
    }
  }
  EXPECT_EQ(nans, 2u) << "only 0x7F and 0xFF are NaN";
  EXPECT_TALLY_CLEAN(t, 256);
}

TEST(CodecE4m3, DecodeKnownValues) {
  EXPECT_EQ(e4m3_decode(0x7e), 448.0f);
  EXPECT_EQ(e4m3_decode(0xfe), -448.0f);
  EXPECT_EQ(e4m3_decode(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(e4m3_decode(0x07), std::ldexp(7.0f, -9));  // largest subnormal
  EXPECT_EQ(e4m3_decode(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(e4m3_decode(0x38), 1.0f);
  EXPECT_EQ(e4m3_decode(0xb8), -1.0f);
  EXPECT_EQ(e4m3_decode(0x58), 16.0f);
  EXPECT_EQ(bits_of(e4m3_decode(0x00)), 0u);
  EXPECT_EQ(bits_of(e4m3_decode(0x80)), 0x80000000u);  // -0
  EXPECT_TRUE(std::isnan(e4m3_decode(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_decode(0xff)));
  EXPECT_FALSE(std::isnan(e4m3_decode(0x77)));  // S.1110.111 = 240 is finite (E4M3FN)
  EXPECT_EQ(e4m3_decode(0x77), 240.0f);
  EXPECT_EQ(e4m3_decode(0x78), 256.0f);
}

TEST(CodecE4m3, EncodeRoundTripsEveryCode) {
  Tally t;
  for (uint32_t c = 0; c < 256; ++c) {
    if (e4m3_is_nan(c)) continue;
    const uint8_t got = e4m3_encode(e4m3_decode(static_cast<uint8_t>(c)));
    t.check(got == c, [&] { return strfmt("code 0x%02x -> 0x%02x", c, got); });
  }
  EXPECT_TALLY_CLEAN(t, 254);
  EXPECT_EQ(e4m3_encode(-0.0f), 0x80);
}

TEST(CodecE4m3, MidpointsTieToEven) {
  Tally t;
  for (uint32_t sign : {0u, 0x80u}) {
    for (uint32_t c = 0; c < 0x7eu; ++c) {
      const double lo = e4m3_reference(c);
      const double hi = e4m3_reference(c + 1);
      const float mid = static_cast<float>((lo + hi) / 2);  // 5 significant bits: exact
      const float s = sign != 0 ? -1.0f : 1.0f;
      const uint32_t even = (c & 1u) == 0 ? c : c + 1;
      const uint8_t at = e4m3_encode(s * mid);
      const uint8_t above = e4m3_encode(s * next_up(mid));
      const uint8_t below = e4m3_encode(s * next_down(mid));
      t.check(at == (sign | even) && above == (sign | (c + 1)) && below == (sign | c), [&] {
        return strfmt("between 0x%02x and 0x%02x: mid %a -> 0x%02x (want 0x%02x), above -> "
                      "0x%02x, below -> 0x%02x",
                      sign | c, sign | (c + 1), static_cast<double>(s * mid), at, sign | even,
                      above, below);
      });
    }
  }
  EXPECT_TALLY_CLEAN(t, 2 * 0x7e);
}

TEST(CodecE4m3, SaturatesToMax) {
  for (float x : {448.0f, next_up(448.0f), 449.0f, 464.0f, 480.0f, 500.0f, 1e4f, 1e30f, kFloatMax,
                  kInf}) {
    EXPECT_EQ(e4m3_encode(x), 0x7e) << "x = " << x;
    EXPECT_EQ(e4m3_encode(-x), 0xfe) << "x = " << -x;
  }
  EXPECT_EQ(e4m3_encode(next_down(432.0f)), 0x7d);  // 416 side of the 416/448 midpoint
  EXPECT_EQ(e4m3_encode(432.0f), 0x7e);             // tie -> even mantissa (448)
}

TEST(CodecE4m3, NanEncodesToNanWithSign) {
  for (uint32_t payload : {0x400000u, 0x000001u, 0x7fffffu, 0x200000u}) {
    EXPECT_EQ(e4m3_encode(from_bits(0x7f800000u | payload)), 0x7f) << "payload " << payload;
    EXPECT_EQ(e4m3_encode(from_bits(0xff800000u | payload)), 0xff) << "payload " << payload;
  }
}

TEST(CodecE4m3, TinyValuesGoToSignedZero) {
  const float half_min = std::ldexp(1.0f, -10);  // half of the smallest subnormal 2^-9
  EXPECT_EQ(e4m3_encode(half_min), 0x00);       // tie -> even (0)
  EXPECT_EQ(e4m3_encode(-half_min), 0x80);
  EXPECT_EQ(e4m3_encode(next_down(half_min)), 0x00);
  EXPECT_EQ(e4m3_encode(next_up(half_min)), 0x01);
  EXPECT_EQ(e4m3_encode(-next_up(half_min)), 0x81);
  EXPECT_EQ(e4m3_encode(1e-30f), 0x00);
  EXPECT_EQ(e4m3_encode(-1e-30f), 0x80);
  EXPECT_EQ(e4m3_encode(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(e4m3_encode(0.0f), 0x00);
  EXPECT_EQ(e4m3_encode(std::ldexp(15.0f, -10)), 0x08);  // 7.5 subnormal units -> 8 = min normal
}

TEST(CodecE4m3, SpecExample17RoundsTo16) {
  // dsv4_architecture.md §5.2: 17 is the midpoint of 16 (mantissa 0) and 18 (mantissa 1).
  EXPECT_EQ(e4m3_encode(17.0f), 0x58);
  EXPECT_EQ(e4m3_decode(e4m3_encode(17.0f)), 16.0f);
  EXPECT_EQ(e4m3_decode(e4m3_encode(19.0f)), 20.0f);  // 18/20 midpoint -> even mantissa 2
  EXPECT_EQ(e4m3_decode(e4m3_encode(-17.0f)), -16.0f);
}

TEST(CodecE4m3, EncodeMatchesBruteForceOnAllBf16Inputs) {
  Tally t;
  for (uint32_t c = 0; c < 65536; ++c) {
    const float x = bf16_decode(static_cast<uint16_t>(c));
    if (!std::isfinite(x)) continue;  // NaN and ±inf have their own tests
    const uint8_t got = e4m3_encode(x);
    const uint8_t want = e4m3_nearest_reference(x);
    t.check(got == want, [&] {
      return strfmt("bf16 0x%04x (%a) -> 0x%02x, want 0x%02x", c, static_cast<double>(x), got, want);
    });
  }
  EXPECT_TALLY_CLEAN(t, 65536 - 2 * 128);
}

TEST(CodecE4m3, EncodeMatchesBruteForceOnFloatSample) {
  // bf16 inputs have 7 mantissa bits; these carry all 23, so the sticky bits below the rounding
  // position are exercised too. Sampled in the range where e4m3 is not trivially 0 or ±448.
  Tally t;
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint32_t u = ((0x3a000000u + i * 0x2901u) & 0x7fffffffu) | ((i & 1u) << 31);
    const float x = from_bits(u);
    if (!std::isfinite(x)) continue;
    const uint8_t got = e4m3_encode(x);
    const uint8_t want = e4m3_nearest_reference(x);
    t.check(got == want, [&] { return strfmt("x bits 0x%08x -> 0x%02x, want 0x%02x", u, got, want); });
  }
  EXPECT_TALLY_CLEAN(t, 60000);
}

// e8m0 ------------------------------------------------------------------------------------------

TEST(CodecE8m0, DecodeAllCodes) {
  Tally t;
  for (uint32_t b = 0; b < 255; ++b) {
    const float got = e8m0_decode(static_cast<uint8_t>(b));
    const float want = std::ldexp(1.0f, static_cast<int>(b) - 127);  // exact, 2^-127 is denormal
    t.check(bits_of(got) == bits_of(want) && want > 0.0f, [&] {
      return strfmt("byte %u -> %a, want 2^%d", b, static_cast<double>(got), static_cast<int>(b) - 127);
    });
  }
  EXPECT_TALLY_CLEAN(t, 255);
  EXPECT_TRUE(std::isnan(e8m0_decode(255)));
  EXPECT_EQ(e8m0_decode(127), 1.0f);
  EXPECT_EQ(e8m0_decode(0), std::ldexp(1.0f, -127));
  EXPECT_EQ(e8m0_decode(254), std::ldexp(1.0f, 127));
}

TEST(CodecE8m0, FromExponentClamps) {
  for (int e = -127; e <= 127; ++e) {
    EXPECT_EQ(e8m0_from_exponent(e), e + 127) << "exponent " << e;
    EXPECT_EQ(e8m0_decode(e8m0_from_exponent(e)), std::ldexp(1.0f, e)) << "exponent " << e;
  }
  EXPECT_EQ(e8m0_from_exponent(-128), 0);
  EXPECT_EQ(e8m0_from_exponent(-1000), 0);
  EXPECT_EQ(e8m0_from_exponent(std::numeric_limits<int>::min()), 0);
  EXPECT_EQ(e8m0_from_exponent(128), 254);  // never 255, the NaN byte
  EXPECT_EQ(e8m0_from_exponent(1000), 254);
  EXPECT_EQ(e8m0_from_exponent(std::numeric_limits<int>::max()), 254);
}

TEST(CodecE8m0, EncodeCeilPowersAndNeighbours) {
  for (int e = -127; e <= 127; ++e) {
    const float p = std::ldexp(1.0f, e);
    EXPECT_EQ(e8m0_encode_ceil(p), e + 127) << "exact 2^" << e;
    // Just below a power: still that power (for 2^-127, everything below gives byte 0 anyway).
    EXPECT_EQ(e8m0_encode_ceil(next_down(p)), e + 127) << "just below 2^" << e;
    // Just above: the next power, clamped to 254 above 2^127.
    EXPECT_EQ(e8m0_encode_ceil(next_up(p)), e < 127 ? e + 128 : 254) << "just above 2^" << e;
    EXPECT_EQ(e8m0_encode_ceil(1.5f * p), e < 127 ? e + 128 : 254) << "1.5 * 2^" << e;
  }
}

TEST(CodecE8m0, EncodeCeilEdges) {
  const float denorm_min = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(e8m0_encode_ceil(0.0f), 0);
  EXPECT_EQ(e8m0_encode_ceil(-0.0f), 0);
  EXPECT_EQ(e8m0_encode_ceil(-1.0f), 0);
  EXPECT_EQ(e8m0_encode_ceil(-kInf), 0);
  EXPECT_EQ(e8m0_encode_ceil(denorm_min), 0);
  EXPECT_EQ(e8m0_encode_ceil(from_bits(0x00400000u)), 0);  // exactly 2^-127
  EXPECT_EQ(e8m0_encode_ceil(from_bits(0x00400001u)), 1);  // just above -> 2^-126
  EXPECT_EQ(e8m0_encode_ceil(from_bits(0x007fffffu)), 1);  // largest denormal
  EXPECT_EQ(e8m0_encode_ceil(std::numeric_limits<float>::min()), 1);  // 2^-126
  EXPECT_EQ(e8m0_encode_ceil(1.0f), 127);
  EXPECT_EQ(e8m0_encode_ceil(3.0f), 129);
  EXPECT_EQ(e8m0_encode_ceil(kFloatMax), 254);
  EXPECT_EQ(e8m0_encode_ceil(kInf), 254);
  EXPECT_EQ(e8m0_encode_ceil(kNan), 255);
  EXPECT_EQ(e8m0_encode_ceil(-kNan), 255);
}

TEST(CodecE8m0, CeilScaleNeverClips) {
  // The writing rule s = e8m0_encode_ceil(amax / qmax): amax / s lands in (qmax/2, qmax] unless
  // the byte is clamped. Checked for the e4m3 and e2m1 maxima over every positive finite bf16.
  Tally t;
  for (float qmax : {kE4m3Max, kE2m1Max}) {
    for (uint32_t c = 1; c < 0x7f80u; ++c) {
      const float amax = bf16_decode(static_cast<uint16_t>(c));
      const uint8_t byte = e8m0_encode_ceil(amax / qmax);
      const double ratio = static_cast<double>(amax) / static_cast<double>(e8m0_decode(byte));
      const bool clamped = byte == 0 || byte == 254;
      t.check(ratio <= qmax && (clamped || ratio > qmax / 2), [&] {
        return strfmt("amax %a, qmax %g: byte %u gives amax/s = %g", static_cast<double>(amax),
                      static_cast<double>(qmax), byte, ratio);
      });
    }
  }
  EXPECT_TALLY_CLEAN(t, 2 * 0x7f7f);
}

// e2m1 ------------------------------------------------------------------------------------------

constexpr float kE2m1Grid[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

float e2m1_reference(uint32_t code) {
  const float magnitude = kE2m1Grid[code & 7u];
  return (code & 8u) != 0 ? -magnitude : magnitude;
}

uint8_t e2m1_nearest_reference(float x) {
  return static_cast<uint8_t>(nearest_code_reference(x, 16, 0x8, e2m1_reference));
}

TEST(CodecE2m1, DecodeAllCodes) {
  for (uint32_t c = 0; c < 16; ++c) {
    const float got = e2m1_decode(static_cast<uint8_t>(c));
    EXPECT_EQ(bits_of(got), bits_of(e2m1_reference(c))) << "code " << c << " -> " << got;
    // Only the low nibble is read.
    EXPECT_EQ(bits_of(e2m1_decode(static_cast<uint8_t>(c | 0xa0u))), bits_of(got)) << "code " << c;
  }
  EXPECT_EQ(bits_of(e2m1_decode(8)), 0x80000000u);  // -0
  EXPECT_EQ(e2m1_decode(7), 6.0f);
  EXPECT_EQ(e2m1_decode(15), -6.0f);
  EXPECT_EQ(e2m1_decode(5), 3.0f);
}

TEST(CodecE2m1, EncodeRoundTripsEveryCode) {
  for (uint32_t c = 0; c < 16; ++c) {
    EXPECT_EQ(e2m1_encode(e2m1_decode(static_cast<uint8_t>(c))), c) << "code " << c;
  }
}

TEST(CodecE2m1, EncodeTiesAsDocumented) {
  struct Case {
    float x;
    uint8_t code;
  };
  // codec.h: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4 (values; codes below).
  for (const Case& k : {Case{0.25f, 0}, Case{0.75f, 2}, Case{1.25f, 2}, Case{1.75f, 4},
                        Case{2.5f, 4}, Case{3.5f, 6}, Case{5.0f, 6}}) {
    EXPECT_EQ(e2m1_encode(k.x), k.code) << "x = " << k.x;
    EXPECT_EQ(e2m1_encode(-k.x), k.code | 8) << "x = " << -k.x;
  }
  // Just off each tie goes to the nearer neighbour (the odd code on its side, if any).
  EXPECT_EQ(e2m1_encode(next_down(0.25f)), 0);
  EXPECT_EQ(e2m1_encode(next_up(0.25f)), 1);
  EXPECT_EQ(e2m1_encode(next_up(0.75f)), 2);
  EXPECT_EQ(e2m1_encode(next_down(1.25f)), 2);
  EXPECT_EQ(e2m1_encode(next_up(1.75f)), 4);
  EXPECT_EQ(e2m1_encode(next_down(2.5f)), 4);
  EXPECT_EQ(e2m1_encode(next_up(3.5f)), 6);
  EXPECT_EQ(e2m1_encode(next_down(5.0f)), 6);
  EXPECT_EQ(e2m1_encode(next_down(0.75f)), 1);
  EXPECT_EQ(e2m1_encode(next_up(1.25f)), 3);
  EXPECT_EQ(e2m1_encode(next_down(1.75f)), 3);
  EXPECT_EQ(e2m1_encode(next_up(2.5f)), 5);
  EXPECT_EQ(e2m1_encode(next_down(3.5f)), 5);
  EXPECT_EQ(e2m1_encode(next_up(5.0f)), 7);
}

TEST(CodecE2m1, ClampsSignsAndNan) {
  for (float x : {6.0f, 6.5f, 7.0f, 100.0f, 1e30f, kFloatMax, kInf}) {
    EXPECT_EQ(e2m1_encode(x), 7) << "x = " << x;
    EXPECT_EQ(e2m1_encode(-x), 15) << "x = " << -x;
  }
  EXPECT_EQ(e2m1_encode(-0.1f), 8);  // sign kept: -0
  EXPECT_EQ(e2m1_encode(0.1f), 0);
  EXPECT_EQ(e2m1_encode(-0.0f), 8);
  EXPECT_EQ(e2m1_encode(-1.0f), 10);
  EXPECT_EQ(e2m1_encode(-2.9f), 13);
  EXPECT_EQ(e2m1_encode(kNan), 0);
  EXPECT_EQ(e2m1_encode(-kNan), 0);
  EXPECT_EQ(e2m1_encode(from_bits(0x7f800001u)), 0);
}

TEST(CodecE2m1, EncodeMatchesBruteForceOnAllBf16Inputs) {
  Tally t;
  for (uint32_t c = 0; c < 65536; ++c) {
    const float x = bf16_decode(static_cast<uint16_t>(c));
    if (!std::isfinite(x)) continue;
    const uint8_t got = e2m1_encode(x);
    const uint8_t want = e2m1_nearest_reference(x);
    t.check(got == want, [&] {
      return strfmt("bf16 0x%04x (%g) -> %u, want %u", c, static_cast<double>(x), got, want);
    });
  }
  EXPECT_TALLY_CLEAN(t, 65536 - 2 * 128);
}

// bulk ------------------------------------------------------------------------------------------

TEST(CodecBulk, DecodersMatchScalar) {
  std::vector<uint16_t> bf16_in(65536 + 7);
  for (size_t i = 0; i < bf16_in.size(); ++i) bf16_in[i] = static_cast<uint16_t>(i * 40503u);
  std::vector<float> bf16_out(bf16_in.size(), -1.0f);
  bf16_decode_n(bf16_in.data(), bf16_out.data(), bf16_in.size());
  Tally t;
  for (size_t i = 0; i < bf16_in.size(); ++i) {
    t.check(bits_of(bf16_out[i]) == bits_of(bf16_decode(bf16_in[i])),
            [&] { return strfmt("bf16 element %zu (code 0x%04x)", i, bf16_in[i]); });
  }
  std::vector<uint8_t> e4m3_in(3 * 256 + 5);
  for (size_t i = 0; i < e4m3_in.size(); ++i) e4m3_in[i] = static_cast<uint8_t>(i * 37u);
  std::vector<float> e4m3_out(e4m3_in.size(), -1.0f);
  e4m3_decode_n(e4m3_in.data(), e4m3_out.data(), e4m3_in.size());
  for (size_t i = 0; i < e4m3_in.size(); ++i) {
    t.check(bits_of(e4m3_out[i]) == bits_of(e4m3_decode(e4m3_in[i])),
            [&] { return strfmt("e4m3 element %zu (code 0x%02x)", i, e4m3_in[i]); });
  }
  EXPECT_TALLY_CLEAN(t, bf16_in.size() + e4m3_in.size());
  // n = 0 touches nothing.
  float untouched = 5.0f;
  bf16_decode_n(bf16_in.data(), &untouched, 0);
  e4m3_decode_n(e4m3_in.data(), &untouched, 0);
  EXPECT_EQ(untouched, 5.0f);
}

}  // namespace
}  // namespace dsv4

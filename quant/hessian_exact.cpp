// hessian_exact.cpp: exact fixed-point sums of fp32 Gram matrices (see hessian_exact.h).
#include "quant/hessian_exact.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "common/check.h"

namespace dsv4::quant {
namespace {

using Int128 = __int128;
constexpr int64_t kLimbMask = (int64_t{1} << HessianExactSum::kLimbBits) - 1;
constexpr int kMaxAddsBetweenCarries = 1 << 20;  // 2^20 limbs below 2^42 stay below 2^62

// v as an integer count of 2^-64: exact when its last mantissa bit is at or above 2^-64, else
// truncated toward zero (the same for every caller, so sums stay grouping-independent).
Int128 fixed_from_float(float v) {
  const uint32_t bits = std::bit_cast<uint32_t>(v);
  const int biased = static_cast<int>((bits >> 23) & 0xff);
  DSV4_CHECK_IN("gptq", biased != 0xff, "a Hessian entry is %s", std::isnan(v) ? "NaN" : "infinite");
  if (biased == 0 && (bits & 0x7fffff) == 0) return 0;
  // |v| = m · 2^(e - 23) with m < 2^24 (subnormals: no implicit bit, e = -126).
  const int64_t m = biased == 0 ? (bits & 0x7fffff) : ((bits & 0x7fffff) | 0x800000);
  const int e = biased == 0 ? -126 : biased - 127;
  DSV4_CHECK_IN("gptq", e < 60, "a Hessian entry %g is beyond the exact sum's range (|v| < 2^60)", static_cast<double>(v));
  const int shift = e - 23 + HessianExactSum::kFracBits;
  const Int128 magnitude = shift >= 0 ? static_cast<Int128>(m) << shift : (shift > -64 ? m >> -shift : 0);
  return (bits >> 31) ? -magnitude : magnitude;
}

}  // namespace

HessianExactSum::HessianExactSum(int64_t dim) : dim_(dim) {
  DSV4_CHECK_IN("gptq", dim > 0, "Hessian dim %lld must be positive", static_cast<long long>(dim));
  limbs_.assign(static_cast<size_t>(kLimbs * dim * dim), 0);
}

void HessianExactSum::add(const float* x, int64_t num_tokens) {
  DSV4_CHECK_IN("gptq", num_tokens >= 0, "num_tokens %lld is negative", static_cast<long long>(num_tokens));
  if (num_tokens == 0) return;
  std::vector<float> gram(static_cast<size_t>(dim_ * dim_), 0.0f);
  hessian_gram_add(x, num_tokens, dim_, gram.data());
  add_entries(gram.data());
  num_tokens_ += num_tokens;
}

void HessianExactSum::add_sum(const float* s, int64_t num_tokens) {
  DSV4_CHECK_IN("gptq", num_tokens >= 0 && s != nullptr, "partial sum of %lld tokens", static_cast<long long>(num_tokens));
  add_entries(s);
  num_tokens_ += num_tokens;
}

void HessianExactSum::add_entries(const float* s) {
  if (adds_since_normalized_ == kMaxAddsBetweenCarries) normalized_limbs();
  const size_t n = static_cast<size_t>(dim_ * dim_);
  int64_t* l0 = limbs_.data();
  int64_t* l1 = l0 + n;
  int64_t* l2 = l1 + n;
  for (size_t i = 0; i < n; ++i) {
    Int128 v = fixed_from_float(s[i]);
    // Two's complement: the low 42 bits are non-negative and the arithmetic shift floors, so
    // v = low + 2^42 · (v >> 42) for negative v too.
    l0[i] += static_cast<int64_t>(v & kLimbMask);
    v >>= kLimbBits;
    l1[i] += static_cast<int64_t>(v & kLimbMask);
    l2[i] += static_cast<int64_t>(v >> kLimbBits);
  }
  ++adds_since_normalized_;
}

int64_t* HessianExactSum::normalized_limbs() {
  const size_t n = static_cast<size_t>(dim_ * dim_);
  int64_t* l0 = limbs_.data();
  int64_t* l1 = l0 + n;
  int64_t* l2 = l1 + n;
  for (size_t i = 0; i < n; ++i) {
    int64_t carry = l0[i] >> kLimbBits;
    l0[i] &= kLimbMask;
    l1[i] += carry;
    carry = l1[i] >> kLimbBits;
    l1[i] &= kLimbMask;
    l2[i] += carry;
  }
  adds_since_normalized_ = 0;
  return limbs_.data();
}

HessianAccumulator HessianExactSum::rounded() const {
  HessianAccumulator out(dim_);
  const size_t n = static_cast<size_t>(dim_ * dim_);
  const int64_t* l0 = limbs_.data();
  const int64_t* l1 = l0 + n;
  const int64_t* l2 = l1 + n;
  std::vector<float>& s = out.sum();
  for (size_t i = 0; i < n; ++i) {
    // The carries of this entry (normalized_limbs' arithmetic), then the 126-bit value.
    const int64_t c0 = l0[i] >> kLimbBits;
    const int64_t low = l0[i] & kLimbMask;
    const int64_t mid_sum = l1[i] + c0;
    const int64_t mid = mid_sum & kLimbMask;
    const int64_t high = l2[i] + (mid_sum >> kLimbBits);
    DSV4_CHECK_IN("gptq", high > -(int64_t{1} << 39) && high < (int64_t{1} << 39),
                  "a Hessian entry's exact sum is beyond ±2^59");
    const Int128 v = (static_cast<Int128>(high) << (2 * kLimbBits)) + (static_cast<Int128>(mid) << kLimbBits) + low;
    s[i] = static_cast<float>(std::ldexp(static_cast<double>(v), -kFracBits));
  }
  out.set_num_tokens(num_tokens_);
  return out;
}

void HessianExactSum::set_num_tokens(int64_t n) {
  DSV4_CHECK_IN("gptq", n >= 0, "num_tokens %lld is negative", static_cast<long long>(n));
  num_tokens_ = n;
}

}  // namespace dsv4::quant

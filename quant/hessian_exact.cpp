// hessian_exact.cpp: exact fixed-point sums of fp32 Gram matrices (see hessian_exact.h).
#include "quant/hessian_exact.h"

#include "common/check.h"
#include "quant/hessian_exact_inline.h"

namespace dsv4::quant {
namespace {

constexpr int kMaxAddsBetweenCarries = 1 << 20;  // 2^20 limbs below 2^42 stay below 2^62

}  // namespace

void hessian_exact_status_check(int status) {
  DSV4_CHECK_IN("gptq", !(status & kExactNonFinite), "a Hessian entry is NaN or infinite");
  DSV4_CHECK_IN("gptq", !(status & kExactEntryTooLarge), "a Hessian entry is beyond the exact sum's range (|v| < 2^60)");
  DSV4_CHECK_IN("gptq", !(status & kExactSumTooLarge), "a Hessian entry's exact sum is beyond ±2^59");
}

HessianExactSum::HessianExactSum(int64_t dim) : dim_(dim) {
  DSV4_CHECK_IN("gptq", dim > 0, "Hessian dim %lld must be positive", static_cast<long long>(dim));
  limbs_.assign(static_cast<size_t>(kLimbs * dim * dim), 0);
}

HessianExactSum HessianExactSum::from_limbs(int64_t dim, std::vector<int64_t> limbs, int64_t num_tokens) {
  HessianExactSum out(dim);
  DSV4_CHECK_IN("gptq", limbs.size() == out.limbs_.size(), "%zu limbs for a [%lld, %lld] exact sum", limbs.size(),
                static_cast<long long>(dim), static_cast<long long>(dim));
  out.limbs_ = std::move(limbs);
  out.set_num_tokens(num_tokens);
  out.normalized_limbs();
  return out;
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
  int status = 0;
  for (size_t i = 0; i < n; ++i) {
    int64_t a[3];
    status |= exact_addend(s[i], a);
    l0[i] += a[0];
    l1[i] += a[1];
    l2[i] += a[2];
  }
  hessian_exact_status_check(status);
  ++adds_since_normalized_;
}

int64_t* HessianExactSum::normalized_limbs() {
  const size_t n = static_cast<size_t>(dim_ * dim_);
  int64_t* l0 = limbs_.data();
  int64_t* l1 = l0 + n;
  int64_t* l2 = l1 + n;
  for (size_t i = 0; i < n; ++i) exact_normalize(l0[i], l1[i], l2[i]);
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
  int status = 0;
  for (size_t i = 0; i < n; ++i) s[i] = exact_round(l0[i], l1[i], l2[i], &status);
  hessian_exact_status_check(status);
  out.set_num_tokens(num_tokens_);
  return out;
}

void HessianExactSum::set_num_tokens(int64_t n) {
  DSV4_CHECK_IN("gptq", n >= 0, "num_tokens %lld is negative", static_cast<long long>(n));
  num_tokens_ = n;
}

}  // namespace dsv4::quant

// hessian.cpp: fp32 accumulation of Σ x xᵀ for the GPTQ Hessian (see hessian.h, spec
// gptq_and_formats.md §1.2). CPU reference: the calibrator's GPU path does the same with a
// cuBLAS syrk. Tests: tests/quant/test_hessian.cpp.
#include "quant/hessian.h"

#include <algorithm>

#include "common/check.h"

namespace dsv4::quant {
namespace {

// A 64x64 fp32 tile of S is 16 KiB and stays in L1 while all tokens stream past it. quant/ links
// no BLAS, so this blocked loop stands in for ssyrk; its inner loop over j vectorizes without
// reassociation, and every entry sums its tokens in order, so the result does not depend on
// the tiling.
constexpr int64_t kTile = 64;

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t dim) : dim_(dim) {
  DSV4_CHECK_IN("gptq", dim > 0, "Hessian dim %lld must be positive", static_cast<long long>(dim));
  sum_.assign(static_cast<size_t>(dim * dim), 0.0f);
}

void HessianAccumulator::add(const float* x, int64_t num_tokens) {
  DSV4_CHECK_IN("gptq", num_tokens >= 0, "num_tokens %lld is negative",
                static_cast<long long>(num_tokens));
  if (num_tokens == 0) return;
  hessian_gram_add(x, num_tokens, dim_, sum_.data());
  num_tokens_ += num_tokens;
}

void hessian_gram_add(const float* x, int64_t num_tokens, int64_t d, float* s) {
  if (num_tokens == 0) return;
  DSV4_CHECK_IN("gptq", x != nullptr, "null input for %lld tokens",
                static_cast<long long>(num_tokens));
  // Upper triangle only (tiles with jb >= ib), mirrored afterwards.
  for (int64_t ib = 0; ib < d; ib += kTile) {
    const int64_t ie = std::min(ib + kTile, d);
    for (int64_t jb = ib; jb < d; jb += kTile) {
      const int64_t je = std::min(jb + kTile, d);
      for (int64_t t = 0; t < num_tokens; ++t) {
        const float* xt = x + t * d;
        for (int64_t i = ib; i < ie; ++i) {
          const float xi = xt[i];
          float* si = s + i * d;
          for (int64_t j = std::max(jb, i); j < je; ++j) si[j] += xi * xt[j];
        }
      }
    }
  }
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = i + 1; j < d; ++j) s[j * d + i] = s[i * d + j];
  }
}

void HessianAccumulator::merge(const HessianAccumulator& other) {
  DSV4_CHECK_IN("gptq", other.dim_ == dim_, "merging a Hessian of dim %lld into one of dim %lld",
                static_cast<long long>(other.dim_), static_cast<long long>(dim_));
  for (size_t i = 0; i < sum_.size(); ++i) sum_[i] += other.sum_[i];
  num_tokens_ += other.num_tokens_;
}

void HessianAccumulator::set_num_tokens(int64_t n) {
  DSV4_CHECK_IN("gptq", n >= 0, "num_tokens %lld is negative", static_cast<long long>(n));
  num_tokens_ = n;
}

HessianResult HessianAccumulator::finalize() const {
  HessianResult r;
  r.dim = dim_;
  r.num_tokens = num_tokens_;
  r.no_tokens = num_tokens_ == 0;
  r.h.assign(sum_.size(), 0.0f);
  if (r.no_tokens) return r;
  // llm-compressor: H += (sqrt2·x)(sqrt2·x)ᵀ, then H / num_samples. 2·S is exact in fp32, so
  // this is one rounding per entry.
  const float n = static_cast<float>(num_tokens_);
  for (size_t i = 0; i < sum_.size(); ++i) r.h[i] = (2.0f * sum_[i]) / n;
  return r;
}

HessianError hessian_error(const float* w, const float* q, int64_t rows, int64_t cols, const float* h) {
  DSV4_CHECK_IN("hessian", rows >= 0 && cols > 0 && w != nullptr && q != nullptr && h != nullptr,
                "H-weighted error of [%lld, %lld] with a null operand", static_cast<long long>(rows),
                static_cast<long long>(cols));
  HessianError e;
  std::vector<double> dr(static_cast<size_t>(cols)), wr(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      wr[c] = w[r * cols + c];
      dr[c] = wr[c] - q[r * cols + c];
    }
    for (int64_t i = 0; i < cols; ++i) {
      const float* hi = h + i * cols;
      double sd = 0.0, sw = 0.0;
      for (int64_t j = 0; j < cols; ++j) {
        sd += hi[j] * dr[j];
        sw += hi[j] * wr[j];
      }
      e.delta_trace += dr[i] * sd;
      e.weight_trace += wr[i] * sw;
    }
  }
  return e;
}

}  // namespace dsv4::quant

// hessian_exact.h: Σ x xᵀ summed exactly, so that its value does not depend on how the tokens
// were split into partial sums or in what order the partials were added (issue 29: the same
// bits at any world size).
//
//   HessianExactSum s(dim);
//   s.add(x, rows);                      // one sample's rows: their fp32 Gram, added exactly
//   comm.all_reduce(s.normalized_limbs(), s.limb_count(), kI64, kSum);   // integers: associative
//   HessianResult h = s.rounded().finalize();   // rounded to fp32 once per entry
//
// Each add computes the rows' fp32 Gram matrix with HessianAccumulator's arithmetic (so a unit of
// rows, e.g. one sample, gives the same fp32 values whoever computes it), then adds every entry
// as a fixed-point integer in units of 2^-64, held as three int64 limbs of 42 bits (a 126-bit
// two's-complement number spread so that 2^20 adds need no carry). Integer sums are exact and
// associative: any grouping of the same adds gives the same limbs once normalized, and so the
// same fp32 result.
//
// Precision: an fp32 Gram entry v is kept exactly when |v| >= 2^-40 (its last mantissa bit is
// then at or above 2^-64); smaller entries are truncated toward zero to a multiple of 2^-64,
// deterministically, so the sum still does not depend on the grouping. Such entries are below
// 2^-40 ≈ 9e-13, against Gram entries of a layer's activations of order 1 to 1e8; fp32 itself
// keeps 24 bits of each sum. Range: an entry with |v| >= 2^60 (1e18) is an error, as is a total
// beyond ±2^123 units (2^59). Memory: 24 bytes per entry, 6x the fp32 sum.
// The per-entry arithmetic is hessian_exact_inline.h, shared with the GPU sum (hessian_exact_cuda.h).
// Tests: tests/quant/test_hessian_exact.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/hessian.h"

namespace dsv4::quant {

// Fails with the message of the first problem an exact add or round reported (the ExactStatus
// bits of hessian_exact_inline.h): a non-finite or too large entry, a sum beyond range.
void hessian_exact_status_check(int status);

class HessianExactSum {
 public:
  static constexpr int kFracBits = 64;
  static constexpr int kLimbBits = 42;
  static constexpr int kLimbs = 3;

  explicit HessianExactSum(int64_t dim);
  // A sum from limbs [kLimbs][dim·dim] in any form (the GPU's, hessian_exact_cuda.h), normalized.
  static HessianExactSum from_limbs(int64_t dim, std::vector<int64_t> limbs, int64_t num_tokens);

  // Adds num_tokens rows of x ([num_tokens, dim], row-major): their fp32 Gram, exactly.
  void add(const float* x, int64_t num_tokens);
  // Adds an fp32 partial sum [dim, dim] over num_tokens rows, exactly.
  void add_sum(const float* s, int64_t num_tokens);

  // The limbs [kLimbs][dim·dim] with the carries propagated (the two low limbs in [0, 2^42)):
  // what the ranks sum with an integer reduction. The sum of up to 2^20 normalized limb sets
  // needs no carry, and normalizing it again keeps its value.
  int64_t* normalized_limbs();
  size_t limb_count() const { return limbs_.size(); }

  // The exact sum rounded to fp32 once per entry (through double), with the token count.
  HessianAccumulator rounded() const;

  int64_t dim() const { return dim_; }
  int64_t num_tokens() const { return num_tokens_; }
  void set_num_tokens(int64_t n);

 private:
  void add_entries(const float* s);
  int64_t dim_;
  int64_t num_tokens_ = 0;
  int adds_since_normalized_ = 0;
  std::vector<int64_t> limbs_;  // limb k of entry i at [k·dim² + i]
};

}  // namespace dsv4::quant

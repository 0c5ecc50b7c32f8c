// device_hessian_sum.h: a Hessian partial sum held in GPU memory, owned by LayerStats once the
// GPU's pass A (layer_stats_cuda.h) hands it over: the unscaled Σ xᵀx [dim, dim] in fp32, or
// with exact sums (issue 29) the fixed-point limbs [3][dim·dim] int64 of quant/hessian_exact_cuda.h,
// normalized, which the ranks reduce as integers and round to fp32 (round_exact) before the
// solves read them. Its interface is HessianAccumulator's where they overlap (dim, num_tokens,
// set_num_tokens), so LayerStats treats every kind of sum alike.
//
//   DeviceHessianSum s = DeviceHessianSum::zeros(4096, /*exact=*/true);
//   comm.all_reduce(s.limbs(), s.elements(), kI64, kSum);   // or sum() / kF32 for fp32 sums
//   s.round_exact();                                        // now s.sum() is rounded()'s fp32 sum
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/device.h"
#include "quant/hessian_exact.h"

namespace dsv4::calib {

// Bytes per entry of a Hessian sum: three int64 limbs for an exact sum (quant/hessian_exact.h),
// one float for an fp32 one. What the sums hold on the host and the GPU, and what plans count.
constexpr size_t hessian_sum_entry_bytes(bool exact) {
  return exact ? quant::HessianExactSum::kLimbs * sizeof(int64_t) : sizeof(float);
}

class DeviceHessianSum {
 public:
  DeviceHessianSum() = default;
  DeviceHessianSum(DeviceMemory memory, int64_t dim, int64_t tokens, bool exact);
  // A zero sum (fp32 or exact) on the current device.
  static DeviceHessianSum zeros(int64_t dim, bool exact);

  int64_t dim() const { return dim_; }
  int64_t num_tokens() const { return tokens_; }
  void set_num_tokens(int64_t n) { tokens_ = n; }
  bool exact() const { return exact_; }
  float* sum() const;      // the fp32 sum; fails for exact limbs
  int64_t* limbs() const;  // the exact limbs; fails for an fp32 sum
  size_t elements() const;  // dim² fp32 values or 3·dim² limbs
  uint64_t bytes() const;
  // Replaces the exact limbs by their fp32 rounding (HessianExactSum::rounded's values, bit for
  // bit); synchronous, on the current device. Fails on a sum out of range. The CPU build fails.
  void round_exact();

 private:
  DeviceMemory memory_;
  int64_t dim_ = 0, tokens_ = 0;
  bool exact_ = false;
};

}  // namespace dsv4::calib

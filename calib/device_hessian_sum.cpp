// device_hessian_sum.cpp: DeviceHessianSum's bookkeeping (see device_hessian_sum.h); the
// rounding kernel is in device_hessian_sum_cuda.cu (device_hessian_sum_none.cpp without CUDA).
#include "calib/device_hessian_sum.h"

#include <utility>

#include "common/check.h"

namespace dsv4::calib {

DeviceHessianSum::DeviceHessianSum(DeviceMemory memory, int64_t dim, int64_t tokens, bool exact)
    : memory_(std::move(memory)), dim_(dim), tokens_(tokens), exact_(exact) {
  DSV4_CHECK_IN("calib", memory_ && dim > 0 && tokens >= 0, "device Hessian sum [%lld] of %lld tokens",
                static_cast<long long>(dim), static_cast<long long>(tokens));
}

DeviceHessianSum DeviceHessianSum::zeros(int64_t dim, bool exact) {
  return DeviceHessianSum(device_memory_zeros(static_cast<size_t>(dim * dim) * hessian_sum_entry_bytes(exact)), dim, 0,
                          exact);
}

float* DeviceHessianSum::sum() const {
  DSV4_CHECK_IN("calib", !exact_, "a device Hessian of exact limbs read as fp32 before round_exact");
  return static_cast<float*>(memory_.get());
}

int64_t* DeviceHessianSum::limbs() const {
  DSV4_CHECK_IN("calib", exact_, "an fp32 device Hessian read as exact limbs");
  return static_cast<int64_t*>(memory_.get());
}

size_t DeviceHessianSum::elements() const {
  return static_cast<size_t>(dim_ * dim_) * (exact_ ? quant::HessianExactSum::kLimbs : 1);
}

uint64_t DeviceHessianSum::bytes() const {
  return static_cast<uint64_t>(dim_ * dim_) * hessian_sum_entry_bytes(exact_);
}

}  // namespace dsv4::calib

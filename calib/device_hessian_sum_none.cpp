// device_hessian_sum_none.cpp: the CPU build's DeviceHessianSum::round_exact (see
// device_hessian_sum.h): there are no device sums without CUDA.
#include "calib/device_hessian_sum.h"
#include "common/check.h"

namespace dsv4::calib {

void DeviceHessianSum::round_exact() {
  DSV4_FAIL("calib", "a device Hessian sum in a build without CUDA");
}

}  // namespace dsv4::calib

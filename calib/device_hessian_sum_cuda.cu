// device_hessian_sum_cuda.cu: DeviceHessianSum::round_exact on the GPU (see device_hessian_sum.h).
#include <cuda_runtime.h>

#include "calib/device_hessian_sum.h"
#include "common/check.h"
#include "quant/hessian_exact.h"
#include "quant/hessian_exact_cuda.h"

namespace dsv4::calib {

void DeviceHessianSum::round_exact() {
  if (!exact_) return;
  const int64_t entries = dim_ * dim_;
  DeviceMemory rounded = device_memory(static_cast<size_t>(entries) * sizeof(float));
  DeviceMemory status = device_memory_zeros(sizeof(int));
  quant::hessian_exact_round_cuda(limbs(), entries, static_cast<float*>(rounded.get()), static_cast<int*>(status.get()),
                                  nullptr);
  int bad = 0;
  DSV4_CUDA_CHECK(cudaMemcpy(&bad, status.get(), sizeof(int), cudaMemcpyDeviceToHost));  // after the kernel
  quant::hessian_exact_status_check(bad);
  memory_ = std::move(rounded);  // frees the limbs
  exact_ = false;
}

}  // namespace dsv4::calib

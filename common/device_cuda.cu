// device_cuda.cu: device query for the CUDA build. cudaGetDeviceCount fails without a driver or
// GPU (the build machines); that is reported as zero devices, not an error, so GPU tests skip.
#include <cuda_runtime.h>

#include "common/check.h"
#include "common/device.h"

namespace dsv4 {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_describe(int device) {
  cudaDeviceProp prop{};
  DSV4_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char bus[32];
  DSV4_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), device));
  return strfmt("%s, sm_%d%d, %.1f GiB, bus %s", prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1ull << 30), bus);
}

bool built_with_cuda() { return true; }

}  // namespace dsv4

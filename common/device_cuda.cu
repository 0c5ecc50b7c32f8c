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

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
  DSV4_CHECK_IN("device", e == cudaSuccess, "cudaMalloc of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
  return p;
}
void device_free(void* p) noexcept { cudaFree(p); }
void device_upload(void* device_dst, const void* host_src, size_t bytes) {
  DSV4_CUDA_CHECK(cudaMemcpy(device_dst, host_src, bytes, cudaMemcpyHostToDevice));
}
void device_download(void* host_dst, const void* device_src, size_t bytes) {
  DSV4_CUDA_CHECK(cudaMemcpy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost));
}
DeviceMemory device_memory_zeros(size_t bytes) {
  DeviceMemory m = device_memory(bytes);
  DSV4_CUDA_CHECK(cudaMemset(m.get(), 0, bytes));
  return m;
}

}  // namespace dsv4

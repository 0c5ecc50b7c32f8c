// device.h: what accelerators this process can see. The CPU build reports none, so callers need
// no #ifdef: `if (device_count() > 0) ...`.
//
//   int n = device_count();              // 0 in the CPU build or without a driver/GPU
//   std::string d = device_describe(0);  // "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB, bus 0000:19:00.0"
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace dsv4 {

int device_count();                   // never throws; 0 when no usable device
std::string device_describe(int device);
bool built_with_cuda();

// Plain device memory outside any arena, for probes (preflight's NCCL bandwidth check); on the
// current device. The CPU build throws. Copies are synchronous.
void* device_alloc(size_t bytes);  // throws naming the size
void device_free(void* p) noexcept;
void device_upload(void* device_dst, const void* host_src, size_t bytes);
void device_download(void* host_dst, const void* device_src, size_t bytes);

// Device memory with one owner: freed when the owner goes (device_memory_zeros: zero-filled).
struct DeviceFree {
  void operator()(void* p) const noexcept { device_free(p); }
};
using DeviceMemory = std::unique_ptr<void, DeviceFree>;
inline DeviceMemory device_memory(size_t bytes) { return DeviceMemory(device_alloc(bytes)); }
DeviceMemory device_memory_zeros(size_t bytes);

}  // namespace dsv4

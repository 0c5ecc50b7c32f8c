// device_arena.cu: see device_arena.h.
#include "common/device_arena.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "common/check.h"

namespace dsv4 {

DeviceArena::DeviceArena(size_t bytes) : capacity_(bytes) {
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&base_), bytes);
  DSV4_CHECK_IN("cuda", e == cudaSuccess, "device arena of %zu bytes (%.2f GiB): cudaMalloc failed: %s", bytes,
                static_cast<double>(bytes) / (1ull << 30), cudaGetErrorString(e));
}

DeviceArena::~DeviceArena() { cudaFree(base_); }

void* DeviceArena::take_bytes(size_t bytes, std::string_view what) {
  const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  DSV4_CHECK_IN("cuda", rounded <= capacity_ - used_,
                "device arena: %.*s needs %zu bytes, %zu of %zu are left (plan a larger arena)",
                static_cast<int>(what.size()), what.data(), bytes, capacity_ - used_, capacity_);
  void* p = base_ + used_;
  used_ += rounded;
  high_water_ = std::max(high_water_, used_);
  return p;
}

void DeviceArena::release_to(size_t mark) {
  DSV4_CHECK_IN("cuda", mark <= used_, "device arena: release to %zu above the top %zu", mark, used_);
  used_ = mark;
}

}  // namespace dsv4

// pinned_host.h: page-locked host memory for bulk copies between the GPU and the host (CUDA
// builds; issue 9). A pageable cudaMemcpy goes through the driver's own staging at 1-2 GB/s
// (pass A's 4.4 GB of Hessians took 3.8 s at full width); a pinned buffer copies at PCIe speed,
// and the host then moves the bytes where they belong on all cores.
//
//   PinnedHostBuffer staging(256u << 20);
//   cudaMemcpyAsync(staging.data(), d_src, n, cudaMemcpyDeviceToHost, stream);
#pragma once

#include <cstddef>

namespace dsv4 {

class PinnedHostBuffer {
 public:
  explicit PinnedHostBuffer(size_t bytes);  // throws with the size when cudaHostAlloc fails
  ~PinnedHostBuffer();
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;

  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dsv4

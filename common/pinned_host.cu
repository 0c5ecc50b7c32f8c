// pinned_host.cu: see pinned_host.h.
#include "common/pinned_host.h"

#include <cuda_runtime.h>

#include "common/check.h"

namespace dsv4 {

PinnedHostBuffer::PinnedHostBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  const cudaError_t e = cudaHostAlloc(reinterpret_cast<void**>(&data_), bytes, cudaHostAllocDefault);
  DSV4_CHECK_IN("cuda", e == cudaSuccess, "pinned host buffer of %zu bytes (%.2f GiB): cudaHostAlloc failed: %s", bytes,
                static_cast<double>(bytes) / (1ull << 30), cudaGetErrorString(e));
}

PinnedHostBuffer::~PinnedHostBuffer() { cudaFreeHost(data_); }

}  // namespace dsv4

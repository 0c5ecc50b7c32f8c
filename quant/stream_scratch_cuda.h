// stream_scratch_cuda.h: device scratch ordered on a stream (cudaMallocAsync / cudaFreeAsync),
// for the GPTQ preparation and sweep (gptq_prepare_cuda.cu, gptq_cuda.cu): freeing it does not
// synchronise the device, so work on several streams overlaps. Include from .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "common/check.h"

namespace dsv4::quant {

template <typename T>
struct StreamScratch {
  T* p = nullptr;
  cudaStream_t stream;
  StreamScratch(size_t n, cudaStream_t s) : stream(s) {
    DSV4_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T), s));
  }
  ~StreamScratch() { cudaFreeAsync(p, stream); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
};

}  // namespace dsv4::quant

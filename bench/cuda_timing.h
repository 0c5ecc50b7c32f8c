// cuda_timing.h: the GPU benchmarks' timer: `warmups` calls, then the mean of `reps` calls
// measured with CUDA events on `stream` (the calls must enqueue their work there).
//
//   const double ms = cuda_mean_ms([&] { kernel<<<g, b, 0, s>>>(...); }, s, 3, 20);
#pragma once

#include <cuda_runtime.h>

#include "common/check.h"

template <typename F>
double cuda_mean_ms(F f, cudaStream_t stream, int warmups, int reps) {
  for (int i = 0; i < warmups; ++i) f();
  cudaEvent_t a, b;
  DSV4_CUDA_CHECK(cudaEventCreate(&a));
  DSV4_CUDA_CHECK(cudaEventCreate(&b));
  DSV4_CUDA_CHECK(cudaEventRecord(a, stream));
  for (int i = 0; i < reps; ++i) f();
  DSV4_CUDA_CHECK(cudaEventRecord(b, stream));
  DSV4_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  DSV4_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / reps;
}

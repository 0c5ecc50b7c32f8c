// cuda_timing.h: the GPU benchmarks' common start and timer: bench_device_stream() prints the
// device (the first line of every GPU bench's output) and makes the stream to time on;
// cuda_mean_ms runs `warmups` calls, then the mean of `reps` calls measured with CUDA events on
// `stream` (the calls must enqueue their work there).
//
//   cudaStream_t s = bench_device_stream();
//   const double ms = cuda_mean_ms([&] { kernel<<<g, b, 0, s>>>(...); }, s, 3, 20);
#pragma once

#include <cuda_runtime.h>

#include <cstdio>

#include "common/check.h"

inline cudaStream_t bench_device_stream() {
  cudaDeviceProp prop{};
  DSV4_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s\n", prop.name);
  cudaStream_t s;
  DSV4_CUDA_CHECK(cudaStreamCreate(&s));
  return s;
}

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

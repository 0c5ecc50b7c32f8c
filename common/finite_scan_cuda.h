// finite_scan_cuda.h: the device-side count of NaN and infinite bf16 values (issue 26), for values
// that live on the GPU and never come to the host (the CUDA executor's HC states, the weights it
// decodes there). Its CPU reference is non_finite_scan(bytes, DType::kBF16) (finite_scan.h): the
// same bit test, so the counts are equal.
//
//   non_finite_count_bf16_cuda(stream, states, n, device_count);  // adds to *device_count
//   // ... more launches on the same counter, then one copy of it to the host
//
// CUDA build only. Tests: tests/common/test_finite_scan_cuda.cu.
#pragma once

#include <cstddef>
#include <cstdint>

struct CUstream_st;

namespace dsv4 {

// Adds the number of NaN and infinite values among `count` bf16 values at device address `values`
// to the device counter `device_count`, on `stream` (asynchronous; nothing is launched for 0).
void non_finite_count_bf16_cuda(CUstream_st* stream, const uint16_t* values, size_t count,
                                unsigned long long* device_count);

}  // namespace dsv4

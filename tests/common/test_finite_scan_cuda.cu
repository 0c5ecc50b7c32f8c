// test_finite_scan_cuda.cu: non_finite_count_bf16_cuda counts what its CPU reference,
// non_finite_scan(bytes, kBF16), counts: on every bf16 code at once, and on random values with
// NaN and infinities of both signs sprinkled at random places, at sizes around the block and grid
// edges; counts add up over launches on one counter. Compiled in the CUDA build only; skips
// without a device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "common/finite_scan.h"
#include "common/finite_scan_cuda.h"
#include "tests/gpu_test.h"

namespace dsv4 {
namespace {

// The device count of `values` (uploaded), added to a counter that starts at `start`.
unsigned long long device_count(const std::vector<uint16_t>& values, unsigned long long start = 0) {
  uint16_t* d = nullptr;
  unsigned long long* counter = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&d, values.size() * 2 + 2));
  DSV4_CUDA_CHECK(cudaMalloc(&counter, sizeof(*counter)));
  DSV4_CUDA_CHECK(cudaMemcpy(d, values.data(), values.size() * 2, cudaMemcpyHostToDevice));
  DSV4_CUDA_CHECK(cudaMemcpy(counter, &start, sizeof(start), cudaMemcpyHostToDevice));
  cudaStream_t stream = nullptr;
  DSV4_CUDA_CHECK(cudaStreamCreate(&stream));
  non_finite_count_bf16_cuda(stream, d, values.size(), counter);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
  unsigned long long out = 0;
  DSV4_CUDA_CHECK(cudaMemcpy(&out, counter, sizeof(out), cudaMemcpyDeviceToHost));
  cudaStreamDestroy(stream);
  cudaFree(counter);
  cudaFree(d);
  return out;
}

int64_t host_count(const std::vector<uint16_t>& values) {
  return non_finite_scan(std::as_bytes(std::span(values)), DType::kBF16).count;
}

TEST(FiniteScanCuda, EveryBf16CodeCountsAsOnTheHost) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  EXPECT_EQ(host_count(all), 2 * 128);  // exponent all ones: 2 signs x 128 mantissas (2 Inf, 254 NaN)
  EXPECT_EQ(device_count(all), static_cast<unsigned long long>(host_count(all)));
}

TEST(FiniteScanCuda, RandomValuesWithNonFiniteOnesCountAsOnTheHost) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  std::mt19937& rng = fresh_rng();
  std::normal_distribution<float> normal(0.0f, 100.0f);
  const uint16_t specials[] = {0x7f80, 0xff80, 0x7fc0, 0xffc1};  // +Inf, -Inf, NaN, -NaN
  // Empty, one value, around a block (256) and beyond the capped grid (4096 x 256 = 2^20).
  for (size_t n : {size_t{0}, size_t{1}, size_t{255}, size_t{257}, size_t{100003}, (size_t{1} << 20) + 77,
                   size_t{3} << 20}) {
    std::vector<uint16_t> v(n);
    for (uint16_t& x : v) x = bf16_encode(normal(rng));
    if (n > 0) {
      std::uniform_int_distribution<size_t> at(0, n - 1);
      const size_t k = n < 8 ? 1 : 1 + n / 5000;
      for (size_t j = 0; j < k; ++j) v[at(rng)] = specials[j % 4];
      v[n - 1] = specials[1];  // the last value, where a grid-stride bound is easy to get wrong
    }
    EXPECT_EQ(device_count(v), static_cast<unsigned long long>(host_count(v))) << n << " values";
  }
  std::vector<uint16_t> finite(1000, bf16_encode(3.0e38f));  // the largest finite magnitudes count 0
  EXPECT_EQ(device_count(finite), 0ull);
  EXPECT_EQ(device_count(std::vector<uint16_t>(10, 0x7f80), /*start=*/5), 15ull);  // it adds
}

}  // namespace
}  // namespace dsv4

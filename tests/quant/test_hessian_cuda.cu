// test_hessian_cuda.cu: the tensor-core Hessian sums equal HessianAccumulator::add on the same
// bf16-valued rows, single and batched, on random inputs drawn fresh each run. CUDA build only;
// skips without a device unless DSV4_REQUIRE_GPU=1.
// Tolerance: products of bf16 values are exact in fp32; only the fp32 summation order differs
// (the CPU adds token by token, cuBLAS in its own blocking), so every entry must agree to
// 1e-5 of the largest |entry| (measured ≈ 1e-7 on H100; an fp32 sum of n terms is off by at
// most ~n·2^-24 relative, 3e-5 for n = 500 in the worst case, far less in practice).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "quant/hessian.h"
#include "quant/hessian_cuda.h"
#include "tests/gpu_test.h"

namespace dsv4::quant {
namespace {

// Random bf16 rows (normal, with a few large outliers as activations have).
std::vector<uint16_t> random_bf16(size_t n) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_int_distribution<int> outlier(0, 99);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = bf16_encode(d(fresh_rng()) * (outlier(fresh_rng()) == 0 ? 20.0f : 1.0f));
  return v;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::vector<float> cpu_sum(const std::vector<uint16_t>& x, int64_t tokens, int64_t d, size_t offset = 0) {
  std::vector<float> f(static_cast<size_t>(tokens * d));
  for (size_t i = 0; i < f.size(); ++i) f[i] = bf16_decode(x[offset + i]);
  HessianAccumulator acc(d);
  acc.add(f.data(), tokens);
  return acc.sum();
}

double max_rel_diff(const std::vector<float>& want, const float* got) {
  double scale = 0, worst = 0;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(want[i]) - got[i]));
  return worst / scale;
}

struct Blas {
  cublasHandle_t h = nullptr;
  Blas() { DSV4_CUBLAS_CHECK(cublasCreate(&h)); }
  ~Blas() { cublasDestroy(h); }
};

TEST(HessianCuda, SumMatchesCpuAndAccumulates) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  Blas blas;
  for (const auto& [tokens, d] : {std::pair<int64_t, int64_t>{300, 128}, {517, 96}, {64, 256}}) {
    const std::vector<uint16_t> x = random_bf16(static_cast<size_t>(tokens * d));
    uint16_t* dx = nullptr;
    float* ds = nullptr;
    DSV4_CUDA_CHECK(cudaMalloc(&dx, x.size() * 2));
    DSV4_CUDA_CHECK(cudaMalloc(&ds, static_cast<size_t>(d * d) * 4));
    DSV4_CUDA_CHECK(cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
    DSV4_CUDA_CHECK(cudaMemset(ds, 0, static_cast<size_t>(d * d) * 4));
    // Two calls accumulate: S = 2·XᵀX.
    hessian_sum_cuda(blas.h, dx, tokens, d, ds, nullptr);
    hessian_sum_cuda(blas.h, dx, tokens, d, ds, nullptr);
    std::vector<float> got(static_cast<size_t>(d * d));
    DSV4_CUDA_CHECK(cudaMemcpy(got.data(), ds, got.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<float> want = cpu_sum(x, tokens, d);
    for (float& w : want) w *= 2.0f;
    EXPECT_LE(max_rel_diff(want, got.data()), 1e-5) << tokens << "x" << d;
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t j = 0; j < i; ++j) ASSERT_EQ(got[static_cast<size_t>(i * d + j)], got[static_cast<size_t>(j * d + i)]);
    }
    cudaFree(dx);
    cudaFree(ds);
  }
}

TEST(HessianCuda, BatchedEqualsOneAtATime) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  Blas blas;
  const int64_t tokens = 200, d = 64;
  const int count = 5;
  const std::vector<uint16_t> x = random_bf16(static_cast<size_t>(count * tokens * d));
  uint16_t* dx = nullptr;
  float* ds = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&dx, x.size() * 2));
  DSV4_CUDA_CHECK(cudaMalloc(&ds, static_cast<size_t>(count * d * d) * 4));
  DSV4_CUDA_CHECK(cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
  DSV4_CUDA_CHECK(cudaMemset(ds, 0, static_cast<size_t>(count * d * d) * 4));
  hessian_sum_batched_cuda(blas.h, dx, tokens, d, ds, count, nullptr);
  std::vector<float> got(static_cast<size_t>(count * d * d));
  DSV4_CUDA_CHECK(cudaMemcpy(got.data(), ds, got.size() * 4, cudaMemcpyDeviceToHost));
  for (int b = 0; b < count; ++b) {
    const std::vector<float> want = cpu_sum(x, tokens, d, static_cast<size_t>(b * tokens * d));
    EXPECT_LE(max_rel_diff(want, got.data() + b * d * d), 1e-5) << "batch " << b;
  }
  cudaFree(dx);
  cudaFree(ds);
}

// H = 2·S/n on the device is finalize()'s value bit for bit (the pipeline keeps pass A's sums on
// the GPU and its CPU solves read the host finalize: they must see the same H), in place too;
// zero tokens give an all-zero H even without a sum.
TEST(HessianCuda, FinalizeIsTheHostFinalizeBitForBit) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t d = 96;
  for (const int64_t tokens : {int64_t{1}, int64_t{3}, int64_t{517}, int64_t{393216}}) {
    HessianAccumulator acc(d);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (float& v : acc.sum()) v = dist(fresh_rng()) * 1e3f;
    acc.set_num_tokens(tokens);
    const HessianResult want = acc.finalize();
    float *ds = nullptr, *dh = nullptr;
    const size_t bytes = static_cast<size_t>(d * d) * 4;
    DSV4_CUDA_CHECK(cudaMalloc(&ds, bytes));
    DSV4_CUDA_CHECK(cudaMalloc(&dh, bytes));
    DSV4_CUDA_CHECK(cudaMemcpy(ds, acc.sum().data(), bytes, cudaMemcpyHostToDevice));
    hessian_finalize_cuda(ds, tokens, d, dh, nullptr);
    std::vector<float> got(static_cast<size_t>(d * d));
    DSV4_CUDA_CHECK(cudaMemcpy(got.data(), dh, bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(bits_of(got[i]), bits_of(want.h[i])) << tokens << " tokens, " << i;
    hessian_finalize_cuda(ds, tokens, d, ds, nullptr);  // in place
    DSV4_CUDA_CHECK(cudaMemcpy(got.data(), ds, bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(bits_of(got[i]), bits_of(want.h[i])) << "in place, " << i;
    hessian_finalize_cuda(nullptr, 0, d, dh, nullptr);
    DSV4_CUDA_CHECK(cudaMemcpy(got.data(), dh, bytes, cudaMemcpyDeviceToHost));
    for (float v : got) ASSERT_EQ(bits_of(v), 0u);
    cudaFree(ds);
    cudaFree(dh);
  }
}

TEST(HessianCuda, BadShapesAreErrors) {
  EXPECT_THROW(hessian_sum_cuda(nullptr, nullptr, 10, 0, nullptr, nullptr), Error);
  EXPECT_THROW(hessian_sum_batched_cuda(nullptr, nullptr, 10, 8, nullptr, -1, nullptr), Error);
  EXPECT_THROW(hessian_finalize_cuda(nullptr, 5, 8, nullptr, nullptr), Error);  // tokens but no sum
  EXPECT_THROW(hessian_finalize_cuda(nullptr, 0, 0, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace dsv4::quant

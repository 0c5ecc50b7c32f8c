// test_hessian_exact_cuda.cu: the GPU's exact Hessian sums (quant/hessian_exact_cuda.h) equal
// HessianExactSum's, bit for bit: the same fp32 Grams added on both sides give the same
// normalized limbs and the same rounded fp32 sum; added in another order on the GPU, the same
// limbs; a NaN or a too large entry sets the status the host turns into HessianExactSum's error.
// CUDA build only; skips without a device unless DSV4_REQUIRE_GPU=1.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/check.h"
#include "quant/hessian_exact.h"
#include "quant/hessian_exact_cuda.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"

namespace dsv4::quant {
namespace {

constexpr int64_t kDim = 37;
constexpr int64_t kEntries = kDim * kDim;

// Gram-like matrices at scales from 1e-9 to 1e7 (entries below 2^-40 exercise the truncation),
// with negative entries, as fp32 sums of several magnitudes give.
std::vector<std::vector<float>> grams(int count) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<std::vector<float>> out;
  for (int b = 0; b < count; ++b) {
    const float scale = std::pow(10.0f, static_cast<float>(b % 17) - 9.0f);
    std::vector<float> s(static_cast<size_t>(kEntries));
    for (float& v : s) v = g(fresh_rng()) * scale;
    out.push_back(std::move(s));
  }
  return out;
}

struct GpuExactSum {
  DeviceBuffer<int64_t> limbs{std::vector<int64_t>(static_cast<size_t>(3 * kEntries), 0)};
  DeviceBuffer<float> gram{static_cast<size_t>(kEntries)};
  DeviceBuffer<int> status{std::vector<int>{0}};
  void add(const std::vector<float>& s) {
    gram.upload(s);
    hessian_exact_add_cuda(gram.p, kEntries, limbs.p, status.p, nullptr);
  }
  std::vector<int64_t> normalized() {
    hessian_exact_normalize_cuda(limbs.p, kEntries, nullptr);
    return limbs.get();
  }
};

TEST(HessianExactCuda, AddNormalizeRoundEqualTheCpuSumBitwise) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const auto gs = grams(40);
  HessianExactSum cpu(kDim);
  GpuExactSum gpu, reversed;
  for (const auto& s : gs) cpu.add_sum(s.data(), 1), gpu.add(s);
  for (auto it = gs.rbegin(); it != gs.rend(); ++it) reversed.add(*it);
  const std::vector<int64_t> want(cpu.normalized_limbs(), cpu.normalized_limbs() + cpu.limb_count());
  EXPECT_EQ(gpu.normalized(), want);
  EXPECT_EQ(reversed.normalized(), want);
  DeviceBuffer<float> sum(static_cast<size_t>(kEntries));
  hessian_exact_round_cuda(gpu.limbs.p, kEntries, sum.p, gpu.status.p, nullptr);
  EXPECT_EQ(sum.get(), cpu.rounded().sum());
  EXPECT_EQ(gpu.status.get()[0], 0);
  const HessianExactSum back = HessianExactSum::from_limbs(kDim, gpu.limbs.get(), cpu.num_tokens());
  EXPECT_EQ(back.rounded().sum(), cpu.rounded().sum());
}

TEST(HessianExactCuda, NonFiniteAndHugeEntriesSetTheStatus) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const float bad : {std::nanf(""), INFINITY, 4e18f}) {
    GpuExactSum gpu;
    std::vector<float> s(static_cast<size_t>(kEntries), 1.0f);
    s[5] = bad;
    gpu.add(s);
    const int status = gpu.status.get()[0];
    EXPECT_NE(status, 0) << bad;
    EXPECT_THROW(hessian_exact_status_check(status), Error) << bad;
  }
}

}  // namespace
}  // namespace dsv4::quant

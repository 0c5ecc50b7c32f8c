// test_cholesky_batched_cuda.cu: cholesky_inverse_lower_batched_cuda (quant/cholesky_batched_cuda.h)
// against its CPU reference cholesky_inverse_lower_batched_reference (quant/cholesky_batched.h), on
// Hessian-like matrices drawn fresh each run, 3 per call. Sizes cover one element, sizes below,
// at and just above the 128 block, ragged last blocks, and the inverse with and without its split
// into halves (h = n/2 rounded down to 128: n = 256, 300, 520 split; n < 256 does not). The
// strict upper triangle of the input holds NaN: the op reads the lower triangle only. Failures:
// a negative pivot and an indefinite 2x2 minor set `failed` for their matrix alone; the others
// still equal the reference. CUDA build; skips without a device unless DSV4_REQUIRE_GPU=1.
// Tolerance: every entry of L⁻¹ within 1e-8 of the largest |entry| of the reference's. Both are
// fp64 (DGEMM on FP64 units with IEEE FMA, no TF32); they differ only in the order of the sums
// (blocked and right-looking vs unblocked), so the difference is rounding noise of order
// n·cond(A)·eps: n ≤ 520, cond ≤ ~2e3 here, eps 1.1e-16 gives ~1e-10 at worst, ~1e-12 typically.
// A wrong block, stride or transpose shows as an O(1) error.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/device_arena.h"
#include "quant/cholesky_batched.h"
#include "quant/cholesky_batched_cuda.h"
#include "tests/cuda_handles.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"

namespace dsv4::quant {
namespace {

constexpr int kCount = 3;

// H = XᵀX/t + 0.01·mean(diag)·I of t = 2n correlated tokens with one outlier channel (×10), the
// shape of a damped GPTQ Hessian; column-major with NaN above the diagonal.
std::vector<double> hessian(int64_t n) {
  const int64_t t = 2 * n + 8;
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<double> x(static_cast<size_t>(t * n));
  for (int64_t r = 0; r < t; ++r) {
    const double shared = d(fresh_rng());
    for (int64_t c = 0; c < n; ++c) x[r * n + c] = d(fresh_rng()) + 0.3 * shared;
    x[r * n + std::min<int64_t>(5, n - 1)] *= 10.0;
  }
  std::vector<double> h(static_cast<size_t>(n * n), std::numeric_limits<double>::quiet_NaN());
  double mean_diag = 0;
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = j; i < n; ++i) {
      double s = 0;
      for (int64_t r = 0; r < t; ++r) s += x[r * n + i] * x[r * n + j];
      h[j * n + i] = s / static_cast<double>(t);
    }
    mean_diag += h[j * n + j] / static_cast<double>(n);
  }
  for (int64_t j = 0; j < n; ++j) h[j * n + j] += 0.01 * mean_diag;
  return h;
}

struct Result {
  std::vector<double> inv;
  std::vector<int> failed;
};

Result run_gpu(const std::vector<double>& a, int count, int64_t n) {
  CudaBlasSolver hd;
  DeviceBuffer<double> d_a(a), d_inv(a.size());
  DeviceBuffer<int> d_failed(std::vector<int>(static_cast<size_t>(count), -1));
  DeviceArena arena(cholesky_inverse_lower_batched_scratch_bytes(count));
  cholesky_inverse_lower_batched_cuda(hd.blas, hd.solver, d_a.p, d_inv.p, count, n, d_failed.p, arena, nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(arena.used(), 0u);
  return {d_inv.get(), d_failed.get()};
}

Result run_cpu(const std::vector<double>& a, int count, int64_t n) {
  Result r{std::vector<double>(a.size()), std::vector<int>(static_cast<size_t>(count), -1)};
  cholesky_inverse_lower_batched_reference(a.data(), r.inv.data(), count, n, r.failed.data());
  return r;
}

// Matrix b of both results within 1e-8 · max |reference entry|, naming the worst entry.
void expect_close(const Result& gpu, const Result& cpu, int b, int64_t n, const std::string& what) {
  const size_t per = static_cast<size_t>(n * n), off = static_cast<size_t>(b) * per;
  double scale = 0;
  for (size_t x = 0; x < per; ++x) scale = std::max(scale, std::fabs(cpu.inv[off + x]));
  ASSERT_GT(scale, 0.0) << what << ": all-zero reference (vacuous)";
  double worst = -1;
  size_t at = 0, bad = 0;
  for (size_t x = 0; x < per; ++x) {
    const double g = gpu.inv[off + x], c = cpu.inv[off + x];
    const double e = std::isfinite(g) ? std::fabs(g - c) : std::numeric_limits<double>::infinity();
    bad += e > 1e-8 * scale;
    if (e > worst) worst = e, at = x;
  }
  EXPECT_EQ(bad, 0u) << what << " [" << n << ", " << n << "] matrix " << b << ": " << bad << " of " << per
                     << " entries off by more than 1e-8 x " << scale << "; worst at (" << at % n << ", " << at / n
                     << "): gpu " << gpu.inv[off + at] << " cpu " << cpu.inv[off + at] << " (diff " << worst << ")";
}

TEST(CholeskyBatchedCuda, InverseFactorEqualsCpuForEverySize) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const int64_t n : {1, 5, 127, 128, 129, 200, 256, 300, 520}) {
    std::vector<double> a;
    for (int b = 0; b < kCount; ++b) {
      const std::vector<double> h = hessian(n);
      a.insert(a.end(), h.begin(), h.end());
    }
    const Result gpu = run_gpu(a, kCount, n), cpu = run_cpu(a, kCount, n);
    for (int b = 0; b < kCount; ++b) {
      const std::string what = "n " + std::to_string(n);
      ASSERT_EQ(cpu.failed[static_cast<size_t>(b)], 0) << what << ": the reference failed on a damped Hessian";
      EXPECT_EQ(gpu.failed[static_cast<size_t>(b)], 0) << what << " matrix " << b << " flagged as failed";
      expect_close(gpu, cpu, b, n, what);
    }
  }
}

TEST(CholeskyBatchedCuda, IndefiniteMatricesAreFlaggedAlone) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const int64_t n : {64, 300}) {
    std::vector<double> a;
    for (int b = 0; b < 4; ++b) {
      std::vector<double> h = hessian(n);
      if (b == 1) h[(n - 3) * n + (n - 3)] = -1.0;  // a negative pivot in the last block
      if (b == 2) {                                   // an indefinite 2x2 minor in the first block
        h[10 * n + 11] = 4.0 * std::sqrt(h[10 * n + 10] * h[11 * n + 11]);
      }
      a.insert(a.end(), h.begin(), h.end());
    }
    const Result gpu = run_gpu(a, 4, n), cpu = run_cpu(a, 4, n);
    EXPECT_EQ(cpu.failed, (std::vector<int>{0, 1, 1, 0})) << "n " << n << ": the reference's verdicts";
    EXPECT_EQ(gpu.failed, cpu.failed) << "n " << n;
    expect_close(gpu, cpu, 0, n, "n " + std::to_string(n) + " beside failures");
    expect_close(gpu, cpu, 3, n, "n " + std::to_string(n) + " beside failures");
  }
}

TEST(CholeskyBatchedCuda, ZeroMatricesIsANoOpAndBadSizesAreErrors) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  CudaBlasSolver hd;
  DeviceArena arena(4096);
  DeviceBuffer<double> a(1), inv(1);
  DeviceBuffer<int> failed(1);
  cholesky_inverse_lower_batched_cuda(hd.blas, hd.solver, a.p, inv.p, 0, 16, failed.p, arena, nullptr);
  EXPECT_THROW(cholesky_inverse_lower_batched_cuda(hd.blas, hd.solver, a.p, inv.p, 1, 0, failed.p, arena, nullptr),
               Error);
  EXPECT_EQ(arena.used(), 0u);
}

}  // namespace
}  // namespace dsv4::quant

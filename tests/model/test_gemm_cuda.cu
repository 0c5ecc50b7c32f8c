// test_gemm_cuda.cu: linear_bf16_cuda and linear_bf16_batched_cuda (model/gemm_cuda.h) against
// the CPU reference linear_forward (model/ops.h): fp32 and bf16 outputs, accumulation, row strides
// (ldx, ldy: wo_a's group slices), strided batches with a shared input (stride_x = 0), and the
// edges (one row, one output, K = 1, K not a multiple of 8, zero rows, a zero-size batch, bad
// arguments). CUDA build; skips without a device unless DSV4_REQUIRE_GPU=1.
// Stated tolerances:
//   - integer-valued inputs (x, w in ±8, K ≤ 4096): bitwise. Every product and partial sum is an
//     integer below 2^24, exact in fp32 in any order, so cuBLAS and OpenBLAS agree exactly, and the
//     bf16 output is the same round-to-nearest-even of the same exact sum.
//   - random bf16 inputs: |gpu − cpu| ≤ K·2^-22·Σ_k |x_k·w_k| per element, four times the
//     worst-case fp32 summation bound (K·2^-24 for round-to-nearest); the products of bf16 values
//     are exact in fp32, so only the order of the sums differs; bf16 outputs get one more bf16 step
//     of the value (two sums that close can round to neighbouring bf16 values).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "model/gemm_cuda.h"
#include "model/ops.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"

namespace dsv4::model {
namespace {

struct Blas {
  cublasHandle_t h = nullptr;
  Blas() { DSV4_CUBLAS_CHECK(cublasCreate(&h)); }
  ~Blas() { cublasDestroy(h); }
};

// bf16 values: integers in [-8, 8] (exact sums) or normal(0, 1) rounded to bf16.
std::vector<float> draw(size_t n, bool integers) {
  std::uniform_int_distribution<int> i(-8, 8);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = integers ? static_cast<float>(i(fresh_rng())) : bf16_decode(bf16_encode(d(fresh_rng())));
  return v;
}

std::vector<uint16_t> bits(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = bf16_encode(v[i]);
  return b;
}

struct Case {
  std::string name;
  int64_t rows, in, out;
  int64_t ldx = 0, ldy = 0;  // 0: dense
  bool bf16_out = false, accumulate = false;
  int count = 1;
  bool shared_x = false;  // batched: stride_x = 0
};

// The shapes swept (kept apart from the checks).
std::vector<Case> cases() {
  return {
      {"dense fp32", 37, 256, 96},
      {"bf16 out", 64, 512, 200, 0, 0, true},
      {"one row", 1, 4096, 64},
      {"one output", 50, 128, 1},
      {"K = 1", 9, 1, 7},
      {"K not a multiple of 8", 13, 77, 33},
      {"accumulate into fp32", 40, 128, 64, 0, 0, false, true},
      {"row strides (a group slice of x, a column block of y)", 24, 64, 48, 256, 160},
      {"row strides, bf16 out", 24, 64, 48, 96, 64, true},
      {"batched", 16, 128, 40, 0, 0, false, false, 5},
      {"batched bf16, shared input", 12, 64, 24, 0, 0, true, false, 4, true},
      {"batched accumulate, strided rows", 10, 32, 16, 48, 40, false, true, 3},
  };
}

// Runs one case on both sides and compares; `integers` selects exact inputs.
void run_case(const Blas& blas, const Case& c, bool integers) {
  const int64_t ldx = c.ldx ? c.ldx : c.in, ldy = c.ldy ? c.ldy : c.out;
  const int64_t nx = c.shared_x ? 1 : c.count;
  const std::vector<float> x = draw(static_cast<size_t>(nx * c.rows * ldx), integers);
  const std::vector<float> w = draw(static_cast<size_t>(c.count * c.out * c.in), integers);
  const std::vector<float> y0 = draw(static_cast<size_t>(c.count * c.rows * ldy), true);  // accumulation base
  // Reference per batch element: y[b] (rows × out, stride ldy) = [y0 +] x[b] · w[b]ᵀ.
  std::vector<float> want(y0.size(), 0.0f), bound(y0.size(), 0.0f);
  for (int b = 0; b < c.count; ++b) {
    const float* xb = x.data() + (c.shared_x ? 0 : b * c.rows * ldx);
    const float* wb = w.data() + b * c.out * c.in;
    std::vector<float> xd(static_cast<size_t>(c.rows * c.in)), yd(static_cast<size_t>(c.rows * c.out));
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t k = 0; k < c.in; ++k) xd[r * c.in + k] = xb[r * ldx + k];
    }
    linear_forward(xd.data(), c.rows, c.in, wb, c.out, yd.data());
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t o = 0; o < c.out; ++o) {
        const size_t i = static_cast<size_t>(b * c.rows * ldy + r * ldy + o);
        want[i] = c.accumulate ? y0[i] + yd[r * c.out + o] : yd[r * c.out + o];
        if (c.bf16_out) want[i] = bf16_decode(bf16_encode(want[i]));
        double s = 0;
        for (int64_t k = 0; k < c.in; ++k) s += std::fabs(static_cast<double>(xd[r * c.in + k]) * wb[o * c.in + k]);
        bound[i] = static_cast<float>(static_cast<double>(c.in) * std::ldexp(s, -22));
        // bf16 out: two sums that close may still round to neighbouring bf16 values.
        if (c.bf16_out && want[i] != 0.0f) bound[i] += std::ldexp(1.0f, std::ilogb(want[i]) - 7);
      }
    }
  }
  DeviceBuffer<uint16_t> d_x(bits(x)), d_w(bits(w)), d_yb(y0.size());
  DeviceBuffer<float> d_yf(y0);
  GemmOut out{.y_f32 = c.bf16_out ? nullptr : d_yf.p, .y_bf16 = c.bf16_out ? d_yb.p : nullptr, .ldx = c.ldx,
              .ldy = c.ldy, .accumulate = c.accumulate};
  if (c.count == 1) {
    linear_bf16_cuda(blas.h, d_x.p, c.rows, c.in, d_w.p, c.out, out, nullptr);
  } else {
    linear_bf16_batched_cuda(blas.h,
                             {.x = d_x.p, .rows = c.rows, .in = c.in, .out = c.out, .w = d_w.p, .y = out,
                              .stride_x = c.shared_x ? 0 : c.rows * ldx, .stride_w = c.out * c.in,
                              .stride_y = c.rows * ldy, .count = c.count},
                             nullptr);
  }
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> got(y0.size());
  if (c.bf16_out) {
    const std::vector<uint16_t> b = d_yb.get();
    for (size_t i = 0; i < b.size(); ++i) got[i] = bf16_decode(b[i]);
  } else {
    got = d_yf.get();
  }
  const std::string what = c.name + (integers ? " (integers)" : " (random bf16)") + " [" + std::to_string(c.rows) +
                           ", " + std::to_string(c.in) + "] x [" + std::to_string(c.out) + ", " +
                           std::to_string(c.in) + "]ᵀ x " + std::to_string(c.count);
  size_t bad = 0, worst_at = 0;
  double worst = -1, norm = 0;
  for (int b = 0; b < c.count; ++b) {
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t o = 0; o < c.out; ++o) {  // only the written columns: the rest of a strided row is not ours
        const size_t i = static_cast<size_t>(b * c.rows * ldy + r * ldy + o);
        norm += std::fabs(want[i]);
        const double e = std::isfinite(got[i]) ? std::fabs(static_cast<double>(got[i]) - want[i]) : 1e30;
        const double tol = integers ? 0.0 : bound[i];
        bad += e > tol;
        if (e - tol > worst) worst = e - tol, worst_at = i;
      }
    }
  }
  EXPECT_GT(norm, 0.0) << what << ": all-zero reference (vacuous)";
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements out of tolerance; worst at (batch "
                     << worst_at / (c.rows * ldy) << ", row " << worst_at % (c.rows * ldy) / ldy << ", col "
                     << worst_at % ldy << "): gpu " << got[worst_at] << " cpu " << want[worst_at] << " (tolerance "
                     << (integers ? 0.0f : bound[worst_at]) << ")";
}

TEST(GemmCuda, IntegerInputsEqualCpuBitwise) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  Blas blas;
  for (const Case& c : cases()) run_case(blas, c, true);
}

TEST(GemmCuda, RandomBf16InputsWithinTheSummationBound) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  Blas blas;
  for (const Case& c : cases()) run_case(blas, c, false);
}

TEST(GemmCuda, EmptyCallsAreNoOpsAndBadArgumentsErrors) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  Blas blas;
  DeviceBuffer<uint16_t> x(64), w(64), yb(64);
  DeviceBuffer<float> y(std::vector<float>(64, 7.0f));
  linear_bf16_cuda(blas.h, x.p, 0, 8, w.p, 8, {.y_f32 = y.p}, nullptr);  // zero rows
  linear_bf16_batched_cuda(blas.h, {.x = x.p, .rows = 4, .in = 8, .out = 8, .w = w.p, .y = {.y_f32 = y.p}, .count = 0},
                           nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(y.get(), std::vector<float>(64, 7.0f)) << "an empty call wrote its output";
  EXPECT_THROW(linear_bf16_cuda(blas.h, x.p, 2, 8, w.p, 8, {}, nullptr), Error);  // no output
  EXPECT_THROW(linear_bf16_cuda(blas.h, x.p, 2, 8, w.p, 8, {.y_f32 = y.p, .y_bf16 = yb.p}, nullptr), Error);
  EXPECT_THROW(linear_bf16_cuda(blas.h, x.p, 2, 8, w.p, 8, {.y_bf16 = yb.p, .accumulate = true}, nullptr), Error);
  EXPECT_THROW(linear_bf16_cuda(blas.h, x.p, 2, 8, w.p, 8, {.y_f32 = y.p, .ldx = 4}, nullptr), Error);  // ldx < in
}

}  // namespace
}  // namespace dsv4::model

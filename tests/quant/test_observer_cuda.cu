// test_observer_cuda.cu: observer_qparams_cuda (quant/observer_cuda.h) against its CPU reference
// observer_qparams (quant/observer.h), batched over 3 matrices, for every strategy (tensor,
// channel, group 32/64/128, ragged 128x128 blocks, tensor_group with and without a shared amax),
// every code format and scale dtype, and the edge shapes (one row, one cell per matrix, widths that
// are not a multiple of 32 or 128). CUDA build; skips without a device unless DSV4_REQUIRE_GPU=1.
// Weights are drawn fresh each run: normal with a per-matrix sigma, one outlier per row, and in
// matrix 1 an all-zero leading run (the eps-scale path).
// Stated tolerances:
//   - min-max: bitwise (scale, zero point, e8m0 byte, global scale). Min and max are exact in any
//     order, and the per-cell arithmetic is quantizer_inline.h, the code the CPU runs.
//   - MSE: CUDA's pow is not glibc's (both within 2 ulp), so a cell whose two best shrink factors
//     tie to the last bits may choose the other one: at most 1% of cells (plus one) differ, and a
//     differing cell's error (observer_cell_error, on the CPU) is within 1% of the CPU's choice's
//     (a tie, not a wrong search). The counts are printed.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/device_arena.h"
#include "quant/observer.h"
#include "quant/observer_cuda.h"
#include "quant/quant_args.h"
#include "quant/quantizer.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"
#include "tests/quant/gpu_qparams.h"

namespace dsv4::quant {
namespace {

constexpr int kCount = 3;  // matrices per call

struct Case {
  std::string name;
  QuantArgs args;
  int64_t rows, cols;
};

QuantArgs with_group(const char* preset, int group) {
  QuantArgs a = quant_args_preset(preset);
  a.group_size = group;
  return a;
}

// The shapes and schemes swept (kept apart from the checks).
std::vector<Case> minmax_cases() {
  QuantArgs f32 = quant_args_preset("W4A16_ASYM");
  f32.scale_dtype = ScaleDType::kF32;
  return {
      {"W4A16 g128", quant_args_preset("W4A16"), 200, 384},
      {"W4A16 g64, one row", with_group("W4A16", 64), 1, 256},
      {"W4A16_ASYM", quant_args_preset("W4A16_ASYM"), 37, 256},
      {"W4A16_ASYM fp32 scales", f32, 20, 128},
      {"INT4_G32", quant_args_preset("INT4_G32"), 64, 96},
      {"W3A16", quant_args_preset("W3A16"), 16, 128},
      {"W8A16", quant_args_preset("W8A16"), 48, 256},
      {"W8A16_CHANNEL odd width", quant_args_preset("W8A16_CHANNEL"), 33, 77},
      {"INT8_ASYM_CHANNEL one row", quant_args_preset("INT8_ASYM_CHANNEL"), 1, 130},
      {"FP8 tensor", quant_args_preset("FP8"), 200, 384},
      {"FP8 tensor 1x5", quant_args_preset("FP8"), 1, 5},
      {"FP8_DYNAMIC odd width", quant_args_preset("FP8_DYNAMIC"), 50, 386},
      {"FP8_BLOCK ragged", quant_args_preset("FP8_BLOCK"), 200, 320},
      {"FP8_BLOCK one row", quant_args_preset("FP8_BLOCK"), 1, 130},
      {"FP8_BLOCK_E8M0 ragged", quant_args_preset("FP8_BLOCK_E8M0"), 130, 200},
      {"NVFP4", quant_args_preset("NVFP4"), 64, 256},
      {"NVFP4 one cell", quant_args_preset("NVFP4"), 1, 16},
      {"MXFP4A16", quant_args_preset("MXFP4A16"), 96, 256},
  };
}

std::vector<Case> mse_cases() {
  std::vector<Case> out;
  for (Case c : std::vector<Case>{{"W4A16", quant_args_preset("W4A16"), 64, 384},
                                  {"W4A16_ASYM", quant_args_preset("W4A16_ASYM"), 37, 256},
                                  {"INT4_G32", quant_args_preset("INT4_G32"), 64, 96},
                                  {"W8A16_CHANNEL", quant_args_preset("W8A16_CHANNEL"), 33, 77},
                                  {"FP8_DYNAMIC", quant_args_preset("FP8_DYNAMIC"), 50, 386},
                                  {"FP8_BLOCK ragged", quant_args_preset("FP8_BLOCK"), 200, 320},
                                  {"NVFP4", quant_args_preset("NVFP4"), 64, 256},
                                  {"MXFP4A16", quant_args_preset("MXFP4A16"), 96, 256}}) {
    c.args.observer = ObserverKind::kMse;
    c.name += " mse";
    out.push_back(c);
  }
  return out;
}

// [kCount, rows, cols]: never all zero; matrix 1 starts with up to 16 zeros.
std::vector<float> random_weights(int64_t rows, int64_t cols) {
  std::vector<float> w(static_cast<size_t>(kCount * rows * cols));
  for (int b = 0; b < kCount; ++b) {
    std::normal_distribution<float> d(0.0f, 0.02f * static_cast<float>(b + 1));
    std::uniform_int_distribution<int64_t> col(0, cols - 1);
    float* m = w.data() + b * rows * cols;
    for (int64_t i = 0; i < rows * cols; ++i) m[i] = d(fresh_rng());
    for (int64_t r = 0; r < rows; ++r) m[r * cols + col(fresh_rng())] *= 12.0f;
    if (b == 1 && rows * cols > 16) std::fill(m, m + std::min<int64_t>(cols, 16), 0.0f);
  }
  return w;
}

// The GPU's qparams of `kCount` matrices, split into host QParams.
std::vector<QParams> gpu_qparams(const QuantArgs& args, const std::vector<float>& w, int64_t rows, int64_t cols,
                                 const std::vector<float>& amax) {
  GpuQParams qp(args, kCount, rows, cols);
  DeviceBuffer<float> d_w(w);
  std::unique_ptr<DeviceBuffer<float>> d_amax;
  if (!amax.empty()) d_amax = std::make_unique<DeviceBuffer<float>>(amax);
  DeviceArena arena(observer_cuda_scratch_bytes(args, kCount, rows, cols));
  observer_qparams_cuda(args, d_w.p, kCount, rows, cols, d_amax ? d_amax->p : nullptr, qp.device(), arena, nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(arena.used(), 0u) << "the observer left scratch taken";
  std::vector<QParams> out;
  for (int b = 0; b < kCount; ++b) out.push_back(qp.host(args, b));
  return out;
}

bool same_cell(const QParams& a, const QParams& b, size_t i) {
  return a.scale[i] == b.scale[i] && a.zero_point[i] == b.zero_point[i] &&
         (b.scale_e8m0.empty() || a.scale_e8m0[i] == b.scale_e8m0[i]);
}

// Bitwise equality, naming the first differing cell with its grid coordinates.
void expect_qparams_equal(const QParams& gpu, const QParams& cpu, const std::string& what) {
  ASSERT_EQ(gpu.scale.size(), cpu.scale.size()) << what;
  ASSERT_EQ(gpu.scale_e8m0.size(), cpu.scale_e8m0.size()) << what;
  EXPECT_EQ(gpu.has_global_scale, cpu.has_global_scale) << what;
  EXPECT_EQ(gpu.global_scale, cpu.global_scale) << what << ": global scale";
  size_t differ = 0, first = 0;
  double norm = 0;
  for (size_t i = 0; i < cpu.scale.size(); ++i) {
    norm += cpu.scale[i];
    if (!same_cell(gpu, cpu, i) && differ++ == 0) first = i;
  }
  EXPECT_GT(norm, 0.0) << what << ": all CPU scales are zero (vacuous)";
  EXPECT_EQ(differ, 0u) << what << " [" << cpu.scale_rows << ", " << cpu.scale_cols << "] cells: " << differ << " of "
                        << cpu.scale.size() << " differ; first at (" << first / cpu.scale_cols << ", "
                        << first % cpu.scale_cols << "): gpu scale " << gpu.scale[first] << " zp "
                        << gpu.zero_point[first] << ", cpu scale " << cpu.scale[first] << " zp "
                        << cpu.zero_point[first];
}

TEST(ObserverCuda, MinMaxEqualsCpuBitwiseForEveryStrategy) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const Case& c : minmax_cases()) {
    const std::vector<float> w = random_weights(c.rows, c.cols);
    const std::vector<QParams> gpu = gpu_qparams(c.args, w, c.rows, c.cols, {});
    for (int b = 0; b < kCount; ++b) {
      const QParams cpu = observer_qparams(c.args, w.data() + b * c.rows * c.cols, c.rows, c.cols);
      expect_qparams_equal(gpu[static_cast<size_t>(b)], cpu,
                           c.name + " [" + std::to_string(c.rows) + ", " + std::to_string(c.cols) + "] matrix " +
                               std::to_string(b));
    }
  }
}

// Fused partners share one NVFP4 global scale: amax_override replaces a matrix's own max |w|
// (0: keep its own), as observer_qparams' amax_tensor does.
TEST(ObserverCuda, Nvfp4AmaxOverrideEqualsCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const QuantArgs args = quant_args_preset("NVFP4");
  const int64_t rows = 32, cols = 128;
  const std::vector<float> w = random_weights(rows, cols);
  const std::vector<float> amax = {3.5f, 0.0f, 0.25f};
  const std::vector<QParams> gpu = gpu_qparams(args, w, rows, cols, amax);
  for (int b = 0; b < kCount; ++b) {
    const QParams cpu = observer_qparams(args, w.data() + b * rows * cols, rows, cols, amax[static_cast<size_t>(b)]);
    expect_qparams_equal(gpu[static_cast<size_t>(b)], cpu, "NVFP4 amax " + std::to_string(amax[static_cast<size_t>(b)]));
  }
}

TEST(ObserverCuda, MseMatchesCpuUpToTiedShrinkFactors) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const Case& c : mse_cases()) {
    const std::vector<float> w = random_weights(c.rows, c.cols);
    const std::vector<QParams> gpu = gpu_qparams(c.args, w, c.rows, c.cols, {});
    int64_t differ = 0, total = 0;
    double worst = 0;  // largest GPU/CPU cell error ratio among differing cells
    for (int b = 0; b < kCount; ++b) {
      const float* wb = w.data() + b * c.rows * c.cols;
      const QParams cpu = observer_qparams(c.args, wb, c.rows, c.cols);
      const QParams& g = gpu[static_cast<size_t>(b)];
      ASSERT_EQ(g.scale.size(), cpu.scale.size()) << c.name;
      EXPECT_EQ(g.global_scale, cpu.global_scale) << c.name << " matrix " << b;  // the unshrunk amax
      const std::vector<double> e_gpu = observer_cell_error(c.args, g, wb, c.args.mse.norm);
      const std::vector<double> e_cpu = observer_cell_error(c.args, cpu, wb, c.args.mse.norm);
      total += static_cast<int64_t>(cpu.scale.size());
      for (size_t i = 0; i < cpu.scale.size(); ++i) {
        if (same_cell(g, cpu, i)) continue;
        ++differ;
        const double ratio = e_cpu[i] > 0 ? e_gpu[i] / e_cpu[i] : (e_gpu[i] > 0 ? 2.0 : 1.0);
        worst = std::max(worst, ratio);
        EXPECT_LE(ratio, 1.01) << c.name << " matrix " << b << " cell (" << i / cpu.scale_cols << ", "
                               << i % cpu.scale_cols << "): gpu scale " << g.scale[i] << " error " << e_gpu[i]
                               << ", cpu scale " << cpu.scale[i] << " error " << e_cpu[i];
      }
    }
    std::printf("[ %s ] %lld of %lld cells chose another shrink factor (worst error ratio %.6f)\n", c.name.c_str(),
                static_cast<long long>(differ), static_cast<long long>(total), worst);
    EXPECT_LE(differ * 100, total + 100) << c.name << ": more than 1% of cells (plus one) differ";
  }
}

TEST(ObserverCuda, ZeroMatricesIsANoOp) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const QuantArgs args = quant_args_preset("W4A16");
  DeviceBuffer<float> scale(1), zp(1);
  DeviceArena arena(4096);
  observer_qparams_cuda(args, nullptr, 0, 4, 128, nullptr, {scale.p, zp.p, nullptr, nullptr}, arena, nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(arena.used(), 0u);
}

}  // namespace
}  // namespace dsv4::quant

// test_weight_decode_cuda.cu: the GPU decoders equal the CPU reference (model/weight_decode.h)
// bit for bit in fp32, and its bf16 rounding in bf16, on random codes and scales drawn fresh
// each run (all 256 e4m3 codes and 16 e2m1 nibbles occur), for the vector path (columns a
// multiple of 8) and the scalar path, with E8M0 and F32 scales. CUDA build only; skips without
// a device unless DSV4_REQUIRE_GPU=1.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "model/weight_decode.h"
#include "model/weight_decode_cuda.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"

namespace dsv4::model {
namespace {

std::vector<uint8_t> random_bytes(size_t n, int lo, int hi) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(d(fresh_rng()));
  return v;
}
// Scales as the decoders read them: E8M0 bytes 2^(b-127) in a range that keeps products finite,
// or F32 values (powers of two and arbitrary floats).
std::vector<uint8_t> random_scales(size_t n, DType dtype) {
  if (dtype == DType::kF8E8M0) return random_bytes(n, 100, 150);
  std::uniform_real_distribution<float> d(-3.0f, 3.0f);
  std::vector<uint8_t> bytes(n * 4);
  for (size_t i = 0; i < n; ++i) {
    const float f = d(fresh_rng());
    std::memcpy(&bytes[i * 4], &f, 4);
  }
  return bytes;
}

void expect_same(const std::vector<float>& cpu, const std::vector<float>& gpu_f32, const std::vector<uint16_t>& gpu_bf16,
                 const char* what) {
  ASSERT_EQ(cpu.size(), gpu_f32.size());
  size_t bad32 = 0, bad16 = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    // e4m3 NaN codes (0x7f, 0xff) decode to NaN; x86 and the GPU multiply propagate different NaN
    // payloads, so NaN matches NaN, everything else bit for bit.
    if (std::isnan(cpu[i])) {
      bad32 += !std::isnan(gpu_f32[i]);
      bad16 += !std::isnan(bf16_decode(gpu_bf16[i]));
      continue;
    }
    uint32_t a, b;
    std::memcpy(&a, &cpu[i], 4);
    std::memcpy(&b, &gpu_f32[i], 4);
    bad32 += a != b;
    bad16 += bf16_encode(cpu[i]) != gpu_bf16[i];
  }
  EXPECT_EQ(bad32, 0u) << what << ": fp32 values differing from the CPU reference";
  EXPECT_EQ(bad16, 0u) << what << ": bf16 values differing from bf16(CPU)";
}

TEST(WeightDecodeCuda, Fp8BlockEqualsCpuOnVectorAndScalarPaths) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  struct Case { int64_t rows, cols, block; DType scale; };
  for (const Case c : {Case{256, 384, 128, DType::kF8E8M0}, Case{200, 136, 128, DType::kF8E8M0}, Case{16, 132, 128, DType::kF8E8M0},
                       Case{64, 96, 32, DType::kF32}, Case{129, 257, 128, DType::kF32}}) {
    const int64_t n = c.rows * c.cols, nb = ((c.rows + c.block - 1) / c.block) * ((c.cols + c.block - 1) / c.block);
    const std::vector<uint8_t> codes = random_bytes(static_cast<size_t>(n), 0, 255);
    const std::vector<uint8_t> scales = random_scales(static_cast<size_t>(nb), c.scale);
    std::vector<float> cpu(static_cast<size_t>(n));
    weight_decode_fp8_block(std::as_bytes(std::span(codes)), std::as_bytes(std::span(scales)), c.scale, c.rows, c.cols,
                            c.block, cpu.data());
    DeviceBuffer<uint8_t> dc(codes.size()), ds(scales.size());
    dc.upload(codes);
    ds.upload(scales);
    DeviceBuffer<float> o32(cpu.size());
    DeviceBuffer<uint16_t> o16(cpu.size());
    weight_decode_fp8_block_cuda(dc.p, ds.p, c.scale, c.rows, c.cols, c.block, o32.p, nullptr, nullptr);
    weight_decode_fp8_block_cuda(dc.p, ds.p, c.scale, c.rows, c.cols, c.block, nullptr, o16.p, nullptr);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    expect_same(cpu, o32.download(cpu.size()), o16.download(cpu.size()),
                ("fp8 " + std::to_string(c.rows) + "x" + std::to_string(c.cols)).c_str());
  }
}

TEST(WeightDecodeCuda, Mxfp4EqualsCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  struct Case { int64_t rows, cols; DType scale; };
  for (const Case c : {Case{96, 64, DType::kF8E8M0}, Case{128, 4096, DType::kF8E8M0}, Case{33, 160, DType::kF32}}) {
    const int64_t n = c.rows * c.cols;
    const std::vector<uint8_t> packed = random_bytes(static_cast<size_t>(n / 2), 0, 255);
    const std::vector<uint8_t> scales = random_scales(static_cast<size_t>(n / 32), c.scale);
    std::vector<float> cpu(static_cast<size_t>(n));
    weight_decode_mxfp4(std::as_bytes(std::span(packed)), std::as_bytes(std::span(scales)), c.scale, c.rows, c.cols,
                        cpu.data());
    DeviceBuffer<uint8_t> dp(packed.size()), ds(scales.size());
    dp.upload(packed);
    ds.upload(scales);
    DeviceBuffer<float> o32(cpu.size());
    DeviceBuffer<uint16_t> o16(cpu.size());
    weight_decode_mxfp4_cuda(dp.p, ds.p, c.scale, c.rows, c.cols, o32.p, nullptr, nullptr);
    weight_decode_mxfp4_cuda(dp.p, ds.p, c.scale, c.rows, c.cols, nullptr, o16.p, nullptr);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    expect_same(cpu, o32.download(cpu.size()), o16.download(cpu.size()),
                ("mxfp4 " + std::to_string(c.rows) + "x" + std::to_string(c.cols)).c_str());
  }
}

TEST(WeightDecodeCuda, BadShapesAndOutputsAreErrors) {
  // Argument checks run before any launch, so they hold without a device too.
  uint16_t* none16 = nullptr;
  float f[4];
  EXPECT_THROW(weight_decode_mxfp4_cuda(nullptr, nullptr, DType::kF8E8M0, 4, 48, f, none16, nullptr), Error);
  EXPECT_THROW(weight_decode_fp8_block_cuda(nullptr, nullptr, DType::kF8E8M0, 4, 16, 128, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(weight_decode_fp8_block_cuda(nullptr, nullptr, DType::kBF16, 4, 16, 128, f, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace dsv4::model

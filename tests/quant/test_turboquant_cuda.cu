// test_turboquant_cuda.cu: tq_quantize_cuda (quant/turboquant_cuda.h) against its CPU reference
// tq_quantize + tq_pack (quant/turboquant.h): 2, 3 and 4 bits, group 128 and a small group, rows
// with padding (cols not a multiple of the group), a zero group and an outlier. CUDA build; skips
// without a device unless DSV4_REQUIRE_GPU=1.
// Tolerance: none. Packed bytes, norms and dequant bit for bit: both sides run the same IEEE fp32
// operations in the same order (round-to-nearest intrinsics on the device) and sum the norms'
// squares in double in index order.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/check.h"
#include "quant/turboquant.h"
#include "quant/turboquant_cuda.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"

namespace dsv4::quant {
namespace {

struct Case {
  int bits, group;
  int64_t rows, cols;
};

std::vector<float> draw(int64_t n, uint32_t seed) {
  std::vector<float> w(static_cast<size_t>(n));
  uint32_t s = seed;
  for (float& v : w) {
    s = s * 1664525u + 1013904223u;
    v = (static_cast<float>(s >> 8) / 16777216.0f - 0.5f) * 0.1f;
  }
  return w;
}

TEST(TurboquantCuda, EncoderEqualsTheCpuReferenceBitForBit) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const Case cases[] = {{3, 128, 37, 4096 + 200}, {4, 128, 16, 256}, {2, 128, 16, 384}, {3, 32, 9, 100}, {3, 1024, 3, 2048}};
  for (const Case& c : cases) {
    const std::string what = "bits " + std::to_string(c.bits) + " group " + std::to_string(c.group) + " [" +
                             std::to_string(c.rows) + ", " + std::to_string(c.cols) + "]";
    std::vector<float> w = draw(c.rows * c.cols, static_cast<uint32_t>(c.bits * 1000 + c.group));
    for (int64_t j = 0; j < std::min<int64_t>(c.group, c.cols); ++j) w[static_cast<size_t>(j)] = 0.0f;  // a zero group
    w[static_cast<size_t>(c.cols + 3)] = 1.5f;                                                          // an outlier
    const TqCodec codec(c.bits, c.group);
    const TqResult ref = tq_quantize(codec, w.data(), c.rows, c.cols);
    const std::vector<uint8_t> ref_packed = tq_pack(codec, ref.indices);
    const int64_t groups = tq_groups_per_row(c.cols, c.group);
    DeviceBuffer<float> d_w(w), d_norms(static_cast<size_t>(c.rows * groups)), d_dq(w.size());
    DeviceBuffer<uint8_t> d_packed(ref_packed.size());
    DSV4_CUDA_CHECK(cudaMemset(d_dq.p, 0xff, w.size() * sizeof(float)));  // NaN: an unwritten element fails
    tq_quantize_cuda(c.bits, c.group, d_w.p, c.rows, c.cols, d_packed.p, d_norms.p, d_dq.p, nullptr);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(d_packed.get(), ref_packed) << what;
    EXPECT_EQ(d_norms.get(), ref.norms) << what;
    const std::vector<float> dq = d_dq.get();
    int64_t diff = 0, first = -1;
    for (size_t i = 0; i < dq.size(); ++i) {
      if (std::memcmp(&dq[i], &ref.dequant[i], 4) != 0 && diff++ == 0) first = static_cast<int64_t>(i);
    }
    EXPECT_EQ(diff, 0) << what << ": first at " << first << " gpu " << (first >= 0 ? dq[first] : 0.0f) << " cpu "
                       << (first >= 0 ? ref.dequant[first] : 0.0f);
    double energy = 0;
    for (float v : ref.dequant) energy += static_cast<double>(v) * v;
    EXPECT_GT(energy, 0.0) << what;
  }
}

TEST(TurboquantCuda, RefusesAGroupLargerThanABlock) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  DeviceBuffer<float> w(2048), n(1);
  DeviceBuffer<uint8_t> p(2048);
  EXPECT_THROW(tq_quantize_cuda(3, 2048, w.p, 1, 2048, p.p, n.p, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace dsv4::quant

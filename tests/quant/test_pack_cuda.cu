// test_pack_cuda.cu: compressed_module_encode_cuda (quant/pack_cuda.h) against its CPU reference
// compressed_module_encode (quant/compressed_module.h), for every packing format, on codes and
// qparams drawn directly (tests/quant/encoded_cases.h: every code of the range, the edge shapes),
// 3 matrices per call. Error paths: an int code, a zero point and an e2m1 code out of range name
// the matrix, row and column. CUDA build; skips without a device unless DSV4_REQUIRE_GPU=1.
// Tolerance: none, byte for byte. Every output word is integer bit packing, and scales are exact
// values of their stored dtype (bf16, e4m3, e8m0), so their encoding is exact on both sides.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "common/device_arena.h"
#include "common/safetensors.h"
#include "quant/compressed_module.h"
#include "quant/observer_cuda.h"
#include "quant/pack_cuda.h"
#include "quant/quantizer.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"
#include "tests/quant/encoded_cases.h"

namespace dsv4::quant {
namespace {

using encoded_cases::Case;
using encoded_cases::cases;
using encoded_cases::draw;
using encoded_cases::Inputs;
using encoded_cases::kCount;

// Device copies of `count` matrices' qparams (QParamsCuda layout).
struct DeviceQParams {
  std::unique_ptr<DeviceBuffer<float>> scale, zero_point, global_scale;
  std::unique_ptr<DeviceBuffer<uint8_t>> e8m0;
  explicit DeviceQParams(const std::vector<QParams>& qp) {
    std::vector<float> s, z, g;
    std::vector<uint8_t> e;
    for (const QParams& q : qp) {
      s.insert(s.end(), q.scale.begin(), q.scale.end());
      z.insert(z.end(), q.zero_point.begin(), q.zero_point.end());
      e.insert(e.end(), q.scale_e8m0.begin(), q.scale_e8m0.end());
      g.push_back(q.global_scale);
    }
    scale = std::make_unique<DeviceBuffer<float>>(s);
    zero_point = std::make_unique<DeviceBuffer<float>>(z);
    global_scale = std::make_unique<DeviceBuffer<float>>(g);
    e8m0 = std::make_unique<DeviceBuffer<uint8_t>>(e);
  }
  QParamsCuda view(bool with_e8m0) const {
    return {scale->p, zero_point->p, with_e8m0 ? e8m0->p : nullptr, global_scale->p};
  }
};

// The GPU encoder's bytes, per matrix and layout tensor.
std::vector<std::vector<std::vector<std::byte>>> encode_on_gpu(const Case& c, const Inputs& in) {
  const std::vector<EncodedTensor> layout = compressed_module_layout(c.format, c.args, c.rows, c.cols, false);
  DeviceBuffer<int32_t> codes(in.codes);
  const DeviceQParams qp(in.qp);
  std::vector<std::unique_ptr<DeviceBuffer<std::byte>>> bufs;
  std::vector<void*> outs;
  for (const EncodedTensor& t : layout) {
    bufs.push_back(std::make_unique<DeviceBuffer<std::byte>>(encoded_tensor_bytes(t) * kCount));
    DSV4_CUDA_CHECK(cudaMemset(bufs.back()->p, 0xa5, bufs.back()->n));  // no stale zeros pass for padding
    outs.push_back(bufs.back()->p);
  }
  DeviceArena arena(4096);
  compressed_module_encode_cuda(c.format, c.args, qp.view(c.args.scale_dtype == ScaleDType::kE8m0), codes.p, kCount,
                                c.rows, c.cols, outs, arena, nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(arena.used(), 0u) << c.name << ": the encoder left scratch taken";
  std::vector<std::vector<std::vector<std::byte>>> out(kCount);
  for (size_t t = 0; t < layout.size(); ++t) {
    const std::vector<std::byte> all = bufs[t]->get();
    const size_t bytes = encoded_tensor_bytes(layout[t]);
    for (int b = 0; b < kCount; ++b) {
      out[static_cast<size_t>(b)].emplace_back(all.begin() + b * bytes, all.begin() + (b + 1) * bytes);
    }
  }
  return out;
}

TEST(PackCuda, EveryFormatEqualsTheCpuEncoderByteForByte) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const Case& c : cases()) {
    const std::string shape = " [" + std::to_string(c.rows) + ", " + std::to_string(c.cols) + "]";
    const Inputs in = draw(c);
    const auto gpu = encode_on_gpu(c, in);
    const int64_t per = c.rows * c.cols;
    for (int b = 0; b < kCount; ++b) {
      const std::string what = c.name + shape + " matrix " + std::to_string(b);
      const std::vector<int32_t> codes(in.codes.begin() + b * per, in.codes.begin() + (b + 1) * per);
      const std::vector<EncodedTensor> want =
          compressed_module_encode(c.format, c.args, in.qp[static_cast<size_t>(b)], codes, {}, c.rows, c.cols);
      const auto& got = gpu[static_cast<size_t>(b)];
      ASSERT_EQ(got.size(), want.size()) << what;
      for (size_t t = 0; t < want.size(); ++t) {
        ASSERT_EQ(got[t].size(), want[t].bytes.size()) << what << " " << want[t].name;
        size_t differ = 0, first = 0, nonzero = 0;
        for (size_t i = 0; i < want[t].bytes.size(); ++i) {
          nonzero += want[t].bytes[i] != std::byte{0};
          if (got[t][i] != want[t].bytes[i] && differ++ == 0) first = i;
        }
        EXPECT_GT(nonzero, 0u) << what << " " << want[t].name << ": all-zero reference bytes (vacuous)";
        EXPECT_EQ(differ, 0u) << what << " " << want[t].name << " " << shape_string(want[t].shape) << ": " << differ
                              << " of " << want[t].bytes.size() << " bytes differ; first at byte " << first
                              << ": gpu 0x" << std::hex << static_cast<int>(got[t][first]) << " cpu 0x"
                              << static_cast<int>(want[t].bytes[first]) << std::dec;
      }
    }
  }
}

// The encoder's verdict on a bad input: an error naming the value, the matrix and its position.
std::string encode_error(const Case& c, const Inputs& in) {
  try {
    encode_on_gpu(c, in);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(PackCuda, OutOfRangeCodesAndZeroPointsNameThePosition) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  {  // an int4 code of 8 in matrix 2, row 1, column 100
    const Case c{"W4A16", quant_args_preset("W4A16"), PackFormat::kPackQuantized, 4, 128};
    Inputs in = draw(c);
    in.codes[static_cast<size_t>(2 * 4 * 128 + 1 * 128 + 100)] = 8;
    const std::string msg = encode_error(c, in);
    EXPECT_NE(msg.find("code 8 of matrix 2 at [1, 100] is outside the int4 range"), std::string::npos) << msg;
  }
  {  // a zero point of -9 (int4) in matrix 1, qparam cell [3, 1]
    const Case c{"W4A16_ASYM", quant_args_preset("W4A16_ASYM"), PackFormat::kPackQuantized, 5, 256};
    Inputs in = draw(c);
    in.qp[1].zero_point[static_cast<size_t>(3 * in.qp[1].scale_cols + 1)] = -9.0f;
    const std::string msg = encode_error(c, in);
    EXPECT_NE(msg.find("zero point -9 of matrix 1 at [3, 1] is outside the int4 range"), std::string::npos) << msg;
  }
  {  // an e2m1 code of 16 in matrix 0, row 2, column 5
    const Case c{"MXFP4A16", quant_args_preset("MXFP4A16"), PackFormat::kMxfp4PackQuantized, 3, 64};
    Inputs in = draw(c);
    in.codes[static_cast<size_t>(2 * 64 + 5)] = 16;
    const std::string msg = encode_error(c, in);
    EXPECT_NE(msg.find("code 16 of matrix 0 at [2, 5] is outside the e2m1 [0, 15] range"), std::string::npos) << msg;
  }
}

TEST(PackCuda, WrongOutputCountIsAnErrorAndZeroMatricesANoOp) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const QuantArgs args = quant_args_preset("W4A16");
  DeviceArena arena(4096);
  DeviceBuffer<int32_t> codes(1);
  DeviceBuffer<float> scale(1), zp(1);
  std::vector<void*> one = {codes.p};
  EXPECT_THROW(compressed_module_encode_cuda(PackFormat::kPackQuantized, args, {scale.p, zp.p, nullptr, nullptr},
                                             codes.p, 1, 4, 128, one, arena, nullptr),
               Error);
  std::vector<void*> three = {codes.p, codes.p, codes.p};
  compressed_module_encode_cuda(PackFormat::kPackQuantized, args, {scale.p, zp.p, nullptr, nullptr}, codes.p, 0, 4, 128,
                                three, arena, nullptr);
  EXPECT_EQ(arena.used(), 0u);
}

}  // namespace
}  // namespace dsv4::quant

// test_unpack_cuda.cu: compressed_module_decode_cuda (quant/unpack_cuda.h) against its CPU
// reference compressed_module_decode (quant/unpack.h) rounded to bf16, for every packing format,
// on tensors the CPU encoder wrote from codes and qparams drawn directly (tests/quant/
// encoded_cases.h: every code of the range, the edge shapes). Also: the decoder refuses a wrong
// number of inputs. CUDA build; skips without a device unless DSV4_REQUIRE_GPU=1.
// Tolerance: none, bf16 bit for bit. Both sides compute dequant_value (quant/quantizer_inline.h,
// round-to-nearest intrinsics on the device) from the same code, stored scale and zero point (the
// NVFP4 effective scale is one IEEE division on both), then round to nearest-even bf16 once.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "quant/compressed_module.h"
#include "quant/unpack.h"
#include "quant/unpack_cuda.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"
#include "tests/quant/encoded_cases.h"

namespace dsv4::quant {
namespace {

using encoded_cases::Case;
using encoded_cases::Inputs;

// compressed_module_decode_cuda of one module's tensors (uploaded in layout order): bf16 bits.
std::vector<uint16_t> decode_on_gpu(const Case& c, const std::vector<EncodedTensor>& tensors) {
  std::string why;
  const std::vector<const EncodedTensor*> in =
      compressed_module_in_layout(c.format, c.args, c.rows, c.cols, tensors, &why);
  EXPECT_FALSE(in.empty()) << c.name << ": " << why;
  std::vector<std::unique_ptr<DeviceBuffer<std::byte>>> bufs;
  std::vector<const void*> inputs;
  for (const EncodedTensor* t : in) {
    bufs.push_back(std::make_unique<DeviceBuffer<std::byte>>(t->bytes));
    inputs.push_back(bufs.back()->p);
  }
  DeviceBuffer<uint16_t> out(static_cast<size_t>(c.rows * c.cols));
  DSV4_CUDA_CHECK(cudaMemset(out.p, 0xff, out.n * sizeof(uint16_t)));  // NaN: an unwritten element fails
  compressed_module_decode_cuda(c.format, c.args, inputs, c.rows, c.cols, out.p, nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  return out.get();
}

TEST(UnpackCuda, EveryFormatEqualsTheCpuDecoderInBf16) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const Case& c : encoded_cases::cases()) {
    const Inputs in = encoded_cases::draw(c);
    const int64_t per = c.rows * c.cols;
    for (int b = 0; b < encoded_cases::kCount; ++b) {
      const std::string what = c.name + " [" + std::to_string(c.rows) + ", " + std::to_string(c.cols) + "] matrix " +
                               std::to_string(b);
      const std::vector<int32_t> codes(in.codes.begin() + b * per, in.codes.begin() + (b + 1) * per);
      const std::vector<EncodedTensor> tensors =
          compressed_module_encode(c.format, c.args, in.qp[static_cast<size_t>(b)], codes, {}, c.rows, c.cols);
      const std::vector<float> want = compressed_module_decode(tensors, "m", c.rows, c.cols);
      const std::vector<uint16_t> got = decode_on_gpu(c, tensors);
      ASSERT_EQ(got.size(), want.size()) << what;
      size_t differ = 0, first = 0, nonzero = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        nonzero += want[i] != 0.0f;
        if (got[i] != bf16_encode(want[i]) && differ++ == 0) first = i;
      }
      EXPECT_GT(nonzero * 2, want.size()) << what << ": mostly zero reference weights (vacuous)";
      EXPECT_EQ(differ, 0u) << what << ": " << differ << " of " << want.size() << " differ; first at ("
                            << first / c.cols << ", " << first % c.cols << "): gpu " << bf16_decode(got[first])
                            << " cpu " << want[first] << " (bf16 " << bf16_decode(bf16_encode(want[first]))
                            << "), code " << codes[first];
    }
  }
}

TEST(UnpackCuda, WrongInputCountIsAnError) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  DeviceBuffer<uint16_t> out(4 * 128);
  std::vector<const void*> one = {out.p};
  EXPECT_THROW(compressed_module_decode_cuda(PackFormat::kPackQuantized, quant_args_preset("W4A16"), one, 4, 128,
                                             out.p, nullptr),
               Error);
}

}  // namespace
}  // namespace dsv4::quant

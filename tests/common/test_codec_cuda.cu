// test_codec_cuda.cu: the device build of codec_inline.h equals the CPU codecs bit for bit.
// Decoders run on every code (bf16 65536, e4m3 256, e8m0 256, e2m1 16); encoders on every bf16
// value plus NaN/inf and ties, since kernels quantise with them. Compiled in the CUDA build only;
// skips without a device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "common/codec_inline.h"
#include "tests/gpu_test.h"

namespace dsv4 {
namespace {

constexpr int kNumBf16 = 65536;
constexpr int kThreads = 256;

// One thread per bf16 code; the first 256 / 16 threads also decode the byte / nibble formats.
// Floats are stored as their bits so the comparison is bitwise (NaN payloads, -0, denormals).
__global__ void codec_decode_all_kernel(uint32_t* bf16_out, uint32_t* e4m3_out,
                                        uint32_t* e8m0_out, uint32_t* e2m1_out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= kNumBf16) return;
  bf16_out[i] = codec::float_to_bits(codec::bf16_decode(static_cast<uint16_t>(i)));
  if (i < 256) {
    e4m3_out[i] = codec::float_to_bits(codec::e4m3_decode(static_cast<uint8_t>(i)));
    e8m0_out[i] = codec::float_to_bits(codec::e8m0_decode(static_cast<uint8_t>(i)));
  }
  if (i < 16) e2m1_out[i] = codec::float_to_bits(codec::e2m1_decode(static_cast<uint8_t>(i)));
}

// Encodes x[i] with every encoder; out holds 5 results per input.
__global__ void codec_encode_all_kernel(const float* x, int n, uint32_t* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[5 * i + 0] = codec::bf16_encode(x[i]);
  out[5 * i + 1] = codec::fp16_encode(x[i]);
  out[5 * i + 2] = codec::e4m3_encode(x[i]);
  out[5 * i + 3] = codec::e8m0_encode_ceil(x[i]);
  out[5 * i + 4] = codec::e2m1_encode(x[i]);
}

// Copies a device array of n words back to the host.
std::vector<uint32_t> download(const uint32_t* device, size_t n) {
  std::vector<uint32_t> host(n);
  DSV4_CUDA_CHECK(cudaMemcpy(host.data(), device, n * sizeof(uint32_t), cudaMemcpyDeviceToHost));
  return host;
}

// Compares GPU words with CPU words; reports the count and the first mismatch.
void expect_bitwise_equal(const std::vector<uint32_t>& gpu, const std::vector<uint32_t>& cpu,
                          const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  size_t failed = 0;
  size_t first = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (gpu[i] != cpu[i] && failed++ == 0) first = i;
  }
  EXPECT_EQ(failed, 0u) << what << ": " << failed << "/" << cpu.size() << " differ; first at "
                        << first << ": gpu 0x" << std::hex << gpu[first] << ", cpu 0x"
                        << cpu[first];
}

uint32_t bits_of(float f) { return codec::float_to_bits(f); }

TEST(CodecCuda, DecodersMatchCpuOnEveryCode) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  uint32_t* buffer = nullptr;
  const size_t words = kNumBf16 + 256 + 256 + 16;
  DSV4_CUDA_CHECK(cudaMalloc(&buffer, words * sizeof(uint32_t)));
  // 0xFF... so a thread that never writes shows up as a mismatch, never as a lucky zero.
  DSV4_CUDA_CHECK(cudaMemset(buffer, 0xff, words * sizeof(uint32_t)));
  uint32_t* bf16_out = buffer;
  uint32_t* e4m3_out = bf16_out + kNumBf16;
  uint32_t* e8m0_out = e4m3_out + 256;
  uint32_t* e2m1_out = e8m0_out + 256;
  codec_decode_all_kernel<<<kNumBf16 / kThreads, kThreads>>>(bf16_out, e4m3_out, e8m0_out,
                                                             e2m1_out);
  DSV4_CUDA_CHECK_LAUNCH();
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<uint32_t> want_bf16(kNumBf16), want_e4m3(256), want_e8m0(256), want_e2m1(16);
  for (int c = 0; c < kNumBf16; ++c) want_bf16[c] = bits_of(bf16_decode(static_cast<uint16_t>(c)));
  for (int c = 0; c < 256; ++c) {
    want_e4m3[c] = bits_of(e4m3_decode(static_cast<uint8_t>(c)));
    want_e8m0[c] = bits_of(e8m0_decode(static_cast<uint8_t>(c)));
  }
  for (int c = 0; c < 16; ++c) want_e2m1[c] = bits_of(e2m1_decode(static_cast<uint8_t>(c)));
  // Guard against a vacuous pass: the CPU side must hold real values (448, 2^-127 denormal).
  ASSERT_EQ(want_e4m3[0x7e], bits_of(448.0f));
  ASSERT_EQ(want_e8m0[0], 0x00400000u);

  expect_bitwise_equal(download(bf16_out, kNumBf16), want_bf16, "bf16_decode");
  expect_bitwise_equal(download(e4m3_out, 256), want_e4m3, "e4m3_decode");
  expect_bitwise_equal(download(e8m0_out, 256), want_e8m0, "e8m0_decode");
  expect_bitwise_equal(download(e2m1_out, 16), want_e2m1, "e2m1_decode");
  DSV4_CUDA_CHECK(cudaFree(buffer));
}

TEST(CodecCuda, EncodersMatchCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  // Every bf16 value (incl. ±inf, NaNs, denormals) and its midpoint to the next code (sets the
  // round bit of every narrower format), plus bf16/e4m3/e2m1 ties.
  std::vector<float> x;
  for (uint32_t c = 0; c < 65536; ++c) {
    x.push_back(bf16_decode(static_cast<uint16_t>(c)));
    x.push_back(codec::bits_to_float((c << 16) | 0x8000u));
  }
  for (float v : {17.0f, 432.0f, 464.0f, 0.25f, 0.75f, 2.5f, 5.0f, 65520.0f, 1e-30f}) {
    x.push_back(v);
    x.push_back(-v);
  }
  const int n = static_cast<int>(x.size());

  float* x_device = nullptr;
  uint32_t* out_device = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&x_device, x.size() * sizeof(float)));
  DSV4_CUDA_CHECK(cudaMalloc(&out_device, 5 * x.size() * sizeof(uint32_t)));
  DSV4_CUDA_CHECK(cudaMemset(out_device, 0xff, 5 * x.size() * sizeof(uint32_t)));
  DSV4_CUDA_CHECK(cudaMemcpy(x_device, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
  codec_encode_all_kernel<<<(n + kThreads - 1) / kThreads, kThreads>>>(x_device, n, out_device);
  DSV4_CUDA_CHECK_LAUNCH();
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<uint32_t> want(5 * x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    want[5 * i + 0] = bf16_encode(x[i]);
    want[5 * i + 1] = fp16_encode(x[i]);
    want[5 * i + 2] = e4m3_encode(x[i]);
    want[5 * i + 3] = e8m0_encode_ceil(x[i]);
    want[5 * i + 4] = e2m1_encode(x[i]);
  }
  expect_bitwise_equal(download(out_device, want.size()), want,
                       "encoders (index = 5 * input + {bf16, fp16, e4m3, e8m0, e2m1})");
  DSV4_CUDA_CHECK(cudaFree(out_device));
  DSV4_CUDA_CHECK(cudaFree(x_device));
}

}  // namespace
}  // namespace dsv4

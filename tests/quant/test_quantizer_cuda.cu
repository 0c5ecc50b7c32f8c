// test_quantizer_cuda.cu: data-free rounding on the GPU against the CPU reference, for every
// preset and every packing format (CUDA build; skips without a device unless DSV4_REQUIRE_GPU=1).
// Weights are drawn fresh each run (never zeros; one all-zero group on purpose, and outliers).
// Stated tolerances:
//   - min-max qparams (scale, zero point, e8m0 byte, NVFP4 global scale): bitwise observer_qparams;
//   - MSE qparams: CUDA's pow is not glibc's, so a cell whose best shrink factors tie to the last
//     bits may choose the other one: at most 1% of cells differ (the count is printed);
//   - codes and dequantized values: bitwise quantizer_rtn_with for the qparams the GPU chose;
//   - encoded tensors: byte for byte compressed_module_encode of those codes and qparams;
//   - FP8 block re-encode and MXFP4 -> INT4: bitwise their CPU functions (MSE: as above);
//   - the GPU decode of the encoded tensors (unpack_cuda.h): bitwise the CPU dequant in bf16.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "common/device_arena.h"
#include "quant/compressed_module.h"
#include "quant/gptq.h"
#include "quant/observer.h"
#include "quant/observer_cuda.h"
#include "quant/pack_cuda.h"
#include "quant/quantizer.h"
#include "quant/quantizer_cuda.h"
#include "quant/unpack_cuda.h"
#include "tests/device_buffer.h"
#include "tests/quant/gpu_qparams.h"
#include "tests/gpu_test.h"

namespace dsv4::quant {
namespace {

// Normal weights with a per-matrix sigma, an outlier per row and, in matrix 1, an all-zero first
// group (the eps-scale path).
std::vector<float> random_weights(int count, int64_t rows, int64_t cols) {
  std::vector<float> w(static_cast<size_t>(count * rows * cols));
  for (int b = 0; b < count; ++b) {
    std::normal_distribution<float> d(0.0f, 0.02f * static_cast<float>(b + 1));
    std::uniform_int_distribution<int64_t> col(0, cols - 1);
    float* m = w.data() + b * rows * cols;
    for (int64_t i = 0; i < rows * cols; ++i) m[i] = d(fresh_rng());
    for (int64_t r = 0; r < rows; ++r) m[r * cols + col(fresh_rng())] *= 12.0f;
    if (b == 1) std::fill(m, m + std::min<int64_t>(cols, 16), 0.0f);
  }
  return w;
}

// Cells whose qparams differ; bitwise equality otherwise fails with the first difference.
int64_t qparams_diff(const QParams& gpu, const QParams& cpu, bool exact, const std::string& what) {
  EXPECT_EQ(gpu.scale.size(), cpu.scale.size()) << what;
  EXPECT_EQ(gpu.has_global_scale, cpu.has_global_scale) << what;
  EXPECT_EQ(gpu.global_scale, cpu.global_scale) << what;
  int64_t differ = 0;
  for (size_t i = 0; i < cpu.scale.size() && i < gpu.scale.size(); ++i) {
    const bool same = gpu.scale[i] == cpu.scale[i] && gpu.zero_point[i] == cpu.zero_point[i] &&
                      (cpu.scale_e8m0.empty() || gpu.scale_e8m0[i] == cpu.scale_e8m0[i]);
    if (!same) {
      ++differ;
      if (exact) {
        ADD_FAILURE() << what << " cell " << i << ": gpu scale " << gpu.scale[i] << " zp " << gpu.zero_point[i]
                      << ", cpu scale " << cpu.scale[i] << " zp " << cpu.zero_point[i];
        return differ;
      }
    }
  }
  return differ;
}

void expect_bitwise(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want[i], 4);
    ASSERT_EQ(a, b) << what << " element " << i << ": gpu " << got[i] << " cpu " << want[i];
  }
}

// Encodes `count` matrices on the GPU; returns matrix b's bytes per layout tensor.
std::vector<std::vector<std::vector<std::byte>>> encode_on_gpu(PackFormat format, const QuantArgs& args,
                                                                GpuQParams& qp, const int32_t* codes,
                                                                DeviceArena& arena) {
  const std::vector<EncodedTensor> layout = compressed_module_layout(format, args, qp.rows, qp.cols, false);
  std::vector<std::unique_ptr<DeviceBuffer<std::byte>>> bufs;
  std::vector<void*> outs;
  std::vector<size_t> sizes;
  for (const EncodedTensor& t : layout) {
    size_t bytes = dtype_size(t.dtype);
    for (int64_t v : t.shape) bytes *= static_cast<size_t>(v);
    sizes.push_back(bytes);
    bufs.push_back(std::make_unique<DeviceBuffer<std::byte>>(bytes * static_cast<size_t>(qp.count)));
    outs.push_back(bufs.back()->p);
  }
  compressed_module_encode_cuda(format, args, qp.device(), codes, qp.count, qp.rows, qp.cols, outs, arena, nullptr);
  std::vector<std::vector<std::vector<std::byte>>> per_matrix(static_cast<size_t>(qp.count));
  for (size_t t = 0; t < layout.size(); ++t) {
    const std::vector<std::byte> all = bufs[t]->get();
    for (int b = 0; b < qp.count; ++b) {
      per_matrix[static_cast<size_t>(b)].emplace_back(all.begin() + b * sizes[t], all.begin() + (b + 1) * sizes[t]);
    }
  }
  return per_matrix;
}

// compressed_module_decode_cuda of one module's encoded tensors (uploaded in layout order): the
// bf16 bits of its dequantized weights.
std::vector<uint16_t> decode_on_gpu(PackFormat format, const QuantArgs& args, const std::vector<EncodedTensor>& tensors,
                                    int64_t rows, int64_t cols) {
  std::string why;
  const std::vector<const EncodedTensor*> in = compressed_module_in_layout(format, args, rows, cols, tensors, &why);
  EXPECT_FALSE(in.empty()) << why;
  std::vector<std::unique_ptr<DeviceBuffer<std::byte>>> bufs;
  std::vector<const void*> inputs;
  for (const EncodedTensor* t : in) {
    bufs.push_back(std::make_unique<DeviceBuffer<std::byte>>(t->bytes));
    inputs.push_back(bufs.back()->p);
  }
  DeviceBuffer<uint16_t> out(static_cast<size_t>(rows * cols));
  compressed_module_decode_cuda(format, args, inputs, rows, cols, out.p, nullptr);
  return out.get();
}

struct Case {
  std::string name;
  QuantArgs args;
  PackFormat format;
  int64_t rows = 200, cols = 384;
};

std::vector<Case> cases(bool mse) {
  std::vector<Case> out;
  const auto add = [&](const char* preset, PackFormat f, int64_t rows = 200, int64_t cols = 384) {
    QuantArgs a = quant_args_preset(preset);
    if (mse) a.observer = ObserverKind::kMse;
    out.push_back({std::string(preset) + (mse ? " mse" : ""), a, f, rows, cols});
  };
  add("W4A16", PackFormat::kPackQuantized);
  add("W4A16_ASYM", PackFormat::kPackQuantized);
  add("W8A16_CHANNEL", PackFormat::kPackQuantized);
  add("INT4_G32", PackFormat::kPackQuantized);
  add("NVFP4", PackFormat::kNvfp4PackQuantized);
  add("MXFP4A16", PackFormat::kMxfp4PackQuantized);
  add("FP8_BLOCK", PackFormat::kFloatQuantized, 200, 320);  // ragged blocks: multi-row cells
  if (mse) return out;
  add("W8A16", PackFormat::kPackQuantized);
  add("W3A16", PackFormat::kPackQuantized);  // fields straddle int32 words
  add("W8A8", PackFormat::kIntQuantized);
  add("INT8_ASYM_CHANNEL", PackFormat::kPackQuantized);
  add("FP8", PackFormat::kFloatQuantized);  // tensor strategy: one cell per matrix
  add("FP8_DYNAMIC", PackFormat::kFloatQuantized);
  add("FP8_DYNAMIC", PackFormat::kFloatQuantized, 50, 386);  // odd width: the one-column-per-thread kernel
  out.back().name = "FP8_DYNAMIC odd width";
  add("FP8_BLOCK_E8M0", PackFormat::kFloatQuantized, 200, 320);
  add("W4A16", PackFormat::kNaiveQuantized);
  out.back().name = "W4A16 naive";
  Case f32{"W4A16_ASYM fp32 scales", quant_args_preset("W4A16_ASYM"), PackFormat::kPackQuantized};
  f32.args.scale_dtype = ScaleDType::kF32;
  out.push_back(f32);
  return out;
}

void run_case(const Case& c, bool exact_qparams) {
  const int count = 3;
  const int64_t rows = c.rows, cols = c.cols, per = rows * cols;
  const std::vector<float> w = random_weights(count, rows, cols);
  DeviceBuffer<float> d_w(w), d_deq(w.size());
  DeviceBuffer<int32_t> d_codes(w.size());
  GpuQParams qp(c.args, count, rows, cols);
  DeviceArena arena(observer_cuda_scratch_bytes(c.args, count, rows, cols) + 4096);
  quantizer_rtn_cuda(c.args, d_w.p, count, rows, cols, nullptr, qp.device(), d_codes.p, d_deq.p, arena, nullptr);
  const auto encoded = encode_on_gpu(c.format, c.args, qp, d_codes.p, arena);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(arena.used(), 0u) << c.name;
  const std::vector<int32_t> codes = d_codes.get();
  const std::vector<float> deq = d_deq.get();
  int64_t differ = 0, total = 0;
  for (int b = 0; b < count; ++b) {
    const std::string what = c.name + " matrix " + std::to_string(b);
    const float* wb = w.data() + b * per;
    const QParams gpu = qp.host(c.args, b);
    const QParams cpu = observer_qparams(c.args, wb, rows, cols);
    differ += qparams_diff(gpu, cpu, exact_qparams, what);
    total += static_cast<int64_t>(cpu.scale.size());
    const RtnResult r = quantizer_rtn_with(c.args, gpu, wb);
    ASSERT_TRUE(std::equal(r.codes.begin(), r.codes.end(), codes.begin() + b * per)) << what << ": codes";
    expect_bitwise(std::vector<float>(deq.begin() + b * per, deq.begin() + (b + 1) * per), r.dequant, what + " dequant");
    const std::vector<EncodedTensor> want = compressed_module_encode(c.format, c.args, gpu, r.codes, {}, rows, cols);
    ASSERT_EQ(want.size(), encoded[static_cast<size_t>(b)].size()) << what;
    for (size_t t = 0; t < want.size(); ++t) {
      EXPECT_TRUE(want[t].bytes == encoded[static_cast<size_t>(b)][t]) << what << ": tensor " << want[t].name;
    }
    // The decode reads the stored scales, in the dtype the scheme names (fp32 scales stored as
    // fp32 since issue 27), so it is the dequant rounded to bf16.
    const std::vector<float>& stored = r.dequant;
    const std::vector<uint16_t> decoded = decode_on_gpu(c.format, c.args, want, rows, cols);
    for (size_t i = 0; i < decoded.size(); ++i) {
      ASSERT_EQ(decoded[i], bf16_encode(stored[i])) << what << ": GPU decode of element " << i << " (" << stored[i] << ")";
    }
  }
  if (!exact_qparams) {
    std::printf("[ %s ] %lld of %lld MSE cells chose another shrink factor than the CPU\n", c.name.c_str(),
                static_cast<long long>(differ), static_cast<long long>(total));
    EXPECT_LE(differ * 100, total) << c.name;
  }
}

TEST(QuantizerCuda, MinMaxRtnAndEncodingEqualCpuForEveryPreset) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const Case& c : cases(false)) run_case(c, true);
}

// The peer's RTN arithmetic (QuotientArith::kBf16Model: x/s rounded to bf16, as llm-compressor on
// a BF16 model), the baseline the GPU GPTQ batch reports: bitwise quantizer_rtn_with's.
TEST(QuantizerCuda, PeerRtnArithEqualsCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const char* preset : {"W8A16", "W4A16_ASYM", "FP8_DYNAMIC"}) {
    const QuantArgs args = quant_args_preset(preset);
    const int count = 2;
    const int64_t rows = 64, cols = 256, per = rows * cols;
    const std::vector<float> w = random_weights(count, rows, cols);
    DeviceBuffer<float> d_w(w), d_deq(w.size());
    DeviceBuffer<int32_t> d_codes(w.size());
    GpuQParams qp(args, count, rows, cols);
    DeviceArena arena(observer_cuda_scratch_bytes(args, count, rows, cols) + 4096);
    observer_qparams_cuda(args, d_w.p, count, rows, cols, nullptr, qp.device(), arena, nullptr);
    quantizer_quantize_cuda(args, d_w.p, count, rows, cols, qp.device(), d_codes.p, d_deq.p, nullptr, kPeerRtnArith);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<int32_t> codes = d_codes.get();
    const std::vector<float> deq = d_deq.get();
    for (int b = 0; b < count; ++b) {
      const std::string what = std::string(preset) + " matrix " + std::to_string(b);
      const RtnResult r = quantizer_rtn_with(args, qp.host(args, b), w.data() + b * per, kPeerRtnArith);
      EXPECT_TRUE(std::equal(r.codes.begin(), r.codes.end(), codes.begin() + b * per)) << what << ": codes";
      expect_bitwise(std::vector<float>(deq.begin() + b * per, deq.begin() + (b + 1) * per), r.dequant, what);
    }
  }
}

TEST(QuantizerCuda, MseRtnMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const Case& c : cases(true)) run_case(c, false);
}

TEST(QuantizerCuda, Nvfp4SharedAmaxSetsTheGlobalScale) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const QuantArgs args = quant_args_preset("NVFP4");
  const int count = 2;
  const int64_t rows = 64, cols = 256;
  const std::vector<float> w = random_weights(count, rows, cols);
  const std::vector<float> amax = {3.5f, 0.0f};  // matrix 1: 0 means its own amax
  DeviceBuffer<float> d_w(w), d_amax(amax);
  DeviceBuffer<int32_t> d_codes(w.size());
  GpuQParams qp(args, count, rows, cols);
  DeviceArena arena(observer_cuda_scratch_bytes(args, count, rows, cols));
  quantizer_rtn_cuda(args, d_w.p, count, rows, cols, d_amax.p, qp.device(), d_codes.p, nullptr, arena, nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  for (int b = 0; b < count; ++b) {
    const QParams cpu = observer_qparams(args, w.data() + b * rows * cols, rows, cols, amax[static_cast<size_t>(b)]);
    qparams_diff(qp.host(args, b), cpu, true, "NVFP4 shared amax matrix " + std::to_string(b));
  }
  EXPECT_EQ(qp.host(args, 0).global_scale, nvfp4_global_scale(3.5f));
}

// Release FP8 weights: random e4m3 codes (no NaN) and e8m0 block scales.
TEST(QuantizerCuda, Fp8BlockReencodeEqualsCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int count = 2;
  const int64_t rows = 200, cols = 320, sr = 2, sc = 3;
  std::uniform_int_distribution<int> code(0, 255), exp(110, 130);
  std::vector<uint8_t> codes(static_cast<size_t>(count * rows * cols)), scales(static_cast<size_t>(count * sr * sc));
  for (auto& c : codes) {
    c = static_cast<uint8_t>(code(fresh_rng()));
    if ((c & 0x7f) == 0x7f) c ^= 1;  // e4m3 NaN -> ±416
  }
  for (auto& s : scales) s = static_cast<uint8_t>(exp(fresh_rng()));
  std::vector<float> w(codes.size());
  for (int b = 0; b < count; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(b * rows * cols + r * cols + c);
        w[i] = e4m3_decode(codes[i]) * e8m0_decode(scales[static_cast<size_t>(b * sr * sc + (r / 128) * sc + c / 128)]);
      }
    }
  }
  for (const char* preset : {"FP8_BLOCK_E8M0", "FP8_BLOCK"}) {
    const QuantArgs args = quant_args_preset(preset);
    DeviceBuffer<float> d_w(w), d_deq(w.size());
    DeviceBuffer<uint8_t> d_scales(scales);
    DeviceBuffer<int32_t> d_codes(w.size());
    GpuQParams qp(args, count, rows, cols);
    DeviceArena arena(observer_cuda_scratch_bytes(args, count, rows, cols));
    quantizer_fp8_block_reencode_cuda(args, d_w.p, d_scales.p, count, rows, cols, qp.device(), d_codes.p, d_deq.p,
                                      arena, nullptr);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<int32_t> got = d_codes.get();
    const std::vector<float> deq = d_deq.get();
    for (int b = 0; b < count; ++b) {
      const std::string what = std::string(preset) + " matrix " + std::to_string(b);
      const RtnResult cpu = quantizer_fp8_block_reencode(args, codes.data() + b * rows * cols,
                                                         scales.data() + b * sr * sc, rows, cols);
      qparams_diff(qp.host(args, b), cpu.qparams, true, what);
      ASSERT_TRUE(std::equal(cpu.codes.begin(), cpu.codes.end(), got.begin() + b * rows * cols)) << what;
      expect_bitwise(std::vector<float>(deq.begin() + b * rows * cols, deq.begin() + (b + 1) * rows * cols),
                     cpu.dequant, what + " dequant");
      if (args.scale_dtype == ScaleDType::kE8m0) {  // the release codes come back unchanged
        for (int64_t i = 0; i < rows * cols; ++i) {
          ASSERT_EQ(got[static_cast<size_t>(b * rows * cols + i)], codes[static_cast<size_t>(b * rows * cols + i)]) << what;
        }
      }
    }
  }
}

// Release MXFP4 experts -> INT4 g32: decode, then RTN with min-max or MSE scales.
TEST(QuantizerCuda, Mxfp4ToInt4EqualsCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int count = 2;
  const int64_t rows = 96, cols = 256, groups = cols / 32;
  std::uniform_int_distribution<int> nib(0, 15), exp(115, 125);
  std::vector<uint8_t> nibbles(static_cast<size_t>(count * rows * cols)), scales(static_cast<size_t>(count * rows * groups));
  for (auto& n : nibbles) n = static_cast<uint8_t>(nib(fresh_rng()));
  for (auto& s : scales) s = static_cast<uint8_t>(exp(fresh_rng()));
  std::vector<float> w(nibbles.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = e2m1_decode(nibbles[i]) * e8m0_decode(scales[i / 32]);
  for (const bool mse : {false, true}) {
    QuantArgs args = quant_args_preset("INT4_G32");
    if (mse) args.observer = ObserverKind::kMse;
    DeviceBuffer<float> d_w(w);
    DeviceBuffer<int32_t> d_codes(w.size());
    GpuQParams qp(args, count, rows, cols);
    DeviceArena arena(observer_cuda_scratch_bytes(args, count, rows, cols));
    quantizer_rtn_cuda(args, d_w.p, count, rows, cols, nullptr, qp.device(), d_codes.p, nullptr, arena, nullptr);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<int32_t> got = d_codes.get();
    int64_t differ = 0;
    for (int b = 0; b < count; ++b) {
      const std::string what = std::string("MXFP4->INT4") + (mse ? " mse" : "") + " matrix " + std::to_string(b);
      const RtnResult cpu = quantizer_mxfp4_to_int4(args, nibbles.data() + b * rows * cols,
                                                    scales.data() + b * rows * groups, rows, cols);
      const QParams gpu = qp.host(args, b);
      differ += qparams_diff(gpu, cpu.qparams, !mse, what);
      const RtnResult same_qp = quantizer_rtn_with(args, gpu, w.data() + b * rows * cols);
      ASSERT_TRUE(std::equal(same_qp.codes.begin(), same_qp.codes.end(), got.begin() + b * rows * cols)) << what;
    }
    EXPECT_LE(differ * 100, count * rows * groups);
  }
}

TEST(QuantizerCuda, OutOfRangeCodesAreErrorsNamingThePosition) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const QuantArgs args = quant_args_preset("W4A16");
  const int count = 2;
  const int64_t rows = 4, cols = 128;
  std::vector<int32_t> codes(static_cast<size_t>(count * rows * cols), 1);
  codes[static_cast<size_t>(rows * cols + 2 * cols + 7)] = 9;  // matrix 1, row 2, column 7
  DeviceBuffer<int32_t> d_codes(codes);
  GpuQParams qp(args, count, rows, cols);
  DSV4_CUDA_CHECK(cudaMemset(qp.scale.p, 0, qp.scale.n * 4));
  DSV4_CUDA_CHECK(cudaMemset(qp.zero_point.p, 0, qp.zero_point.n * 4));
  DeviceArena arena(4096);
  try {
    encode_on_gpu(PackFormat::kPackQuantized, args, qp, d_codes.p, arena);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("code 9 of matrix 1 at [2, 7]"), std::string::npos) << e.what();
  }
}

TEST(QuantizerCuda, UnsupportedCallsAreErrors) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  DeviceArena arena(4096);
  QuantArgs fp8_mse = quant_args_preset("FP8");
  fp8_mse.observer = ObserverKind::kMse;
  float dummy = 0.0f;
  QParamsCuda qp{&dummy, &dummy, nullptr, nullptr};
  EXPECT_THROW(observer_qparams_cuda(fp8_mse, &dummy, 1, 4, 128, nullptr, qp, arena, nullptr), Error);  // tensor MSE
  EXPECT_THROW(observer_qparams_cuda(quant_args_preset("NVFP4"), &dummy, 1, 4, 128, nullptr, qp, arena, nullptr),
               Error);  // no global-scale output
  EXPECT_THROW(observer_qparams_cuda(quant_args_preset("MXFP4A16"), &dummy, 1, 4, 128, nullptr, qp, arena, nullptr),
               Error);  // no e8m0 output
  try {  // an arena too small names the request
    DeviceArena tiny(256);
    observer_qparams_cuda(quant_args_preset("W4A16"), &dummy, 8, 512, 1024, nullptr, qp, tiny, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("observer minima"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4::quant

// test_gptq_golden.cpp: quant/gptq.h against llm-compressor 0.14.0.1's own GPTQ solver
// (llmcompressor.modifiers.gptq.gptq_quantize.quantize_weight, eager CPU backend) on the fixture
// tests/golden/gptq_w4a16_seed3.safetensors (written by tests/golden/make_gptq_fixture.py).
//
// Same inputs on both sides: W [64, 256] fp32, the H quantize_weight received (2/n Σ xxᵀ, fp32),
// W4A16 (int4 sym group 128) with fp32 scales (the weight is fp32), dampening 0.01, block 128,
// qparams up front from the original W, actorder static ("weight") and none.
//
// Expectations, stated before measuring:
//  * scales bit-exact: both come from min/max of the same fp32 W by the same formula;
//  * codes: differences can only come from float summation order and our double-precision
//    Cholesky → inverse → Cholesky chain vs torch's fp32 one; a value sitting near a rounding
//    boundary can flip to the neighbouring code, and the flip then propagates through the
//    error feedback. Bound: ≥ 99 % identical codes per variant and every difference at most one
//    quantization step (|Δcode| ≤ 1);
//  * dequant differences at most one step (follows from |Δcode| ≤ 1 with equal scales);
//  * loss within 1e-4 relative: it is Σ((w−q)/d)²/2 with d = diag(U), and our d comes from the
//    double chain (measured 2e-6 / 2e-7 with identical codes). This bound is tighter than the
//    1 % first planned; a single flipped code could exceed it, and then the codes bound above
//    would be the one to look at first.
// Measured on the committed fixture (x86-64, GCC, -O2): scales bit-exact, codes 0 / 16384
// differing for both variants, dequant equal by value (llm-compressor's -0.0 entries, 1196 /
// 1191, are -0.0 in ours too; the fixture's int8 codes cannot carry the sign of zero), loss rel
// diff 2.1e-6 (static) and 2.1e-7 (none).
// bf16_static (GptqGolden.Bf16ActOrderStatic, default W4A16 / scale_dtype kModel on the bf16 weight,
// same bounds). Before the fake-quant value was rounded to bf16 (compressed-tensors multiplies
// code * scale in the bf16 scale's dtype) it measured 1165 / 16384 codes differing and a 6.9e-3
// loss gap. With quantizer_dequant_value rounding to bf16, measured: scales 0 / 128 differing,
// codes 0 / 16384, dequant equal to bf16(code*scale) everywhere, loss rel diff 1.9e-6.
// The measured numbers are printed so CI logs show them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/codec.h"
#include "common/safetensors.h"
#include "quant/gptq.h"
#include "quant/quant_args.h"

namespace dsv4::quant {
namespace {

constexpr int64_t kRows = 64, kCols = 256;

std::string fixture_path() {
  return std::string(DSV4_SOURCE_DIR) + "/tests/golden/gptq_w4a16_seed3.safetensors";
}

template <class T>
std::vector<T> read_tensor(const SafetensorsFile& fx, const std::string& name, DType dtype,
                           const std::vector<int64_t>& shape) {
  const TensorInfo* info = fx.find(name);
  EXPECT_NE(info, nullptr) << name;
  if (info == nullptr) return {};
  EXPECT_EQ(info->dtype, dtype) << name;
  EXPECT_EQ(info->shape, shape) << name;
  const auto bytes = fx.bytes(*info);
  std::vector<T> v(bytes.size() / sizeof(T));
  EXPECT_EQ(v.size(), static_cast<size_t>(info->numel())) << name;
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

void run_variant(const std::string& name, ActOrder order) {
  const auto fx = SafetensorsFile::open(fixture_path());
  const auto& meta = fx->metadata();
  const std::vector<float> w = read_tensor<float>(*fx, "weight", DType::kF32, {kRows, kCols});
  const std::vector<float> h = read_tensor<float>(*fx, "hessian", DType::kF32, {kCols, kCols});
  const std::vector<float> ref_scale =
      read_tensor<float>(*fx, name + ".scale", DType::kF32, {kRows, kCols / 128});
  const std::vector<int8_t> ref_codes =
      read_tensor<int8_t>(*fx, name + ".codes", DType::kI8, {kRows, kCols});
  ASSERT_TRUE(meta.count(name + ".loss")) << name;
  const double ref_loss = std::strtod(meta.at(name + ".loss").c_str(), nullptr);
  ASSERT_GT(ref_loss, 0.0);
  ASSERT_FALSE(::testing::Test::HasFailure());

  QuantArgs args = quant_args_preset("W4A16");
  args.scale_dtype = ScaleDType::kF32;  // fp32 weight: llm-compressor keeps fp32 scales
  GptqOptions opts;
  opts.dampening_frac = 0.01f;
  opts.block_size = 128;
  opts.actorder = order;
  const GptqResult r = gptq_solve(args, w.data(), kRows, kCols, h.data(), opts);
  ASSERT_EQ(r.fallback, GptqFallback::kNone);
  ASSERT_EQ(r.actorder_used, order);
  EXPECT_TRUE(r.g_idx.empty());  // none/static: no g_idx on disk

  // Scales: bit-exact.
  ASSERT_EQ(r.qparams.scale.size(), ref_scale.size());
  int64_t scale_diff = 0;
  for (size_t i = 0; i < ref_scale.size(); ++i) {
    if (std::memcmp(&r.qparams.scale[i], &ref_scale[i], sizeof(float)) != 0) ++scale_diff;
  }
  for (float z : r.qparams.zero_point) EXPECT_EQ(z, 0.0f);

  // Codes and dequant (reference dequant = code * scale, exact in fp32).
  int64_t code_diff = 0, max_code_diff = 0, deq_value_diff = 0, neg_zero = 0;
  double max_deq_diff = 0.0, max_deq_diff_steps = 0.0;
  for (int64_t rr = 0; rr < kRows; ++rr) {
    for (int64_t c = 0; c < kCols; ++c) {
      const size_t i = static_cast<size_t>(rr * kCols + c);
      const float s = ref_scale[static_cast<size_t>(rr * (kCols / 128) + c / 128)];
      const float ref_deq = static_cast<float>(ref_codes[i]) * s;
      const int64_t dc = std::llabs(static_cast<long long>(r.codes[i]) - ref_codes[i]);
      if (dc != 0) ++code_diff;
      max_code_diff = std::max(max_code_diff, dc);
      // By value: the fixture's code * scale is +0 where llm-compressor's fake quant gives -0
      // (torch.round(-0.3) = -0); those signed zeros are not a difference.
      if (r.dequant[i] != ref_deq) ++deq_value_diff;
      if (r.dequant[i] == 0.0f && std::signbit(r.dequant[i])) ++neg_zero;
      const double dd = std::fabs(double(r.dequant[i]) - double(ref_deq));
      max_deq_diff = std::max(max_deq_diff, dd);
      max_deq_diff_steps = std::max(max_deq_diff_steps, dd / s);
    }
  }
  const int64_t total = kRows * kCols;
  const double rel_loss = std::fabs(r.loss - ref_loss) / ref_loss;
  std::printf(
      "[GptqGolden %s] llmcompressor %s / compressed-tensors %s / torch %s\n"
      "[GptqGolden %s] scales differing (bits): %lld / %zu\n"
      "[GptqGolden %s] codes differing: %lld / %lld (%.3f %%), max |dcode| %lld; dequant "
      "differing (value): %lld, max |ddequant| %.6g (%.3g steps); -0.0 in ours: %lld\n"
      "[GptqGolden %s] loss ours %.9g vs llm-compressor %.9g (rel diff %.3g)\n",
      name.c_str(), meta.count("llmcompressor_version") ? meta.at("llmcompressor_version").c_str() : "?",
      meta.count("compressed_tensors_version") ? meta.at("compressed_tensors_version").c_str() : "?",
      meta.count("torch_version") ? meta.at("torch_version").c_str() : "?", name.c_str(),
      static_cast<long long>(scale_diff), ref_scale.size(), name.c_str(),
      static_cast<long long>(code_diff), static_cast<long long>(total),
      100.0 * double(code_diff) / double(total), static_cast<long long>(max_code_diff),
      static_cast<long long>(deq_value_diff), max_deq_diff, max_deq_diff_steps,
      static_cast<long long>(neg_zero), name.c_str(),
      r.loss, ref_loss, rel_loss);

  EXPECT_EQ(scale_diff, 0);
  EXPECT_LE(code_diff * 100, total) << "more than 1 % of codes differ";
  EXPECT_LE(max_code_diff, 1);
  EXPECT_LE(max_deq_diff_steps, 1.0 + 1e-6);
  EXPECT_LE(rel_loss, 1e-4);
}

// bf16_static: the default path for a bf16 Linear. llm-compressor's observer runs on the bf16
// weight (calculate_qparams in bf16, bf16 scale), the sweep runs on the weight cast to fp32, and
// compressed-tensors' fake quant multiplies code * scale in bf16. Ours: the default W4A16 preset
// (scale_dtype kModel, §1.8) on the bf16 values widened to fp32. Same bounds as above (scales
// bit-exact; ≥ 99 % identical codes, |Δcode| ≤ 1; loss ≤ 1e-4 relative); the reference dequant
// is bf16(code * scale). The assertions are EXPECT so that every number is printed.
TEST(GptqGolden, Bf16ActOrderStatic) {
  const std::string name = "bf16_static";
  const auto fx = SafetensorsFile::open(fixture_path());
  const auto& meta = fx->metadata();
  const std::vector<uint16_t> wb =
      read_tensor<uint16_t>(*fx, "weight_bf16", DType::kBF16, {kRows, kCols});
  const std::vector<float> h = read_tensor<float>(*fx, "hessian", DType::kF32, {kCols, kCols});
  const std::vector<float> ref_scale =
      read_tensor<float>(*fx, name + ".scale", DType::kF32, {kRows, kCols / 128});
  const std::vector<int8_t> ref_codes =
      read_tensor<int8_t>(*fx, name + ".codes", DType::kI8, {kRows, kCols});
  ASSERT_TRUE(meta.count(name + ".loss"));
  const double ref_loss = std::strtod(meta.at(name + ".loss").c_str(), nullptr);
  ASSERT_GT(ref_loss, 0.0);
  ASSERT_FALSE(::testing::Test::HasFailure());
  std::vector<float> w(wb.size());
  bf16_decode_n(wb.data(), w.data(), wb.size());

  const QuantArgs args = quant_args_preset("W4A16");
  ASSERT_EQ(args.scale_dtype, ScaleDType::kModel);  // the default: bf16 scale arithmetic
  GptqOptions opts;
  opts.dampening_frac = 0.01f;
  opts.block_size = 128;
  opts.actorder = ActOrder::kStatic;
  const GptqResult r = gptq_solve(args, w.data(), kRows, kCols, h.data(), opts);
  ASSERT_EQ(r.fallback, GptqFallback::kNone);
  ASSERT_EQ(r.actorder_used, ActOrder::kStatic);
  ASSERT_EQ(r.qparams.scale.size(), ref_scale.size());

  // Scales: bit-exact; for the first difference print both values and the group's amax.
  int64_t scale_diff = 0;
  for (size_t i = 0; i < ref_scale.size(); ++i) {
    if (std::memcmp(&r.qparams.scale[i], &ref_scale[i], sizeof(float)) == 0) continue;
    if (scale_diff++ == 0) {
      const int64_t row = static_cast<int64_t>(i) / (kCols / 128), g = static_cast<int64_t>(i) % (kCols / 128);
      float amax = 0.0f;
      for (int64_t c = g * 128; c < (g + 1) * 128; ++c) amax = std::max(amax, std::fabs(w[row * kCols + c]));
      std::printf("[GptqGolden %s] first scale difference: row %lld group %lld: ours %.9g vs "
                  "llm-compressor %.9g, group amax %.9g\n",
                  name.c_str(), static_cast<long long>(row), static_cast<long long>(g),
                  r.qparams.scale[i], ref_scale[i], amax);
    }
  }
  for (float z : r.qparams.zero_point) EXPECT_EQ(z, 0.0f);

  int64_t code_diff = 0, max_code_diff = 0, deq_value_diff = 0, deq_diff_same_code = 0;
  double max_deq_diff_steps = 0.0;
  for (int64_t rr = 0; rr < kRows; ++rr) {
    for (int64_t c = 0; c < kCols; ++c) {
      const size_t i = static_cast<size_t>(rr * kCols + c);
      const float s = ref_scale[static_cast<size_t>(rr * (kCols / 128) + c / 128)];
      const float ref_deq = bf16_decode(bf16_encode(static_cast<float>(ref_codes[i]) * s));
      const int64_t dc = std::llabs(static_cast<long long>(r.codes[i]) - ref_codes[i]);
      if (dc != 0) ++code_diff;
      max_code_diff = std::max(max_code_diff, dc);
      if (r.dequant[i] != ref_deq) {
        ++deq_value_diff;
        if (dc == 0) ++deq_diff_same_code;
      }
      max_deq_diff_steps =
          std::max(max_deq_diff_steps, std::fabs(double(r.dequant[i]) - double(ref_deq)) / s);
    }
  }
  const int64_t total = kRows * kCols;
  const double rel_loss = std::fabs(r.loss - ref_loss) / ref_loss;
  std::printf(
      "[GptqGolden %s] scales differing (bits): %lld / %zu\n"
      "[GptqGolden %s] codes differing: %lld / %lld (%.3f %%), max |dcode| %lld; dequant "
      "differing (value, ref = bf16(code*scale)): %lld (%lld with equal codes), max %.3g steps\n"
      "[GptqGolden %s] loss ours %.9g vs llm-compressor %.9g (rel diff %.3g)\n",
      name.c_str(), static_cast<long long>(scale_diff), ref_scale.size(), name.c_str(),
      static_cast<long long>(code_diff), static_cast<long long>(total),
      100.0 * double(code_diff) / double(total), static_cast<long long>(max_code_diff),
      static_cast<long long>(deq_value_diff), static_cast<long long>(deq_diff_same_code),
      max_deq_diff_steps, name.c_str(), r.loss, ref_loss, rel_loss);

  EXPECT_EQ(scale_diff, 0);
  EXPECT_LE(code_diff * 100, total) << "more than 1 % of codes differ";
  EXPECT_LE(max_code_diff, 1);
  EXPECT_LE(max_deq_diff_steps, 1.0 + 1e-6);
  EXPECT_LE(rel_loss, 1e-4);
}

TEST(GptqGolden, ActOrderStatic) { run_variant("static", ActOrder::kStatic); }
TEST(GptqGolden, ActOrderNone) { run_variant("none", ActOrder::kNone); }

}  // namespace
}  // namespace dsv4::quant

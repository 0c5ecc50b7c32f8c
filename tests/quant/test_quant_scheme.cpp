// test_quant_scheme.cpp: scheme presets (weights + input activations), the format inference of
// compressed-tensors' format.py, activation-args validation, and the static activation tensors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "common/check.h"
#include "common/codec.h"
#include "quant/quant_scheme.h"

namespace dsv4::quant {
namespace {

void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(QuantScheme, PresetFormatsFollowCompressedTensorsPriority) {
  struct Case {
    const char* name;
    PackFormat format;
    bool has_activations;
  };
  for (const Case& c : {Case{"W4A16", PackFormat::kPackQuantized, false},
                        Case{"W4A16_ASYM", PackFormat::kPackQuantized, false},
                        Case{"W8A16", PackFormat::kPackQuantized, false},
                        Case{"W3A16", PackFormat::kPackQuantized, false},
                        Case{"INT4_G32", PackFormat::kPackQuantized, false},
                        Case{"INT8_ASYM_CHANNEL", PackFormat::kPackQuantized, false},
                        Case{"W8A8", PackFormat::kIntQuantized, true},
                        Case{"FP8", PackFormat::kFloatQuantized, true},
                        Case{"FP8_DYNAMIC", PackFormat::kFloatQuantized, true},
                        Case{"FP8_BLOCK", PackFormat::kFloatQuantized, true},
                        Case{"FP8_BLOCK_E8M0", PackFormat::kFloatQuantized, true},
                        Case{"NVFP4A16", PackFormat::kNvfp4PackQuantized, false},
                        Case{"NVFP4", PackFormat::kNvfp4PackQuantized, true},
                        Case{"MXFP4A16", PackFormat::kMxfp4PackQuantized, false},
                        Case{"MXFP4", PackFormat::kMxfp4PackQuantized, true}}) {
    const QuantScheme s = quant_scheme_preset(c.name);
    s.check();
    EXPECT_EQ(s.name, c.name);
    EXPECT_EQ(quant_scheme_format(s), c.format) << c.name;
    EXPECT_EQ(s.input_activations.has_value(), c.has_activations) << c.name;
  }
  // Every preset name resolves and passes check().
  for (const std::string& n : quant_scheme_preset_names()) quant_scheme_preset(n).check();
}

TEST(QuantScheme, FormatInferenceBeyondPresets) {
  QuantScheme s = quant_scheme_preset("W4A16");
  // Int weights with any input activations (W4A8, W4AFP8) -> int-quantized (int8 storage):
  // IntQuantizationCompressor comes before pack-quantized in the priority list.
  s.input_activations = ActivationArgs{};
  EXPECT_EQ(quant_scheme_format(s), PackFormat::kIntQuantized);
  ActivationArgs fp8_token;
  fp8_token.type = QuantType::kFloat;
  s.input_activations = fp8_token;
  EXPECT_EQ(quant_scheme_format(s), PackFormat::kIntQuantized);
  // FP4 weights in groups other than 16 / 32 -> naive-quantized (check() refuses them later).
  QuantScheme g = quant_scheme_preset("NVFP4A16");
  g.weights.group_size = 64;
  EXPECT_EQ(quant_scheme_format(g), PackFormat::kNaiveQuantized);
  // FP8 weights alone -> naive-quantized (float-quantized needs input activations).
  QuantScheme f = quant_scheme_preset("FP8_BLOCK");
  f.input_activations.reset();
  EXPECT_EQ(quant_scheme_format(f), PackFormat::kNaiveQuantized);
  // The recipe's format override wins, and must fit the weights.
  f.format = PackFormat::kFloatQuantized;
  EXPECT_EQ(quant_scheme_format(f), PackFormat::kFloatQuantized);
  f.check();
  f.format = PackFormat::kPackQuantized;
  expect_error([&] { f.check(); }, "format pack-quantized cannot hold weights float8");
}

TEST(QuantScheme, ActivationArgsValidation) {
  ActivationArgs a;
  a.check();  // int8 token dynamic: W8A8's
  ActivationArgs b = a;
  b.dynamic = ActDynamic::kStatic;
  expect_error([&] { b.check(); }, "the token strategy must be dynamic");
  ActivationArgs c = a;
  c.strategy = ActStrategy::kGroup;
  expect_error([&] { c.check(); }, "group strategies need group_size > 0");
  ActivationArgs d = a;
  d.dynamic = ActDynamic::kLocal;
  d.strategy = ActStrategy::kTensor;
  expect_error([&] { d.check(); }, "only strategy tensor_group has a local mode");
  ActivationArgs e = a;
  e.type = QuantType::kFloat;
  e.symmetric = false;
  expect_error([&] { e.check(); }, "asymmetric float activations");
  ActivationArgs f = a;
  f.type = QuantType::kFloat;
  f.num_bits = 6;
  expect_error([&] { f.check(); }, "float activations are fp8 or fp4");
  expect_error([] { quant_scheme_preset("W4A4_TYPO"); }, "known schemes: W4A16");
}

TEST(QuantScheme, StaticActivationTensors) {
  // FP8 static per-tensor: input_scale bf16 [1] = bf16(amax / 448).
  const auto fp8 = activation_encode(quant_scheme_preset("FP8"), 3.5f);
  ASSERT_EQ(fp8.size(), 1u);
  EXPECT_EQ(fp8[0].name, "input_scale");
  EXPECT_EQ(fp8[0].dtype, DType::kBF16);
  EXPECT_EQ(fp8[0].shape, std::vector<int64_t>{1});
  uint16_t b;
  std::memcpy(&b, fp8[0].bytes.data(), 2);
  EXPECT_EQ(bf16_decode(b), bf16_decode(bf16_encode(3.5f / 448.0f)));
  // NVFP4 (local): input_global_scale f32 [1] = 448 * 6 / amax.
  const auto nv = activation_encode(quant_scheme_preset("NVFP4"), 12.0f);
  ASSERT_EQ(nv.size(), 1u);
  EXPECT_EQ(nv[0].name, "input_global_scale");
  EXPECT_EQ(nv[0].dtype, DType::kF32);
  float g;
  std::memcpy(&g, nv[0].bytes.data(), 4);
  EXPECT_EQ(g, 448.0f * 6.0f / 12.0f);
  // Dynamic or absent activations write nothing.
  for (const char* n : {"W4A16", "W8A8", "FP8_BLOCK", "FP8_DYNAMIC", "NVFP4A16", "MXFP4"}) {
    EXPECT_TRUE(activation_encode(quant_scheme_preset(n), 1.0f).empty()) << n;
    const QuantScheme s = quant_scheme_preset(n);
    EXPECT_FALSE(s.input_activations && activation_needs_calibration(*s.input_activations)) << n;
  }
  expect_error([] { activation_encode(quant_scheme_preset("FP8"), NAN); }, "input amax");
}

}  // namespace
}  // namespace dsv4::quant

// test_quant_args.cpp: every preset's fields, every validation error's message, printing, and
// the weight-shape check of quant/quant_args.h.
#include <gtest/gtest.h>

#include <string>

#include "common/check.h"
#include "quant/quant_args.h"

namespace dsv4::quant {
namespace {

// Runs f, expects dsv4::Error from component "quant" whose message contains `needle`.
template <typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "quant");
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void expect_int(const QuantArgs& a, int bits, bool sym, Strategy st, int group) {
  EXPECT_EQ(a.type, QuantType::kInt);
  EXPECT_EQ(a.num_bits, bits);
  EXPECT_EQ(a.symmetric, sym);
  EXPECT_EQ(a.strategy, st);
  EXPECT_EQ(a.group_size, group);
  EXPECT_EQ(a.scale_dtype, ScaleDType::kModel);
  EXPECT_EQ(a.observer, ObserverKind::kMinMax);
}

TEST(QuantArgs, IntPresets) {
  expect_int(quant_args_preset("W4A16"), 4, true, Strategy::kGroup, 128);
  expect_int(quant_args_preset("W4A16_ASYM"), 4, false, Strategy::kGroup, 128);
  expect_int(quant_args_preset("W8A16"), 8, true, Strategy::kGroup, 128);
  expect_int(quant_args_preset("W8A16_CHANNEL"), 8, true, Strategy::kChannel, 0);
  expect_int(quant_args_preset("W3A16"), 3, true, Strategy::kGroup, 128);
  expect_int(quant_args_preset("W8A8"), 8, true, Strategy::kChannel, 0);
  expect_int(quant_args_preset("INT4_G32"), 4, true, Strategy::kGroup, 32);
  expect_int(quant_args_preset("INT8_ASYM_CHANNEL"), 8, false, Strategy::kChannel, 0);
}

TEST(QuantArgs, FloatPresets) {
  const QuantArgs fp8 = quant_args_preset("FP8");
  EXPECT_EQ(fp8.type, QuantType::kFloat);
  EXPECT_EQ(fp8.num_bits, 8);
  EXPECT_EQ(fp8.strategy, Strategy::kTensor);
  EXPECT_TRUE(fp8.symmetric);
  for (const char* name : {"FP8_BLOCK", "FP8_BLOCK_E8M0"}) {
    const QuantArgs b = quant_args_preset(name);
    EXPECT_EQ(b.type, QuantType::kFloat);
    EXPECT_EQ(b.num_bits, 8);
    EXPECT_EQ(b.strategy, Strategy::kBlock);
    EXPECT_EQ(b.block_structure[0], 128);
    EXPECT_EQ(b.block_structure[1], 128);
  }
  EXPECT_EQ(quant_args_preset("FP8_BLOCK").scale_dtype, ScaleDType::kModel);
  EXPECT_EQ(quant_args_preset("FP8_BLOCK_E8M0").scale_dtype, ScaleDType::kE8m0);
  for (const char* name : {"NVFP4A16", "NVFP4"}) {
    const QuantArgs n = quant_args_preset(name);
    EXPECT_EQ(n.type, QuantType::kFloat);
    EXPECT_EQ(n.num_bits, 4);
    EXPECT_EQ(n.strategy, Strategy::kTensorGroup);
    EXPECT_EQ(n.group_size, 16);
    EXPECT_EQ(n.scale_dtype, ScaleDType::kE4m3);
    EXPECT_FALSE(n.is_mx());
  }
  const QuantArgs mx = quant_args_preset("MXFP4A16");
  EXPECT_EQ(mx.type, QuantType::kFloat);
  EXPECT_EQ(mx.num_bits, 4);
  EXPECT_EQ(mx.strategy, Strategy::kGroup);
  EXPECT_EQ(mx.group_size, 32);
  EXPECT_EQ(mx.scale_dtype, ScaleDType::kE8m0);
  EXPECT_TRUE(mx.is_mx());
}

TEST(QuantArgs, AllPresetsPassCheckAndPrint) {
  for (const std::string& name : quant_args_preset_names()) {
    const QuantArgs a = quant_args_preset(name);
    EXPECT_NO_THROW(a.check()) << name;
    EXPECT_FALSE(a.to_string().empty());
  }
  EXPECT_EQ(quant_args_preset("W4A16").to_string(),
            "int4 sym group group_size=128 scale=model(bf16) observer=minmax");
}

TEST(QuantArgs, UnknownPresetListsKnown) {
  expect_error([] { quant_args_preset("W5A5"); }, "unknown quantization preset 'W5A5'");
  expect_error([] { quant_args_preset("w4a16"); }, "W4A16, W4A16_ASYM");
  expect_error([] { quant_args_preset(""); }, "MXFP4A16");
}

TEST(QuantArgs, Ranges) {
  EXPECT_EQ(quant_args_preset("W4A16").qmin(), -8.0f);
  EXPECT_EQ(quant_args_preset("W4A16").qmax(), 7.0f);
  EXPECT_EQ(quant_args_preset("W8A8").qmin(), -128.0f);
  EXPECT_EQ(quant_args_preset("W8A8").qmax(), 127.0f);
  EXPECT_EQ(quant_args_preset("FP8").qmax(), 448.0f);
  EXPECT_EQ(quant_args_preset("NVFP4").qmin(), -6.0f);
}

TEST(QuantArgs, ValidationMessages) {
  QuantArgs a = quant_args_preset("W4A16");
  a.group_size = 0;
  expect_error([&] { a.check(); }, "group_size 0: strategy group needs group_size > 0");
  a = quant_args_preset("NVFP4");
  a.group_size = -1;
  expect_error([&] { a.check(); }, "group_size -1: strategy tensor_group needs group_size > 0");
  a = quant_args_preset("NVFP4");
  a.strategy = Strategy::kGroup;
  a.symmetric = false;
  expect_error([&] { a.check(); }, "asymmetric FP4 is not implemented");
  a = quant_args_preset("FP8_BLOCK");
  a.block_structure = {0, 0};
  expect_error([&] { a.check(); }, "block_structure [0, 0]: strategy block needs positive");
  a = quant_args_preset("W8A8");
  a.num_bits = 9;
  expect_error([&] { a.check(); }, "num_bits 9: expected 2 to 8 bits for int weights");
  a.num_bits = 1;
  expect_error([&] { a.check(); }, "num_bits 1: expected 2 to 8 bits for int weights");
  a = quant_args_preset("FP8");
  a.num_bits = 6;
  expect_error([&] { a.check(); }, "num_bits 6: expected 4 (fp4 e2m1) or 8 (fp8 e4m3) for float weights");
  a = quant_args_preset("W8A8");
  a.group_size = 64;
  expect_error([&] { a.check(); }, "group_size 64: only strategy group/tensor_group");
  a = quant_args_preset("W4A16");
  a.block_structure = {128, 128};
  expect_error([&] { a.check(); }, "only strategy block takes a block structure");
  a = quant_args_preset("NVFP4");
  a.scale_dtype = ScaleDType::kModel;
  expect_error([&] { a.check(); }, "scale_dtype model(bf16): strategy tensor_group needs e4m3");
  a = quant_args_preset("W4A16");
  a.strategy = Strategy::kTensorGroup;
  expect_error([&] { a.check(); }, "type int: strategy tensor_group (NVFP4) needs type float");
  a = quant_args_preset("W4A16");
  a.scale_dtype = ScaleDType::kE8m0;
  expect_error([&] { a.check(); }, "scale_dtype e8m0: power-of-two scales");
  a = quant_args_preset("W4A16");
  a.observer = ObserverKind::kMse;
  a.mse.grid = 0;
  expect_error([&] { a.check(); }, "observer_kwargs.grid 0: expected >= 1");
  a.mse = MseOptions{};
  a.mse.maxshrink = 1.5f;
  expect_error([&] { a.check(); }, "observer_kwargs.maxshrink 1.5");
  a.mse = MseOptions{};
  a.mse.norm = 0.0f;
  expect_error([&] { a.check(); }, "observer_kwargs.norm 0");
}

TEST(QuantArgs, MseDefaults) {
  const MseOptions o;
  EXPECT_FLOAT_EQ(o.maxshrink, 0.20f);
  EXPECT_EQ(o.grid, 100);
  EXPECT_FLOAT_EQ(o.norm, 2.4f);
  EXPECT_EQ(o.patience, 5);
  EXPECT_FLOAT_EQ(o.expand, 1.0f);
}

TEST(QuantArgs, ShapeCheck) {
  const QuantArgs a = quant_args_preset("W4A16");
  EXPECT_NO_THROW(quant_args_check_shape(a, 7, 256));
  expect_error([&] { quant_args_check_shape(a, 4096, 7000); },
               "weight shape [4096, 7000]: group_size 128 does not divide the 7000 columns");
  expect_error([&] { quant_args_check_shape(a, 0, 128); }, "weight shape [0, 128]");
  // Ragged blocks are padded, not rejected.
  EXPECT_NO_THROW(quant_args_check_shape(quant_args_preset("FP8_BLOCK"), 300, 200));
  EXPECT_NO_THROW(quant_args_check_shape(quant_args_preset("W8A8"), 3, 5));
}

}  // namespace
}  // namespace dsv4::quant

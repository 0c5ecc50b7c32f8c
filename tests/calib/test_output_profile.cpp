// test_output_profile.cpp: output profiles as a type (output_profile.h): the recipe key and the
// --profile override, the errors for an unknown profile and for a scheme a profile cannot store
// (naming the key, the module and the profiles that can), and the appmana-dsv4-int layout's bytes
// (profile_appmana.h) on worked examples: uint4b8 nibble order, U8 + 128, BF16 scales; its
// output.wo_a (the main layers' attn.wo_a INT8 in the recipe's mode, or BF16; MTP's BF16).
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "calib/module_plan.h"
#include "calib/output_profile.h"
#include "calib/profile_appmana.h"
#include "calib/profile_layout.h"
#include "calib/recipe.h"
#include "common/check.h"
#include "common/codec.h"
#include "tests/user_error.h"

namespace dsv4::calib {
namespace {

// The main layers' wo_a in group_1 (output.wo_a int8, the default), unless wo_a_int8 is false.
std::string appmana_recipe(const std::string& expert_weights, const std::string& extra_output = "",
                           bool wo_a_int8 = true, const std::string& dense = "strategy: channel") {
  return R"(
model: {path: /m}
output: {dir: /o, profile: appmana-dsv4-int, mtp_aliases: true)" + extra_output + R"(}
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      config_groups:
        group_0:
          targets: ["re:^(layers|mtp)\\.\\d+\\.ffn\\.experts\\.\\d+\\.w[123]$"]
          weights: )" + expert_weights + R"(
        group_1:
          targets: ["re:^(layers|mtp)\\.\\d+\\.attn\\.(wq_a|wq_b|wkv|wo_b|indexer\\.wq_b)$",
                    "re:^(layers|mtp)\\.\\d+\\.ffn\\.shared_experts\\.w[123]$", "re:^mtp\\.\\d+\\.[eh]_proj$")" +
         std::string(wo_a_int8 ? R"(, "re:^layers\\.\\d+\\.attn\\.wo_a$")" : "") + R"(]
          weights: {num_bits: 8, type: int, symmetric: true, )" + dense + R"(}
)";
}
const char* kInt4 = "{num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 32}";

TEST(OutputProfile, NamesParseAndUnknownOnesAreUserErrors) {
  for (OutputProfile p : kOutputProfiles) EXPECT_EQ(output_profile_from_name(output_profile_name(p)), p);
  EXPECT_EQ(output_profile_parse("appmana-dsv4-int", "--profile"), OutputProfile::kAppmanaDsv4Int);
  expect_user_error([] { output_profile_parse("appmana", "--profile"); },
                    {"--profile", "'appmana'", "vllm, appmana-dsv4-int"});
  expect_user_error([] { recipe_parse(appmana_recipe(kInt4).replace(appmana_recipe(kInt4).find("appmana-dsv4-int"), 16, "tq9"), "r.yaml"); },
                    {"r.yaml", "output.profile", "tq9", "appmana-dsv4-int"});
}

TEST(OutputProfile, RecipeKeyOverrideAndScaleMode) {
  Recipe r = recipe_parse(appmana_recipe(kInt4, ", int4_scale_mode: absmax8"), "r.yaml");
  EXPECT_EQ(r.output.profile, OutputProfile::kAppmanaDsv4Int);
  EXPECT_EQ(r.output.int4_scale_mode, Int4ScaleMode::kAbsmax8);
  const Recipe back = recipe_parse(recipe_to_yaml(r), "back.yaml");
  EXPECT_EQ(back.output.profile, OutputProfile::kAppmanaDsv4Int);
  EXPECT_EQ(back.output.int4_scale_mode, Int4ScaleMode::kAbsmax8);
  recipe_apply_overrides(r, {.profile = OutputProfile::kVllm});
  EXPECT_EQ(r.output.profile, OutputProfile::kVllm);
  // The scale mode is the appmana profile's; under vllm it would be silently ignored.
  std::string vllm = appmana_recipe(kInt4, ", int4_scale_mode: mse");
  vllm.replace(vllm.find("appmana-dsv4-int"), 16, "vllm");
  expect_user_error([&] { recipe_parse(vllm, "r.yaml"); }, {"output.int4_scale_mode", "appmana-dsv4-int"});
}

TEST(OutputProfile, ASchemeTheProfileCannotStoreNamesTheKeyAndTheProfilesThatCan) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  EXPECT_NO_THROW(module_plan_build(recipe_parse(appmana_recipe(kInt4), "r.yaml"), c, 1));
  expect_user_error(
      [&] { module_plan_build(recipe_parse(appmana_recipe("{num_bits: 4, type: float, strategy: tensor_group, group_size: 16}"), "r.yaml"), c, 1); },
      {"r.yaml", "output.profile appmana-dsv4-int cannot store layers.0.ffn.experts.0.w1",
       "quant_stage.quant_modifiers.QuantizationModifier.config_groups.group_0", "profiles that can store it: vllm"});
  // INT4 group 128 is compressed-tensors' W4A16, not the fork's group 32.
  expect_user_error(
      [&] { module_plan_build(recipe_parse(appmana_recipe("{num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 128}"), "r.yaml"), c, 1); },
      {"INT4 symmetric group 32", "profiles that can store it: vllm"});
  // Leaving the experts out: the fork would load BF16 where it expects INT4.
  std::string no_experts = appmana_recipe(kInt4);
  no_experts.replace(no_experts.find("re:^(layers|mtp)\\\\.\\\\d+\\\\.ffn\\\\.experts"), 4, "re:^nothing");
  expect_user_error([&] { module_plan_build(recipe_parse(no_experts, "r.yaml"), c, 1); },
                    {"cannot store layers.0.ffn.experts.0.w1 as kept unquantized", "profiles that can store it: vllm"});
  std::string no_aliases = appmana_recipe(kInt4);
  no_aliases.replace(no_aliases.find("mtp_aliases: true"), 17, "mtp_aliases: false");
  expect_user_error([&] { module_plan_build(recipe_parse(no_aliases, "r.yaml"), c, 1); },
                    {"output.mtp_aliases", kAppmanaMtpSharedShard});
}

TEST(ProfileAppmana, EncodesUint4b8LowNibbleEvenAndU8PlusBias) {
  PlannedModule m;
  m.names.release = "layers.0.ffn.experts.0.w1";
  m.role = model::LinearRole::kExpertW1;
  m.source = model::TensorEncoding::kMxfp4;
  m.rows = 1;
  m.cols = 32;
  m.scheme = ModuleScheme{};
  m.scheme->scheme.weights.num_bits = 4;
  m.scheme->scheme.weights.strategy = quant::Strategy::kGroup;
  m.scheme->scheme.weights.group_size = 32;
  m.scheme->profile = OutputProfile::kAppmanaDsv4Int;
  std::vector<int32_t> codes(32, 0);
  codes[0] = -8, codes[1] = 7, codes[2] = 1, codes[3] = -1;
  quant::QParams qp;
  qp.scale = {0.5f};
  const auto t = profile_module_encode(m, qp, codes, {});
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "weight");
  EXPECT_EQ(t[0].dtype, DType::kI8);
  EXPECT_EQ(t[0].shape, (std::vector<int64_t>{1, 16}));
  EXPECT_EQ(static_cast<uint8_t>(t[0].bytes[0]), 0xF0);  // even -8 -> 0 low, odd 7 -> 15 high
  EXPECT_EQ(static_cast<uint8_t>(t[0].bytes[1]), 0x79);  // even 1 -> 9 low, odd -1 -> 7 high
  EXPECT_EQ(static_cast<uint8_t>(t[0].bytes[2]), 0x88);  // zeros -> 8, 8
  EXPECT_EQ(t[1].name, "scale");
  EXPECT_EQ(t[1].dtype, DType::kBF16);
  EXPECT_EQ(t[1].shape, (std::vector<int64_t>{1, 1}));
  const std::vector<float> w = appmana_linear_decode({t[0].dtype, t[0].shape, t[0].bytes}, {t[1].dtype, t[1].shape, t[1].bytes},
                                                     1, 32, m.names.release);
  EXPECT_EQ(w[0], -4.0f);
  EXPECT_EQ(w[1], 3.5f);
  EXPECT_EQ(w[3], -0.5f);

  // A dense INT8 channel module: U8 = code + 128, a BF16 scale per row.
  m.names.release = "layers.0.attn.wq_a";
  m.role = model::LinearRole::kAttnWqA;
  m.source = model::TensorEncoding::kFp8Block;
  m.rows = 2;
  m.cols = 2;
  m.scheme->scheme.weights.num_bits = 8;
  m.scheme->scheme.weights.strategy = quant::Strategy::kChannel;
  m.scheme->scheme.weights.group_size = 0;
  qp.scale = {1.0f, 0.25f};
  const auto d = profile_module_encode(m, qp, {-128, 127, 0, -1}, {});
  EXPECT_EQ(d[0].dtype, DType::kU8);
  EXPECT_EQ(static_cast<uint8_t>(d[0].bytes[0]), 0);
  EXPECT_EQ(static_cast<uint8_t>(d[0].bytes[1]), 255);
  EXPECT_EQ(static_cast<uint8_t>(d[0].bytes[3]), 127);
  EXPECT_EQ(d[1].shape, (std::vector<int64_t>{2}));
  const std::vector<float> v = appmana_linear_decode({d[0].dtype, d[0].shape, d[0].bytes}, {d[1].dtype, d[1].shape, d[1].bytes},
                                                     2, 2, m.names.release);
  EXPECT_EQ(v, (std::vector<float>{-128.0f, 127.0f, 0.0f, -0.25f}));
  // A scale that is not a BF16 value cannot be stored as one.
  qp.scale = {1.001f, 0.25f};
  EXPECT_THROW(profile_module_encode(m, qp, {0, 0, 0, 0}, {}), Error);
}

const PlannedModule& planned(const ModulePlan& p, const std::string& name) {
  for (const PlannedModule& m : p.modules) {
    if (m.names.release == name) return m;
  }
  throw std::runtime_error("no module " + name);
}

TEST(ProfileAppmana, WoAInt8IsTheLayoutTheForkLoadsAndMtpWoAStaysBf16) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  const Recipe r = recipe_parse(appmana_recipe(kInt4), "r.yaml");
  EXPECT_EQ(r.output.wo_a, AppmanaWoA::kInt8);  // the default
  const ModulePlan p = module_plan_build(r, c, 1);
  const PlannedModule& wo_a = planned(p, "layers.0.attn.wo_a");
  ASSERT_TRUE(wo_a.quantized());
  // The fork's Dsv4Int8LinearMethod in channel mode: U8 [out, in] and weight_scale_inv [out].
  const auto t = profile_module_layout(wo_a, false);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "weight");
  EXPECT_EQ(t[0].dtype, DType::kU8);
  EXPECT_EQ(t[0].shape, (std::vector<int64_t>{wo_a.rows, wo_a.cols}));
  EXPECT_EQ(t[1].name, "scale");
  EXPECT_EQ(t[1].dtype, DType::kBF16);
  EXPECT_EQ(t[1].shape, (std::vector<int64_t>{wo_a.rows}));
  EXPECT_FALSE(planned(p, "mtp.0.attn.wo_a").quantized());
  // Block mode: I8 and [ceil(out/128), ceil(in/128)] like every other INT8 linear.
  const ModulePlan b = module_plan_build(
      recipe_parse(appmana_recipe(kInt4, "", true, "strategy: block, block_structure: [128, 128]"), "r.yaml"), c, 1);
  const auto tb = profile_module_layout(planned(b, "layers.0.attn.wo_a"), false);
  EXPECT_EQ(tb[0].dtype, DType::kI8);
  EXPECT_EQ(tb[1].shape, (std::vector<int64_t>{(wo_a.rows + 127) / 128, (wo_a.cols + 127) / 128}));
  // Its resolved recipe keeps the choice.
  EXPECT_EQ(recipe_parse(recipe_to_yaml(r), "back.yaml").output.wo_a, AppmanaWoA::kInt8);
}

TEST(ProfileAppmana, WoABf16IsTheSeedConvertersAndEachChoiceRefusesTheOtherLayout) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  const Recipe seed = recipe_parse(appmana_recipe(kInt4, ", wo_a: bf16", false), "r.yaml");
  EXPECT_EQ(seed.output.wo_a, AppmanaWoA::kBf16);
  EXPECT_EQ(recipe_parse(recipe_to_yaml(seed), "back.yaml").output.wo_a, AppmanaWoA::kBf16);
  EXPECT_FALSE(planned(module_plan_build(seed, c, 1), "layers.0.attn.wo_a").quantized());
  // int8 (the default) with wo_a left out: the fork could not load it.
  expect_user_error([&] { module_plan_build(recipe_parse(appmana_recipe(kInt4, "", false), "r.yaml"), c, 1); },
                    {"r.yaml", "cannot store layers.0.attn.wo_a as kept unquantized", "output.wo_a is int8",
                     "output.wo_a: bf16"});
  // bf16 with wo_a quantized.
  expect_user_error([&] { module_plan_build(recipe_parse(appmana_recipe(kInt4, ", wo_a: bf16"), "r.yaml"), c, 1); },
                    {"cannot store layers.0.attn.wo_a", "output.wo_a is bf16", "profiles that can store it: vllm"});
  // The MTP stages' wo_a stays BF16 whatever output.wo_a says.
  std::string mtp = appmana_recipe(kInt4);
  mtp.replace(mtp.find("re:^layers"), 10, "re:^(layers|mtp)");  // only wo_a's target starts so
  expect_user_error([&] { module_plan_build(recipe_parse(mtp, "r.yaml"), c, 1); },
                    {"cannot store mtp.0.attn.wo_a", "MTP stages' attn.wo_a in BF16"});
  // A value that is not a layout, and the key under another profile.
  expect_user_error([] { recipe_parse(appmana_recipe(kInt4, ", wo_a: fp8"), "r.yaml"); },
                    {"r.yaml", "output.wo_a", "'fp8'", "int8", "bf16"});
  std::string vllm = appmana_recipe(kInt4, ", wo_a: int8");
  vllm.replace(vllm.find("appmana-dsv4-int"), 16, "vllm");
  expect_user_error([&] { recipe_parse(vllm, "r.yaml"); }, {"output.wo_a", "appmana-dsv4-int profile only"});
}

}  // namespace
}  // namespace dsv4::calib

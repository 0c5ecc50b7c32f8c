// test_profile_turboquant.cpp: the turboquant output profile (calib/profile_turboquant.h) on the
// tiny model's plan: tq_config.json as upstream's converter writes it (one width; a second,
// `sensitive_bits`, only on the modules output.sensitive_patterns name; orig_in_dims for a width
// padded to whole groups), the recipe errors (a scheme it cannot store, two group sizes, a width
// the loader would resolve otherwise, sensitive_patterns under another profile), and a module's
// tensors: layout, encode and the decode that reads them back (a wrong shape names the module).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "calib/module_plan.h"
#include "calib/profile_layout.h"
#include "calib/profile_turboquant.h"
#include "calib/recipe.h"
#include "common/check.h"
#include "quant/turboquant.h"
#include "tests/user_error.h"

namespace dsv4::calib {
namespace {

// Experts with `experts` weights; with `wo_b` non-empty, attn.wo_b as a second group.
std::string tq_recipe(const std::string& experts, const std::string& wo_b = "", const std::string& output = "") {
  std::string r = R"(
model: {path: /models/tiny}
output: {dir: /o, profile: turboquant)" + output + R"(}
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      config_groups:
        group_0:
          targets: ["re:^layers\\.\\d+\\.ffn\\.experts\\.\\d+\\.w[123]$"]
          weights: )" + experts + "\n";
  if (!wo_b.empty()) {
    r += R"(        group_1:
          targets: ["re:^layers\\.\\d+\\.attn\\.wo_b$"]
          weights: )" + wo_b + "\n";
  }
  return r;
}
std::string int_group(int bits, int group) {
  return "{num_bits: " + std::to_string(bits) + ", type: int, symmetric: true, strategy: group, group_size: " +
         std::to_string(group) + "}";
}

ModulePlan plan_of(const std::string& yaml) {
  return module_plan_build(recipe_parse(yaml, "r.yaml"), model::ModelConfig::tiny(), 1);
}

TEST(ProfileTurboquant, TqConfigIsUpstreamsWithOneWidth) {
  const Recipe r = recipe_parse(tq_recipe(int_group(3, 128)), "r.yaml");
  const ModulePlan plan = module_plan_build(r, model::ModelConfig::tiny(), 1);
  const nlohmann::ordered_json j = turboquant_tq_config(r, plan);
  int64_t quantized = 0;
  for (const PlannedModule& m : plan.modules) quantized += m.quantized();
  EXPECT_EQ(quantized, 4 * 8 * 3);  // tiny: 4 layers × 8 experts × w1/w2/w3
  EXPECT_EQ(j.dump(), R"({"format":"tq3_native","bits":3,"group_size":128,"quantizer_seed":42,)"
                      R"("compressed_layers":96,"original_model":"tiny"})");
  EXPECT_TRUE(turboquant_config_resolve_check(j, plan).empty());
}

TEST(ProfileTurboquant, ASecondWidthOnlyWhereTheSensitivePatternsSayAndPaddedWidthsNamed) {
  const std::string patterns = ", sensitive_patterns: [wo_b]";
  const Recipe r = recipe_parse(tq_recipe(int_group(3, 256), int_group(4, 256), patterns), "r.yaml");
  const ModulePlan plan = module_plan_build(r, model::ModelConfig::tiny(), 1);
  const nlohmann::ordered_json j = turboquant_tq_config(r, plan);
  EXPECT_EQ(j["bits"], 3);
  EXPECT_EQ(j["sensitive_bits"], 4);
  EXPECT_EQ(j["sensitive_patterns"], nlohmann::ordered_json::array({"wo_b"}));
  // Expert w2 takes 128 inputs on the tiny model: padded to one group of 256, its true width named.
  EXPECT_EQ(j["orig_in_dims"]["layers.0.ffn.experts.0.w2.weight"], 128);
  EXPECT_FALSE(j["orig_in_dims"].contains("layers.0.ffn.experts.0.w1.weight"));  // 256 inputs
  EXPECT_TRUE(turboquant_config_resolve_check(j, plan).empty());
  // Without a pattern naming wo_b, the loader would read it as 3 bits: refused before any work.
  expect_user_error([&] { plan_of(tq_recipe(int_group(3, 256), int_group(4, 256))); },
                    {"r.yaml", "output.sensitive_patterns", "layers.0.attn.wo_b: planned 4 bits", "give it 3"});
}

TEST(ProfileTurboquant, RecipeErrorsNameTheKey) {
  expect_user_error([] { plan_of(tq_recipe(int_group(3, 128), int_group(3, 64))); },
                    {"r.yaml", "one group_size", "group_0", "group_1"});
  expect_user_error([] { plan_of(tq_recipe("{num_bits: 4, type: float, strategy: tensor_group, group_size: 16}")); },
                    {"r.yaml", "output.profile turboquant cannot store layers.0.ffn.experts.0.w1",
                     "profiles that can store it: vllm"});
  expect_user_error([] { plan_of(tq_recipe(int_group(3, 96))); }, {"power-of-two group size"});
  std::string vllm = tq_recipe(int_group(4, 128), "", ", sensitive_patterns: [w2]");
  vllm.replace(vllm.find("turboquant"), 10, "vllm");
  expect_user_error([&] { recipe_parse(vllm, "r.yaml"); }, {"output.sensitive_patterns", "turboquant profile only"});
}

TEST(ProfileTurboquant, EncodesTheLayoutAndDecodesItBack) {
  const ModulePlan plan = plan_of(tq_recipe(int_group(3, 128)));
  const PlannedModule* m = nullptr;
  for (const PlannedModule& p : plan.modules) {
    if (p.names.release == "layers.0.ffn.experts.0.w1") m = &p;
  }
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->cols, 256);
  std::vector<float> w(static_cast<size_t>(m->rows * m->cols));
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * static_cast<float>(static_cast<int>(i * 7919 % 201) - 100);
  const quant::TqResult r = quant::tq_quantize(quant::TqCodec(3, 128), w.data(), m->rows, m->cols);
  quant::QParams qp;
  qp.scale = r.norms;
  const std::vector<quant::EncodedTensor> t = profile_module_encode(*m, qp, r.indices, {});
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "weight.tq_packed");
  EXPECT_EQ(t[0].shape, (std::vector<int64_t>{m->rows * 2, 48}));
  EXPECT_EQ(t[1].name, "weight.tq_norms");
  EXPECT_EQ(t[1].shape, (std::vector<int64_t>{m->rows, 2}));
  EXPECT_EQ(turboquant_module_bytes(*m), static_cast<uint64_t>(m->rows * 2 * 48 + m->rows * 2 * 4));
  const StoredTensor packed{t[0].dtype, t[0].shape, t[0].bytes}, norms{t[1].dtype, t[1].shape, t[1].bytes};
  EXPECT_EQ(turboquant_linear_decode(packed, norms, m->rows, m->cols, m->names.release), r.dequant);
  // Norms of another row count: no turboquant layout of [rows, 256]; the error names the module.
  const StoredTensor short_norms{norms.dtype, {m->rows - 1, 2}, {}};
  expect_user_error([&] { turboquant_linear_decode(packed, short_norms, m->rows, m->cols, "layers.0.ffn.experts.0.w1"); },
                    {"layers.0.ffn.experts.0.w1", "not a turboquant module", ".tq_norms"});
}

}  // namespace
}  // namespace dsv4::calib

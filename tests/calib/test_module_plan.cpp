// test_module_plan.cpp: target matching on release / transformers / vLLM names, ignore wins,
// first group wins, overlap and group-size errors, warnings, and every shipped recipe on the tiny
// and the full flash shape.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "calib/module_plan.h"
#include "common/check.h"

namespace dsv4::calib {
namespace {

Recipe parse(const std::string& body) { return recipe_parse("q_stage:\n  q_modifiers:\n" + body, "r.yaml"); }

std::map<std::string, const PlannedModule*> by_name(const ModulePlan& p) {
  std::map<std::string, const PlannedModule*> m;
  for (const PlannedModule& x : p.modules) m[x.names.release] = &x;
  return m;
}

TEST(TargetMatcher, RegexAnchoredAtStartNamesAndClasses) {
  ModuleNames n{"layers.3.ffn.experts.7.w1", "model.layers.3.mlp.experts.7.gate_proj", "model.layers.3.ffn.experts", {"Linear"}};
  EXPECT_EQ(TargetMatcher({"re:experts"}, "t").match(n), -1);  // re.match: anchored at the start
  EXPECT_EQ(TargetMatcher({"re:.*experts\\.7\\.w1$"}, "t").match(n), 0);
  EXPECT_EQ(TargetMatcher({"re:.*mlp\\.experts\\.\\d+\\.gate_proj$"}, "t").match(n), 0);  // HF alias
  EXPECT_EQ(TargetMatcher({"re:model\\.layers\\.3\\.ffn\\.experts$"}, "t").match(n), 0);   // vLLM alias
  EXPECT_EQ(TargetMatcher({"head", "Linear"}, "t").match(n), 1);                          // class
  EXPECT_EQ(TargetMatcher({"layers.3.ffn.experts.7.w1"}, "t").match(n), 0);               // exact name
  EXPECT_EQ(TargetMatcher({"layers.3.ffn.experts.7"}, "t").match(n), -1);                 // no prefix match
  try {
    TargetMatcher({"Linear", "re:(unclosed"}, "r.yaml: x.targets");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("r.yaml: x.targets[1]"), std::string::npos) << e.what();
  }
}

TEST(ModulePlan, HfNamedRecipeSelectsReleaseExpertsNotMtp) {
  const Recipe r = parse(R"(
    GPTQModifier:
      config_groups:
        group_0:
          targets: ["re:.*mlp\\.experts\\.\\d+\\.(gate_proj|up_proj|down_proj)$"]
          weights: {num_bits: 4, type: int, group_size: 128}
)");
  const model::ModelConfig c = model::ModelConfig::tiny();
  const ModulePlan p = module_plan_build(r, c, 1);
  int64_t quantized = 0;
  for (const PlannedModule& m : p.modules) {
    const bool routed_main = m.expert >= 0 && m.layer < c.num_layers;
    EXPECT_EQ(m.quantized(), routed_main) << m.names.release;
    quantized += m.quantized();
  }
  EXPECT_EQ(quantized, int64_t{c.num_layers} * c.n_routed_experts * 3);
  EXPECT_TRUE(p.warnings.empty());
  EXPECT_GT(p.hessian_bytes_peak_layer, 0);
}

TEST(ModulePlan, IgnoreWinsFirstGroupWinsVllmFusedNames) {
  const Recipe r = parse(R"(
    QuantizationModifier:
      ignore: ["re:^mtp\\.", "layers.0.attn.wkv"]
      config_groups:
        a:
          targets: ["re:.*fused_wqa_wkv$"]
          weights: {num_bits: 8, type: float, strategy: block, block_structure: [128, 128]}
        b:
          targets: [Linear]
          weights: {num_bits: 8, type: int, strategy: channel}
)");
  const ModulePlan p = module_plan_build(r, model::ModelConfig::tiny(), 1);
  auto m = by_name(p);
  EXPECT_EQ(m.at("layers.1.attn.wq_a")->group, 0);  // vLLM's fused name selects both shards
  EXPECT_EQ(m.at("layers.1.attn.wkv")->group, 0);
  EXPECT_FALSE(m.at("layers.0.attn.wkv")->quantized());
  EXPECT_NE(m.at("layers.0.attn.wkv")->kept_reason.find("ignored"), std::string::npos);
  EXPECT_EQ(m.at("layers.0.attn.wq_a")->group, 0);
  EXPECT_EQ(m.at("layers.2.ffn.experts.3.w2")->group, 1);
  EXPECT_EQ(m.at("head")->group, 1);
  EXPECT_FALSE(m.at("mtp.0.e_proj")->quantized());
  EXPECT_EQ(m.count("layers.0.ffn.gate"), 0u);  // the router is not a Linear
  EXPECT_EQ(m.count("embed"), 0u);
}

TEST(ModulePlan, ErrorsAndWarnings) {
  try {
    module_plan_build(parse(R"(
    GPTQModifier: {scheme: W4A16, targets: ["re:.*experts.*"]}
    QuantizationModifier: {scheme: FP8_BLOCK, targets: ["re:.*w2$"]}
)"), model::ModelConfig::tiny(), 1);
    ADD_FAILURE() << "overlap not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is targeted by both"), std::string::npos) << e.what();
  }
  try {
    module_plan_build(parse("    GPTQModifier:\n      config_groups: {g: {targets: [head], weights: {num_bits: 4, group_size: 96}}}\n"),
                      model::ModelConfig::tiny(), 1);
    ADD_FAILURE() << "group size not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("group_size 96 does not divide the 256 input features of head"), std::string::npos)
        << e.what();
  }
  const ModulePlan p = module_plan_build(parse(R"(
    QuantizationModifier: {scheme: W4A16, targets: ["re:.*nothing_like_this.*", "re:.*experts.*"], ignore: [lm_head]}
)"), model::ModelConfig::tiny(), 1);
  ASSERT_EQ(p.warnings.size(), 2u);
  EXPECT_NE(p.warnings[0].find("'re:.*nothing_like_this.*' matches no module"), std::string::npos);
  EXPECT_NE(p.warnings[1].find("ignore 'lm_head' matches no targeted module"), std::string::npos);
  // transformers' lm_head is the release head: ignoring it keeps head when Linear targets it.
  const ModulePlan q = module_plan_build(parse("    QuantizationModifier: {scheme: W4A16, ignore: [lm_head]}\n"),
                                         model::ModelConfig::tiny(), 1);
  EXPECT_FALSE(by_name(q).at("head")->quantized());
  EXPECT_TRUE(q.warnings.empty());
}

TEST(ModulePlan, ShippedRecipesPlanOnTinyAndFlash) {
  const std::filesystem::path dir = std::filesystem::path(DSV4_SOURCE_DIR) / "recipes";
  int count = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    ++count;
    const Recipe r = recipe_load(e.path().string());
    for (const model::ModelConfig& c : {model::ModelConfig::tiny(), model::ModelConfig::flash()}) {
      const ModulePlan p = module_plan_build(r, c, 1);
      EXPECT_TRUE(p.warnings.empty()) << e.path() << ": " << p.warnings.front();
      int64_t routed = 0, mtp_quantized = 0, mtp_converted = 0, attn = 0;
      for (const PlannedModule& m : p.modules) {
        if (m.expert >= 0 && m.layer < c.num_layers) routed += m.quantized();
        if (m.layer >= c.num_layers) mtp_quantized += m.quantized();
        if (m.layer >= c.num_layers) {
          mtp_converted += m.source != model::TensorEncoding::kPlain && m.role != model::LinearRole::kAttnWoA;
        }
        if (m.names.release.find(".attn.wq_a") != std::string::npos && m.layer < c.num_layers) attn += m.quantized();
      }
      EXPECT_EQ(routed, int64_t{c.num_layers} * c.n_routed_experts * 3) << e.path();  // every routed expert
      // MTP kept in BF16; appmana-dsv4-int converts it as the seed does (every MXFP4/FP8 Linear but wo_a).
      const bool appmana = r.output.profile == OutputProfile::kAppmanaDsv4Int;
      EXPECT_EQ(mtp_quantized, appmana ? mtp_converted : 0) << e.path();
      if (appmana) {
        EXPECT_GT(mtp_converted, 0);
      }
      EXPECT_EQ(attn, c.num_layers) << e.path();
    }
    // The resolved form plans identically.
    const Recipe back = recipe_parse(recipe_to_yaml(r), "resolved");
    EXPECT_EQ(module_plan_json(back, module_plan_build(back, model::ModelConfig::tiny(), 1)).dump(),
              module_plan_json(r, module_plan_build(r, model::ModelConfig::tiny(), 1)).dump())
        << e.path();
  }
  EXPECT_EQ(count, 9);  // recipes/: 5 compressed-tensors, 2 appmana-dsv4-int, 2 turboquant
}

}  // namespace
}  // namespace dsv4::calib

// test_ct_rules.cpp: compressed-tensors' quantization_config rules (calib/ct_rules.h): every
// rule has a config that breaks it and is named in the violation; what the writer emits for every
// preset passes.
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>

#include "calib/ct_rules.h"
#include "calib/scheme_json.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {
namespace {

using nlohmann::json;

// The shape of a config.json our writer produces: W4A16 GPTQ experts and FP8 block attention.
json good_config() {
  return json::parse(R"({
    "config_groups": {
      "group_0": {"targets": ["re:^(?:model\\.)?layers\\.\\d+\\.ffn\\.experts\\.\\d+\\.w1$"],
                  "weights": {"num_bits": 4, "type": "int", "symmetric": true, "group_size": 128, "strategy": "group",
                              "block_structure": null, "dynamic": false, "actorder": "weight", "scale_dtype": null,
                              "zp_dtype": null, "observer": "memoryless_minmax", "observer_kwargs": {}},
                  "input_activations": null, "output_activations": null, "format": "pack-quantized"},
      "group_1": {"targets": ["re:^(?:model\\.)?layers\\.\\d+\\.attn\\.wq_b$"],
                  "weights": {"num_bits": 8, "type": "float", "symmetric": true, "group_size": null, "strategy": "block",
                              "block_structure": [128, 128], "dynamic": false, "actorder": null,
                              "scale_dtype": "torch.float32", "zp_dtype": null, "observer": "memoryless_minmax",
                              "observer_kwargs": {}},
                  "input_activations": {"num_bits": 8, "type": "float", "symmetric": true, "group_size": 128,
                                        "strategy": "group", "block_structure": null, "dynamic": true,
                                        "actorder": null, "scale_dtype": null, "zp_dtype": null, "observer": null,
                                        "observer_kwargs": {}},
                  "output_activations": null, "format": "float-quantized"}},
    "quant_method": "compressed-tensors", "format": "mixed-precision", "quantization_status": "compressed",
    "global_compression_ratio": null, "ignore": ["lm_head"], "kv_cache_scheme": null, "scale_fmt": "ue8m0"})");
}

std::set<std::string> rules_broken(const json& q) {
  std::set<std::string> out;
  for (const CtViolation& v : ct_quantization_config_violations(q)) out.insert(v.rule);
  return out;
}

TEST(CtRules, TheWritersShapePasses) {
  const auto v = ct_quantization_config_violations(good_config());
  for (const CtViolation& x : v) ADD_FAILURE() << x.rule << " at " << x.where << ": " << x.message;
}

// One edit per rule; each must break that rule (and the table must know the rule's id).
TEST(CtRules, EveryRuleHasAViolatingConfig) {
  struct Case {
    const char* rule;
    std::function<void(json&)> edit;
  };
  auto w0 = [](json& q) -> json& { return q["config_groups"]["group_0"]["weights"]; };
  auto w1 = [](json& q) -> json& { return q["config_groups"]["group_1"]["weights"]; };
  auto in1 = [](json& q) -> json& { return q["config_groups"]["group_1"]["input_activations"]; };
  const std::vector<Case> cases = {
      {"config.object", [](json& q) { q.erase("config_groups"); }},
      {"config.config_groups", [](json& q) { q["config_groups"]["group_2"] = 7; }},
      {"config.quantization_status", [](json& q) { q["quantization_status"] = "quantized"; }},
      {"config.field_types", [](json& q) { q["ignore"] = "lm_head"; }},
      {"scheme.extra_keys", [](json& q) { q["config_groups"]["group_0"]["actorder"] = "weight"; }},
      {"scheme.targets", [](json& q) { q["config_groups"]["group_0"]["targets"] = "Linear"; }},
      {"scheme.format", [](json& q) { q["config_groups"]["group_0"]["format"] = "mixed-precision"; }},
      {"scheme.input_strategy", [&](json& q) { in1(q)["strategy"] = "channel"; in1(q)["group_size"] = nullptr; in1(q)["dynamic"] = false; }},
      {"scheme.activation_actorder", [&](json& q) { in1(q)["actorder"] = "weight"; }},
      {"args.extra_keys", [&](json& q) { w0(q)["qparams"] = "lazy"; }},
      {"args.field_types", [&](json& q) { w0(q)["num_bits"] = "4"; }},
      {"args.group_size", [&](json& q) { w0(q)["group_size"] = -2; }},
      {"args.strategy", [&](json& q) { w0(q)["strategy"] = "row"; }},
      {"args.block_structure", [&](json& q) { w1(q)["block_structure"] = json::array({128, 0}); }},
      {"args.dynamic", [&](json& q) { w0(q)["dynamic"] = "sometimes"; }},
      {"args.actorder", [&](json& q) { w0(q)["actorder"] = "group"; }},
      {"args.dtype", [&](json& q) { w1(q)["scale_dtype"] = "e8m0"; }},
      {"args.strategy_inferred", [&](json& q) { w0(q)["strategy"] = nullptr; w0(q)["group_size"] = 0; }},
      {"args.token_dynamic", [&](json& q) { in1(q)["strategy"] = "token"; in1(q)["group_size"] = nullptr; in1(q)["dynamic"] = false; }},
      {"args.group_needs_size", [&](json& q) { w0(q)["group_size"] = nullptr; }},
      {"args.size_needs_group", [&](json& q) { w0(q)["strategy"] = "channel"; }},
      {"args.block", [&](json& q) { w1(q)["block_structure"] = nullptr; }},
      {"args.dynamic_strategy", [&](json& q) { w1(q)["dynamic"] = true; }},
      {"args.local", [&](json& q) { in1(q)["dynamic"] = "local"; }},
  };
  std::set<std::string> covered;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.rule);
    json q = good_config();
    c.edit(q);
    const std::set<std::string> broken = rules_broken(q);
    EXPECT_TRUE(broken.contains(c.rule)) << q.dump();
    covered.insert(c.rule);
  }
  for (const CtRule& r : ct_rules()) EXPECT_TRUE(covered.contains(r.id)) << r.id << " has no violating case";
  EXPECT_EQ(covered.size(), ct_rules().size());
}

TEST(CtRules, ViolationsNameTheKeyPath) {
  json q = good_config();
  q["config_groups"]["group_0"]["weights"]["actorder"] = true;
  const auto v = ct_quantization_config_violations(q);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].rule, "args.actorder");
  EXPECT_EQ(v[0].where, "config_groups.group_0.weights.actorder");
  EXPECT_NE(v[0].message.find("removed in compressed-tensors 0.19"), std::string::npos) << v[0].message;
}

// Every preset as the writer dumps it (both spellings, with and without act-order) passes, so
// verify cannot fail on what we write; the removed group act-order is refused.
TEST(CtRules, EveryPresetAsWrittenPasses) {
  for (const std::string& name : quant::quant_scheme_preset_names()) {
    for (const quant::ActOrder order : {quant::ActOrder::kNone, quant::ActOrder::kStatic}) {
      RecipeGroup g;
      g.name = name;
      g.scheme = quant::quant_scheme_preset(name);
      g.actorder = order;
      for (const ArgsSpelling sp : {ArgsSpelling::kConfigJson, ArgsSpelling::kRecipe}) {
        json q = {{"config_groups", {{"group_0", json::parse(scheme_group_json(g, {"Linear"}, sp).dump())}}},
                  {"quantization_status", "compressed"}};
        const auto v = ct_quantization_config_violations(q);
        for (const CtViolation& x : v) ADD_FAILURE() << name << ": " << x.rule << " at " << x.where << ": " << x.message;
      }
    }
    RecipeGroup g;
    g.scheme = quant::quant_scheme_preset(name);
    g.actorder = quant::ActOrder::kGroup;
    const json q = {{"config_groups", {{"g", json::parse(scheme_group_json(g, {"Linear"}, ArgsSpelling::kConfigJson).dump())}}}};
    EXPECT_TRUE(rules_broken(q).contains("args.actorder")) << name;
  }
}

}  // namespace
}  // namespace dsv4::calib

// test_recipe.cpp: recipe parsing (llm-compressor layout + dsv4 sections), errors with key paths,
// overrides, and the resolved recipe.yaml reading back to the same recipe.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include <yaml-cpp/yaml.h>

#include "calib/cpu_only.h"
#include "calib/recipe.h"
#include "common/check.h"

namespace dsv4::calib {
namespace {

void expect_error(const std::string& yaml, const std::string& needle) {
  try {
    recipe_parse(yaml, "r.yaml");
    ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("r.yaml"), std::string::npos) << e.what();
    // The recipe is the user's: a user error in its words, never a quant/ source location.
    EXPECT_TRUE(e.user()) << e.what();
    EXPECT_EQ(std::string(e.what()).find(".cpp:"), std::string::npos) << e.what();
  }
}

const char* kGroups = R"(
model: {path: /m}
dataset: {files: [a.jsonl], num_samples: 64, seq_len: 256, seed: 7, chat: thinking}
calibration: {all_experts: false, w2_input: weighted}
output: {dir: /o, shard_size: 2GB, mtp_aliases: true}
run: {checkpoint_every: 2}
quant_stage:
  quant_modifiers:
    GPTQModifier:
      dampening_frac: 0.1
      block_size: 64
      ignore: [lm_head]
      config_groups:
        group_0:
          targets: ["re:.*experts.*"]
          weights: {num_bits: 4, type: int, symmetric: false, group_size: 32, observer: mse,
                    observer_kwargs: {grid: 50}, actorder: none}
        group_1:
          targets: [Linear]
          weights: {num_bits: 8, type: int, strategy: channel}
          input_activations: {num_bits: 8, type: int, strategy: token, dynamic: true}
    QuantizationModifier:
      scheme: {FP8_BLOCK: ["re:.*attn.*"], NVFP4A16: ["re:.*shared.*"]}
)";

TEST(Recipe, ParsesGroupsPresetsAndSections) {
  const Recipe r = recipe_parse(kGroups, "r.yaml");
  EXPECT_EQ(r.model, "/m");
  EXPECT_EQ(r.dataset.files, std::vector<std::string>{"a.jsonl"});
  EXPECT_EQ(r.dataset.num_samples, 64);
  EXPECT_EQ(r.dataset.seq_len, 256);
  EXPECT_EQ(r.dataset.seed, 7u);
  ASSERT_TRUE(r.dataset.chat.has_value());
  EXPECT_EQ(*r.dataset.chat, data::ChatMode::kThinking);
  EXPECT_FALSE(r.calibration.all_experts);
  EXPECT_TRUE(r.calibration.propagate_error);
  EXPECT_EQ(r.calibration.w2_input, W2Input::kWeighted);
  EXPECT_EQ(r.output.shard_bytes, 2000000000u);
  EXPECT_TRUE(r.output.mtp_aliases);
  EXPECT_EQ(r.run.checkpoint_every, 2);
  EXPECT_EQ(r.stage, "quant_stage");
  ASSERT_EQ(r.modifiers.size(), 2u);
  const RecipeModifier& g = r.modifiers[0];
  EXPECT_EQ(g.kind, ModifierKind::kGptq);
  EXPECT_FLOAT_EQ(g.gptq.dampening_frac, 0.1f);
  EXPECT_EQ(g.gptq.block_size, 64);
  EXPECT_EQ(g.gptq.actorder, quant::ActOrder::kStatic);  // the modifier default
  EXPECT_EQ(g.ignore, std::vector<std::string>{"lm_head"});
  ASSERT_EQ(g.groups.size(), 2u);
  const quant::QuantArgs& w0 = g.groups[0].scheme.weights;
  EXPECT_EQ(w0.num_bits, 4);
  EXPECT_FALSE(w0.symmetric);
  EXPECT_EQ(w0.strategy, quant::Strategy::kGroup);  // inferred from group_size
  EXPECT_EQ(w0.group_size, 32);
  EXPECT_EQ(w0.observer, quant::ObserverKind::kMse);
  EXPECT_EQ(w0.mse.grid, 50);
  EXPECT_EQ(g.groups[0].actorder, quant::ActOrder::kNone);  // the group's own wins
  EXPECT_EQ(g.groups[1].actorder, quant::ActOrder::kStatic);
  EXPECT_EQ(quant::quant_scheme_format(g.groups[1].scheme), quant::PackFormat::kIntQuantized);
  const RecipeModifier& q = r.modifiers[1];
  EXPECT_EQ(q.kind, ModifierKind::kQuantization);
  ASSERT_EQ(q.groups.size(), 2u);
  EXPECT_EQ(q.groups[0].name, "FP8_BLOCK");
  EXPECT_EQ(q.groups[0].scheme.weights, quant::quant_args_preset("FP8_BLOCK"));
  EXPECT_TRUE(q.groups[0].scheme.input_activations.has_value());
  EXPECT_EQ(q.groups[1].targets, std::vector<std::string>{"re:.*shared.*"});
  EXPECT_TRUE(r.needs_data());
}

TEST(Recipe, StringSchemeDefaultsToLinearTargets) {
  const Recipe r = recipe_parse("s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      scheme: W4A16\n", "r.yaml");
  ASSERT_EQ(r.modifiers.size(), 1u);
  EXPECT_EQ(r.modifiers[0].groups[0].targets, std::vector<std::string>{"Linear"});
  EXPECT_FALSE(r.needs_data());
  EXPECT_EQ(r.dataset.num_samples, 512);  // defaults filled
  EXPECT_EQ(r.output.profile, OutputProfile::kVllm);
}

TEST(Recipe, ResolvedYamlReadsBackEqual) {
  const Recipe a = recipe_parse(kGroups, "r.yaml");
  const std::string y = recipe_to_yaml(a);
  const Recipe b = recipe_parse(y, "resolved.yaml");
  EXPECT_EQ(recipe_to_yaml(b), y);
  ASSERT_EQ(b.modifiers.size(), a.modifiers.size());
  for (size_t i = 0; i < a.modifiers.size(); ++i) {
    ASSERT_EQ(b.modifiers[i].groups.size(), a.modifiers[i].groups.size());
    for (size_t g = 0; g < a.modifiers[i].groups.size(); ++g) {
      EXPECT_EQ(b.modifiers[i].groups[g].scheme.weights, a.modifiers[i].groups[g].scheme.weights) << y;
      EXPECT_EQ(b.modifiers[i].groups[g].actorder, a.modifiers[i].groups[g].actorder);
      EXPECT_EQ(quant::quant_scheme_format(b.modifiers[i].groups[g].scheme),
                quant::quant_scheme_format(a.modifiers[i].groups[g].scheme));
    }
  }
  // The release FP8 rule (e8m0 on a block strategy) survives the round trip.
  const Recipe e = recipe_parse(R"(
q_stage:
  q_modifiers:
    QuantizationModifier:
      config_groups:
        g: {targets: [Linear], weights: {num_bits: 8, type: float, strategy: block, block_structure: 128x128, scale_dtype: e8m0}}
)", "e.yaml");
  EXPECT_EQ(recipe_parse(recipe_to_yaml(e), "x").modifiers[0].groups[0].scheme.weights,
            quant::quant_args_preset("FP8_BLOCK_E8M0"));
}

// compressed-tensors >= 0.19 and llm-compressor 0.14 spellings (issue 27), and ours as aliases.
TEST(Recipe, ActOrderFollowsLlmCompressor) {
  const auto orders = [](const std::string& modifier_line, const std::string& group_order) {
    const Recipe r = recipe_parse("q_stage:\n  q_modifiers:\n    GPTQModifier:\n" + modifier_line +
                                      "      config_groups:\n        a: {targets: [x], weights: {num_bits: 4, group_size: 128" +
                                      group_order + "}}\n        b: {targets: [y], weights: {num_bits: 4, group_size: 128}}\n",
                                  "r.yaml");
    return std::pair(r.modifiers[0].groups[0].actorder, r.modifiers[0].groups[1].actorder);
  };
  using quant::ActOrder;
  EXPECT_EQ(orders("", ""), std::pair(ActOrder::kStatic, ActOrder::kStatic));  // GPTQModifier's default
  EXPECT_EQ(orders("      actorder: null\n", ""), std::pair(ActOrder::kNone, ActOrder::kNone));
  EXPECT_EQ(orders("      actorder: weight\n", ", actorder: null"), std::pair(ActOrder::kStatic, ActOrder::kStatic));
  EXPECT_EQ(orders("", ", actorder: false"), std::pair(ActOrder::kStatic, ActOrder::kStatic));  // false: unset
  EXPECT_EQ(orders("", ", actorder: none"), std::pair(ActOrder::kNone, ActOrder::kStatic));     // our old spelling
  // Removed in compressed-tensors 0.19 (g_idx act-order): read as weight, never written.
  EXPECT_EQ(orders("      actorder: group\n", ""), std::pair(ActOrder::kStatic, ActOrder::kStatic));
  EXPECT_EQ(orders("", ", actorder: dynamic"), std::pair(ActOrder::kStatic, ActOrder::kStatic));
}

TEST(Recipe, ScaleDtypeTakesTorchNamesAndTheOldAlias) {
  const auto args = [](const std::string& sd) {
    return recipe_parse("q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g: {targets: [x], "
                        "weights: {num_bits: 8, type: float, strategy: block, block_structure: [128, 128], scale_dtype: " +
                            sd + "}}\n",
                        "r.yaml")
        .modifiers[0]
        .groups[0]
        .scheme.weights;
  };
  EXPECT_EQ(args("\"torch.float8_e8m0fnu\""), quant::quant_args_preset("FP8_BLOCK_E8M0"));
  EXPECT_EQ(args("float8_e8m0fnu"), quant::quant_args_preset("FP8_BLOCK_E8M0"));
  EXPECT_EQ(args("e8m0"), quant::quant_args_preset("FP8_BLOCK_E8M0"));
}

// The resolved recipe.yaml holds only what llm-compressor 0.14's modifiers accept (their pydantic
// models forbid extra keys): our GPTQ options sit in calibration.gptq and read back from there.
TEST(Recipe, ResolvedYamlKeepsOurOptionsOutOfTheModifiers) {
  const Recipe r = recipe_parse(R"(
q_stage:
  q_modifiers:
    GPTQModifier:
      qparams: lazy
      max_damping_escalations: 2
      actorder: null
      config_groups:
        g: {targets: [x], weights: {num_bits: 4, group_size: 128}}
    QuantizationModifier:
      config_groups:
        f: {targets: [y], weights: {num_bits: 8, type: float, strategy: block, block_structure: [128, 128], scale_dtype: e8m0}}
)", "r.yaml");
  const std::string y = recipe_to_yaml(r);
  const YAML::Node n = YAML::Load(y);
  const YAML::Node gptq = n["q_stage"]["quant_modifiers"]["GPTQModifier"];
  EXPECT_FALSE(gptq["qparams"].IsDefined()) << y;
  EXPECT_FALSE(gptq["max_damping_escalations"].IsDefined()) << y;
  EXPECT_TRUE(gptq["actorder"].IsNull()) << y;
  EXPECT_TRUE(gptq["config_groups"]["g"]["weights"]["actorder"].IsNull()) << y;
  EXPECT_EQ(n["calibration"]["gptq"]["qparams"].as<std::string>(), "lazy") << y;
  EXPECT_EQ(n["calibration"]["gptq"]["max_damping_escalations"].as<int>(), 2) << y;
  EXPECT_EQ(n["q_stage"]["quant_modifiers"]["QuantizationModifier"]["config_groups"]["f"]["weights"]["scale_dtype"]
                .as<std::string>(),
            "torch.float8_e8m0fnu")
      << y;
  const Recipe b = recipe_parse(y, "resolved.yaml");
  EXPECT_EQ(b.modifiers[0].gptq.qparams, quant::QParamsTiming::kLazy);
  EXPECT_EQ(b.modifiers[0].gptq.max_damping_escalations, 2);
  EXPECT_EQ(b.modifiers[0].groups[0].actorder, quant::ActOrder::kNone);
  EXPECT_EQ(recipe_to_yaml(b), y);
}

// Rounding past classic GPTQ (issue 24): calibration.gptq.scale_search / refine_passes reach the
// modifier's GptqOptions, the resolved recipe writes them back there under a header saying that
// llm-compressor has no equivalent, and a classic recipe's resolved text carries neither.
TEST(Recipe, RoundingPastClassicGptqReadsAndWritesBack) {
  const std::string stage = R"(
q_stage:
  q_modifiers:
    GPTQModifier:
      config_groups:
        g: {targets: [x], weights: {num_bits: 4, group_size: 128}}
)";
  const Recipe r = recipe_parse("calibration: {gptq: {scale_search: hessian, refine_passes: 3, asymmetric: false}}\n" + stage,
                                "r.yaml");
  EXPECT_EQ(r.modifiers[0].gptq.scale_search, quant::ScaleSearch::kHessian);
  EXPECT_EQ(r.modifiers[0].gptq.refine_passes, 3);
  EXPECT_FALSE(r.modifiers[0].gptq.asymmetric);
  const std::string y = recipe_to_yaml(r);
  EXPECT_EQ(y.rfind("# calibration.gptq.scale_search, refine_passes and asymmetric are dsv4-calib's own", 0), 0u) << y;
  EXPECT_NE(y.find("llm-compressor's GPTQModifier has no equivalent"), std::string::npos) << y;
  const YAML::Node n = YAML::Load(y);
  EXPECT_EQ(n["calibration"]["gptq"]["scale_search"].as<std::string>(), "hessian") << y;
  EXPECT_EQ(n["calibration"]["gptq"]["refine_passes"].as<int>(), 3) << y;
  EXPECT_FALSE(n["q_stage"]["quant_modifiers"]["GPTQModifier"]["scale_search"].IsDefined()) << y;
  const Recipe b = recipe_parse(y, "resolved.yaml");
  EXPECT_EQ(b.modifiers[0].gptq.scale_search, quant::ScaleSearch::kHessian);
  EXPECT_EQ(b.modifiers[0].gptq.refine_passes, 3);
  EXPECT_EQ(recipe_to_yaml(b), y);

  // The defaults, written out or not, are classic GPTQ and leave the resolved text as it was.
  const std::string classic = recipe_to_yaml(recipe_parse(stage, "r.yaml"));
  EXPECT_EQ(recipe_to_yaml(recipe_parse("calibration: {gptq: {scale_search: observer, refine_passes: 0}}\n" + stage,
                                        "r.yaml")),
            classic);
  EXPECT_EQ(classic.find("scale_search"), std::string::npos) << classic;
  EXPECT_EQ(classic.find("refine_passes"), std::string::npos) << classic;
  EXPECT_EQ(classic.find('#'), std::string::npos) << classic;
}

// GPTAQ (calibration.gptq.asymmetric): read into every GPTQ modifier's options, written back, and
// refused by name with what it cannot pair (learned routing without all-experts Hessians,
// weighted w2 rows), what makes it moot (no error propagation), held-out validation, the
// turboquant profile (also as --profile), and --device cuda (cpu_only_check, with held-out's).
TEST(Recipe, GptaqReadsWritesBackAndRefusesWhatItCannotPair) {
  const std::string stage = "q_stage:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: [x]}\n";
  const Recipe r = recipe_parse("calibration: {gptq: {asymmetric: true}}\n" + stage, "r.yaml");
  EXPECT_TRUE(r.modifiers[0].gptq.asymmetric);
  EXPECT_TRUE(r.gptaq());
  EXPECT_FALSE(recipe_parse(stage, "r.yaml").gptaq());
  const std::string y = recipe_to_yaml(r);
  EXPECT_TRUE(YAML::Load(y)["calibration"]["gptq"]["asymmetric"].as<bool>()) << y;
  EXPECT_TRUE(recipe_parse(y, "resolved.yaml").gptaq());
  const std::string on = "calibration: {gptq: {asymmetric: true}, ";
  expect_error(on + "all_experts: false}\n" + stage, "calibration.gptq.asymmetric: GPTAQ needs calibration.all_experts: true");
  expect_error(on + "w2_input: weighted}\n" + stage, "calibration.gptq.asymmetric: GPTAQ needs calibration.w2_input: unweighted");
  expect_error(on + "propagate_error: false}\n" + stage,
               "calibration.gptq.asymmetric: GPTAQ needs calibration.propagate_error: true");
  expect_error(on + "heldout: {fraction: 0.25}}\n" + stage, "calibration.gptq.asymmetric: GPTAQ needs no calibration.heldout");
  expect_error("calibration: {gptq: {asymmetric: true}}\noutput: {profile: turboquant}\n" + stage,
               "GPTAQ needs another output.profile than turboquant");
  Recipe t = r;
  RecipeOverrides o;
  o.profile = OutputProfile::kTurboquant;
  EXPECT_THROW(recipe_apply_overrides(t, o), Error);
  // --device cuda: one rule for every CPU-only key, naming them.
  EXPECT_EQ(cpu_only_keys(r), std::vector<std::string>{"calibration.gptq.asymmetric"});
  EXPECT_NO_THROW(cpu_only_check(r, false));
  try {
    cpu_only_check(r, true);
    ADD_FAILURE() << "--device cuda with GPTAQ accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda: calibration.gptq.asymmetric in r.yaml runs on the CPU path only"),
              std::string::npos)
        << e.what();
  }
  const Recipe h = recipe_parse("calibration: {heldout: {fraction: 0.25}}\n" + stage, "h.yaml");
  EXPECT_EQ(cpu_only_keys(h), std::vector<std::string>{"calibration.heldout"});
  EXPECT_THROW(cpu_only_check(h, true), Error);
  EXPECT_TRUE(cpu_only_keys(recipe_parse(stage, "r.yaml")).empty());
}

TEST(Recipe, RoundingPastClassicGptqErrorsNameTheKey) {
  const std::string stage = "q_stage:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: [x]}\n";
  expect_error("calibration: {gptq: {scale_search: mse}}\n" + stage,
               "calibration.gptq.scale_search: expected one of observer, hessian, got 'mse'");
  expect_error("calibration: {gptq: {refine_passes: -1}}\n" + stage,
               "calibration.gptq.refine_passes: expected a pass count from 0 to 64, got -1");
  expect_error("calibration: {gptq: {refine_passes: 65}}\n" + stage,
               "calibration.gptq.refine_passes: expected a pass count from 0 to 64, got 65");
  expect_error("calibration: {gptq: {asymmetric_alpha: 0.5}}\n" + stage, "calibration.gptq.asymmetric_alpha: unknown key");
  expect_error("calibration: {gptq: {scale_search: hessian}}\nq_stage:\n  q_modifiers:\n    QuantizationModifier: {scheme: W4A16}\n",
               "calibration.gptq: the recipe has no GPTQModifier");
  // GPTQModifier's own keys stay llm-compressor's: these belong in calibration.gptq only.
  expect_error("q_stage:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: [x], refine_passes: 2}\n",
               "GPTQModifier.refine_passes: unknown key");
}

TEST(Recipe, OverridesReplaceRecipeValues) {
  Recipe r = recipe_parse(kGroups, "r.yaml");
  recipe_apply_overrides(r, {.model = "/other", .dataset = "b.jsonl", .out = "/out2", .num_samples = 8, .seq_len = 64});
  EXPECT_EQ(r.model, "/other");
  EXPECT_EQ(r.dataset.files, std::vector<std::string>{"b.jsonl"});
  EXPECT_EQ(r.output.dir, "/out2");
  EXPECT_EQ(r.dataset.num_samples, 8);
  EXPECT_EQ(r.dataset.seq_len, 64);
}

TEST(Recipe, ErrorsNameTheKeyPath) {
  const std::string head = "q_stage:\n  q_modifiers:\n    GPTQModifier:\n";
  expect_error(head + "      scheme: W4A16\n      dampening: 0.1\n", "q_stage.q_modifiers.GPTQModifier.dampening: unknown key");
  expect_error(head + "      scheme: W4A17\n",
               "unknown quantization scheme 'W4A17' (did you mean W4A16?); known: W4A16");
  expect_error(head + "      scheme: W4A16\n      config_groups: {g: {targets: [x], weights: {num_bits: 4}}}\n",
               "scheme and config_groups cannot be used together");
  expect_error(head + "      config_groups: {g: {targets: [x], weights: {num_bits: 4, group_size: 0}}}\n",
               "config_groups.g.weights.group_size");
  expect_error(head + "      config_groups: {g: {targets: [x], weights: {num_bits: 4, type: float, symmetric: false, group_size: 16, strategy: tensor_group}}}\n",
               "config_groups.g");
  expect_error(head + "      config_groups: {g: {targets: [x], weights: {num_bits: 4, grup_size: 128}}}\n",
               "weights.grup_size: unknown key");
  expect_error(head + "      config_groups: {g: {targets: [x], weights: {num_bits: 9, group_size: 128}}}\n",
               "config_groups.g.weights.num_bits: expected 2 to 8 bits for int weights, got 9");
  expect_error(head + "      config_groups: {g: {targets: [x], weights: {num_bits: 4, strategy: grup, "
                      "group_size: 128}}}\n",
               "weights.strategy: expected one of tensor, channel, group, block, tensor_group, token, attn_head, got "
               "'grup' (did you mean group?)");
  expect_error(head + "      config_groups: {g: {targets: [x], weights: {num_bits: 4, group_size: 128, observer: mse, "
                      "observer_kwargs: {grid: 0}}}}\n",
               "config_groups.g.weights.observer_kwargs.grid: expected >= 1, got 0");
  expect_error(head + "      config_groups: {g: {targets: [x], weights: {num_bits: 8, type: float}, "
                      "format: pack-quantized}}\n",
               "config_groups.g.format: pack-quantized cannot hold these weights (float8");
  expect_error(head + "      config_groups: {g: {targets: [x], weights: {num_bits: 8, type: float}, "
                      "input_activations: {num_bits: 8, type: float, strategy: token, dynamic: false}}}\n",
               "config_groups.g.input_activations.dynamic: the token strategy must be dynamic, got false");
  expect_error(head + "      scheme: W4A16\n      block_size: 0\n",
               "GPTQModifier.block_size: expected a positive column count, got 0");
  expect_error(head + "      scheme: W4A16\n      num_sampels: 3\n      dampening_frac: 0.1\n",
               "GPTQModifier.num_sampels: unknown key; accepted here");
  expect_error(head + "      scheme: W4A16\n      dampening_fraq: 0.1\n",
               "GPTQModifier.dampening_fraq: unknown key (did you mean dampening_frac?); accepted here");
  expect_error(head + "      scheme: W4A16\n      targets: [Linear]\n      ignore: [Linear]\n", "'Linear' is both ignored and a target");
  expect_error(head + "      scheme: W4A16\n      actorder: sideways\n",
               "GPTQModifier.actorder: expected weight (alias static) or null, got 'sideways'");
  expect_error(head + "      actorder: null\n      config_groups: {g: {targets: [x], weights: {num_bits: 4, group_size: 128, actorder: weight}}}\n",
               "actorder: contradicts");
  expect_error("calibration: {gptq: {qparams: lazy}}\n" + head + "      scheme: W4A16\n      qparams: upfront\n",
               "GPTQModifier.qparams: also set in calibration.gptq");
  expect_error("calibration: {gptq: {qparams: lazy}}\nq_stage:\n  q_modifiers:\n    QuantizationModifier: {scheme: W4A16}\n",
               "calibration.gptq: the recipe has no GPTQModifier");
  expect_error(head + "      scheme: W4A16\n      kv_cache_scheme: {num_bits: 8}\n", "KV-cache quantization is not supported");
  expect_error("q_stage:\n  q_modifiers:\n    AWQModifier: {}\n", "unknown modifier");
  expect_error("modell: {path: x}\nq_stage:\n  q_modifiers:\n    QuantizationModifier: {scheme: W4A16}\n",
               "modell: unknown key (did you mean model?)");
  expect_error("q_stage:\n  q_modifiers:\n    QuantizationModifer: {scheme: W4A16}\n",
               "QuantizationModifer: unknown modifier (did you mean QuantizationModifier?)");
  expect_error("dataset: {num_samples: many}\nq_stage:\n  q_modifiers:\n    QuantizationModifier: {scheme: W4A16}\n",
               "dataset.num_samples: expected an integer, got 'many'");
  expect_error("output: {shard_size: 5 parsecs}\nq_stage:\n  q_modifiers:\n    QuantizationModifier: {scheme: W4A16}\n",
               "output.shard_size");
  expect_error("model: {path: x}\n", "no quantization stage");
  expect_error("a: [unclosed\n", "invalid YAML");
}

TEST(Recipe, ComplexKeyIsAUserErrorNamingThePath) {
  // Issue 26 (and tests/fuzz/ corpus regression_complex_key.yaml): yaml-cpp's "bad conversion",
  // naming neither file nor key, for a key that is a list or a mapping.
  expect_error("? [a, b]\n: 1\n", "r.yaml: (top level): every key must be a plain name, got a list");
  expect_error("q_stage:\n  ? {a: 1}\n  : x\n", "r.yaml: q_stage: every key must be a plain name, got a mapping");
}

TEST(Recipe, TextThatIsNotPrintableUtf8IsRefusedNamingLineAndColumn) {
  // Found by tests/fuzz/ (fuzz_recipe_yaml, session 19; corpus regression_group_name_not_utf8.yaml):
  // a config_groups name of 0xFF and ESC bytes was read by yaml-cpp, and the resolved recipe.yaml
  // written from it did not parse back.
  expect_error("a: 1\nb: x\xffy\n", "r.yaml: line 2 column 5: not UTF-8 at byte 0xFF");
  expect_error("a: 1\n\x1b: 2\n", "r.yaml: line 2 column 1: a control character, 0x1B");
  expect_error("a: \xe2\x82\n", "line 1 column 4: not UTF-8 at byte 0xE2");        // truncated sequence
  expect_error("a: \xc0\xaf\n", "line 1 column 4: not UTF-8 at byte 0xC0");        // overlong '/'
  expect_error("a: \xed\xa0\x80\n", "line 1 column 4: not UTF-8 at byte 0xED");  // a surrogate
  // Printable UTF-8 beyond ASCII (in a comment), TAB and CRLF pass.
  const Recipe r = recipe_parse("# caf\xc3\xa9 \xe2\x9c\x93\r\nq_stage:\r\n  q_modifiers:\r\n"
                                "    QuantizationModifier: {scheme: W4A16}\t# a tab\r\n",
                                "r.yaml");
  EXPECT_EQ(r.modifiers.size(), 1u);
}

TEST(Recipe, ShardSizeOutOfRangeIsRefusedNamingTheKey) {
  // Found by tests/fuzz/ (fuzz_recipe_yaml on the GPU machine's 16 cores, session 18; corpus
  // regression_shard_size_*.yaml): a shard_size of 1e30 or inf was cast to uint64_t (undefined),
  // nan was taken, and 0.5 gave 0 bytes, which the resolved recipe.yaml could not read back.
  const std::string tail = "}\nq_stage:\n  q_modifiers:\n    QuantizationModifier: {scheme: W4A16}\n";
  expect_error("output: {shard_size: 1e30" + tail, "output.shard_size: expected a size such as 5GB");
  expect_error("output: {shard_size: 1e30" + tail, "got '1e30': more than 1 PiB");
  expect_error("output: {shard_size: .inf" + tail, "got '.inf': not a number");
  expect_error("output: {shard_size: inf" + tail, "got 'inf': not a finite size");
  expect_error("output: {shard_size: nan" + tail, "got 'nan': not a finite size");
  expect_error("output: {shard_size: 0.5" + tail, "got '0.5': less than one byte");
  const Recipe r = recipe_parse("output: {shard_size: 1.5KiB" + tail, "r.yaml");
  EXPECT_EQ(r.output.shard_bytes, 1536u);
  EXPECT_EQ(recipe_parse(recipe_to_yaml(r), "resolved").output.shard_bytes, 1536u);
}

TEST(Recipe, Fp4WeightsNoFormatHoldsAreRefusedAtParse) {
  // Found by tests/fuzz/ (fuzz_recipe_yaml, corpus regression_fp4_group15_no_format.yaml): without
  // a format, group_size 15 fp4 weights got naive-quantized, which cannot hold fp4; the parse
  // accepted them and the writer refused them after the whole run.
  const std::string head = "q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      config_groups:\n";
  const std::string fp4 = "{num_bits: 4, type: float, symmetric: true, strategy: ";
  for (const std::string& w : {fp4 + "tensor_group, group_size: 15, scale_dtype: float8_e4m3fn}",
                               fp4 + "group, group_size: 16, scale_dtype: float8_e4m3fn}",
                               fp4 + "group, group_size: 32, scale_dtype: float8_e4m3fn}"}) {
    expect_error(head + "        g: {targets: [x], weights: " + w + "}\n",
                 "config_groups.g.weights: no on-disk format holds these weights (float4");
  }
  // The two that have a format still parse, and their resolved YAML too.
  for (const std::string& w : {fp4 + "tensor_group, group_size: 16, scale_dtype: float8_e4m3fn}",
                               fp4 + "group, group_size: 32, scale_dtype: e8m0}"}) {
    const Recipe r = recipe_parse(head + "        g: {targets: [x], weights: " + w + "}\n", "ok.yaml");
    EXPECT_NO_THROW(recipe_parse(recipe_to_yaml(r), "resolved.yaml")) << w;
  }
}

}  // namespace
}  // namespace dsv4::calib

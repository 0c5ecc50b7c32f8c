// test_recipe_llmc.cpp: our recipe parser against llm-compressor's own parse of the same files
// (issue 27). tests/golden/llmc_recipes.json is written by tests/golden/llmc_recipe_fixture.py with
// llm-compressor from PyPI (versions inside the fixture); CI only reads it. For every shipped recipe
// and the recipe.yaml our writer makes from it, llm-compressor must have loaded the file, and our
// parse must resolve the same modifiers, groups, targets, ignore, GPTQ options and QuantizationArgs;
// on the tiny model, each group must select the modules llm-compressor selects on transformers'
// DeepseekV4 model of the same config, through our transformers name map.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "calib/module_plan.h"
#include "calib/recipe.h"
#include "calib/scheme_json.h"
#include "common/fs.h"
#include "model/config.h"

namespace dsv4::calib {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kRecipes = std::string(DSV4_SOURCE_DIR) + "/recipes/";

json fixture() { return json::parse(read_file(std::string(DSV4_SOURCE_DIR) + "/tests/golden/llmc_recipes.json")); }

// llm-compressor's spelling -> ours where two spellings mean one thing.
json normalized(const std::string& key, json v) {
  if (key == "actorder" && v == "static") return "weight";  // compressed-tensors' alias
  if (key == "observer" && v.is_string()) return v.get<std::string>().find("mse") != std::string::npos ? "mse" : "minmax";
  return v;
}

// Every field llm-compressor resolved equals ours (observer_kwargs: the keys it holds).
void expect_args_equal(const json& theirs, const json& ours, const std::string& where) {
  if (theirs.is_null()) {
    EXPECT_TRUE(ours.is_null()) << where << ": ours " << ours.dump();
    return;
  }
  ASSERT_TRUE(ours.is_object()) << where << ": llm-compressor has " << theirs.dump();
  for (const auto& [key, value] : theirs.items()) {
    if (key == "observer" && value.is_null()) continue;  // dynamic activations: no observer either way
    if (key == "observer_kwargs") {
      for (const auto& [k, v] : value.items()) {
        ASSERT_TRUE(ours[key].contains(k)) << where << "." << key << "." << k;
        // Ours are fp32 (quant::MseOptions): equal as floats.
        EXPECT_FLOAT_EQ(ours[key][k].get<float>(), v.get<float>()) << where << "." << key << "." << k;
      }
      continue;
    }
    EXPECT_EQ(normalized(key, ours.value(key, json())), normalized(key, value)) << where << "." << key;
  }
}

void expect_recipe_matches(const Recipe& r, const json& entry, const std::string& name) {
  ASSERT_TRUE(entry.value("loads", false)) << name << ": llm-compressor refused it: " << entry.value("error", "");
  const json& mods = entry["modifiers"];
  ASSERT_EQ(r.modifiers.size(), mods.size()) << name;
  for (size_t i = 0; i < mods.size(); ++i) {
    const RecipeModifier& m = r.modifiers[i];
    const json& t = mods[i];
    const std::string where = name + ": " + t["type"].get<std::string>();
    EXPECT_EQ(modifier_kind_name(m.kind), t["type"].get<std::string>()) << where;
    EXPECT_EQ(json(m.ignore), t["ignore"]) << where;
    if (m.kind == ModifierKind::kGptq) {
      EXPECT_EQ(m.gptq.block_size, t["block_size"].get<int>()) << where;
      EXPECT_FLOAT_EQ(m.gptq.dampening_frac, t["dampening_frac"].get<float>()) << where;
    }
    ASSERT_EQ(m.groups.size(), t["groups"].size()) << where;
    size_t g = 0;
    for (const auto& [gname, tg] : t["groups"].items()) {
      const RecipeGroup& ours = m.groups[g++];
      const std::string gw = where + "." + gname;
      EXPECT_EQ(ours.name, gname) << gw;
      EXPECT_EQ(json(ours.targets), tg["targets"]) << gw;
      const json oj = scheme_group_json(ours, ours.targets, ArgsSpelling::kRecipe);
      expect_args_equal(tg["weights"], oj["weights"], gw + ".weights");
      expect_args_equal(tg["input_activations"], oj["input_activations"], gw + ".input_activations");
    }
  }
}

// On the tiny model: per group, the transformers names of the modules our plan gives it equal the
// modules llm-compressor's matcher selects on transformers' model (so no MTP module, which has no
// transformers name, and nothing more or less). The appmana-dsv4-int profile converts the MTP
// block as its seed does: those modules, which transformers' model lacks, are outside the
// comparison.
void expect_same_modules(const Recipe& r, const json& matches, const std::string& name) {
  const ModulePlan plan = module_plan_build(r, model::ModelConfig::tiny(), 1);
  for (size_t mi = 0; mi < r.modifiers.size(); ++mi) {
    for (size_t gi = 0; gi < r.modifiers[mi].groups.size(); ++gi) {
      const std::string key = std::string(modifier_kind_name(r.modifiers[mi].kind)) + "/" + r.modifiers[mi].groups[gi].name;
      ASSERT_TRUE(matches.contains(key)) << name << ": " << key;
      std::set<std::string> ours;
      int mtp_only = 0;  // appmana MTP modules, which transformers' model lacks
      for (const PlannedModule& p : plan.modules) {
        if (p.modifier != static_cast<int>(mi) || p.group != static_cast<int>(gi)) continue;
        const bool mtp = p.names.release.starts_with("mtp.");
        if (mtp && r.output.profile == OutputProfile::kAppmanaDsv4Int && !p.names.hf) {
          ++mtp_only;
          continue;
        }
        EXPECT_TRUE(p.names.hf.has_value()) << name << ": " << p.names.release << " has no transformers name";
        if (p.names.hf) ours.insert(*p.names.hf);
      }
      const std::set<std::string> theirs = matches[key].get<std::set<std::string>>();
      EXPECT_TRUE(!theirs.empty() || (ours.empty() && mtp_only > 0)) << name << ": " << key;
      EXPECT_EQ(ours, theirs) << name << ": " << key;
    }
  }
}

TEST(RecipeLlmc, FixtureCoversEveryShippedRecipe) {
  const json fx = fixture();
  for (const auto& e : fs::directory_iterator(kRecipes)) {
    if (e.path().extension() != ".yaml") continue;
    const std::string n = e.path().filename().string();
    EXPECT_TRUE(fx["recipes"].contains(n)) << n << ": run tests/golden/llmc_recipe_fixture.py";
    EXPECT_TRUE(fx["recipes"].contains("artifact:" + e.path().stem().string())) << n;
  }
  EXPECT_FALSE(fx["versions"]["llmcompressor"].get<std::string>().empty());
}

TEST(RecipeLlmc, ShippedRecipesParseAsLlmCompressorParsesThem) {
  const json fx = fixture();
  for (const auto& [name, entry] : fx["recipes"].items()) {
    if (name.starts_with("artifact:")) continue;
    SCOPED_TRACE(name);
    const Recipe r = recipe_load(kRecipes + name);
    expect_recipe_matches(r, entry, name);
    ASSERT_TRUE(entry.contains("transformers_matches")) << name;
    expect_same_modules(r, entry["transformers_matches"], name);
  }
}

// The artifact's recipe.yaml (recipe_to_yaml of the recipe that ran) loads in llm-compressor and
// resolves the same; the fixture parsed one written by `dsv4-calib` for each shipped recipe.
TEST(RecipeLlmc, ResolvedRecipeYamlParsesAsLlmCompressorParsesIt) {
  const json fx = fixture();
  int checked = 0;
  for (const auto& [name, entry] : fx["recipes"].items()) {
    if (!name.starts_with("artifact:")) continue;
    SCOPED_TRACE(name);
    const std::string file = name.substr(9) + ".yaml";
    const Recipe resolved = recipe_parse(recipe_to_yaml(recipe_load(kRecipes + file)), name);
    expect_recipe_matches(resolved, entry, name);
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace dsv4::calib

// module_plan.h: the resolved module -> scheme table of a recipe on a model: every Linear of the
// release checkpoint (attention and compressor/indexer projections, routed and shared experts,
// head, MTP e_proj/h_proj and the MTP block), with its three names, shape, source encoding, and
// which modifier/group quantizes it or why it is kept. One matcher decides this for calibration,
// the writer and config.json alike (DESIGN §2).
//
//   ModulePlan p = module_plan_build(recipe, config, mtp_stages);
//   std::fputs(module_plan_table(p).c_str(), stdout);   // `dsv4-calib plan`
//
// Errors (with the recipe key path): a module claimed by two modifiers; a group size that does
// not divide a matched module's input features. Warnings (listed, not fatal): a target or ignore
// entry that matches nothing.
// Tests: tests/calib/test_module_plan.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "calib/recipe.h"
#include "calib/target_match.h"
#include "model/config.h"
#include "model/inventory.h"

namespace dsv4::calib {

struct PlannedModule {
  ModuleNames names;
  std::string family;  // tensor_family of the module name: layers.*.ffn.experts.*.w1
  int layer = -1;      // as ExpectedTensor::layer (>= num_layers: MTP stage)
  int expert = -1;
  int64_t rows = 0, cols = 0;  // logical [out, in]
  model::TensorEncoding source = model::TensorEncoding::kPlain;  // kFp8Block / kMxfp4 / kPlain (BF16)
  int modifier = -1;  // index into recipe.modifiers; -1: kept unquantized
  int group = -1;     // index into that modifier's groups
  std::string kept_reason;  // "ignored by ...", "no target" when kept

  bool quantized() const { return modifier >= 0; }
};

struct ModulePlan {
  std::vector<PlannedModule> modules;  // inventory order: layer by layer, MTP last
  std::vector<std::string> warnings;
  int64_t hessian_bytes_peak_layer = 0;  // fp32 Hessians one layer needs at once (all-experts mode)
  uint64_t output_bytes = 0;             // estimated artifact size
};

ModulePlan module_plan_build(const Recipe& recipe, const model::ModelConfig& config, int mtp_stages);
// Per family: count, shape, source, what happens (modifier/group/scheme/format or kept + why);
// then the totals and every warning.
std::string module_plan_table(const Recipe& recipe, const ModulePlan& plan);
nlohmann::ordered_json module_plan_json(const Recipe& recipe, const ModulePlan& plan);

// The recipe modifier and group that quantize a planned module (module.quantized()).
const RecipeModifier& module_modifier(const Recipe& recipe, const PlannedModule& module);
const RecipeGroup& module_group(const Recipe& recipe, const PlannedModule& module);
// Whether a module needs calibration data: quantized by GPTQ, or with a static input-activation
// scale (pass A collects its input absmax: module_static_acts).
bool module_needs_data(const Recipe& recipe, const PlannedModule& module);
bool module_static_acts(const Recipe& recipe, const PlannedModule& module);

// Whether a release module name is a Linear (the modules recipes can target).
bool module_is_linear(std::string_view release_module);

}  // namespace dsv4::calib

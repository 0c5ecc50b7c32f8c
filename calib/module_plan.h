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
// not divide a matched module's input features; a module output.profile cannot store
// (profile_layout.h's output_profile_check). Warnings (listed, not fatal): a target or ignore
// entry that matches nothing.
// Tests: tests/calib/test_module_plan.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "calib/hessian_key.h"
#include "calib/recipe.h"
#include "calib/target_match.h"
#include "model/config.h"
#include "model/inventory.h"
#include "model/linear_role.h"
#include "quant/gptq.h"
#include "quant/pack.h"

namespace dsv4::calib {

// A quantized module's resolved scheme: what every step downstream reads (pass A's wants, the
// solve, the GPU split, the writer's layout, verify), so none of them goes back to the recipe.
struct ModuleScheme {
  ModifierKind kind = ModifierKind::kQuantization;
  quant::QuantScheme scheme;  // weight args and, optionally, input activations
  quant::PackFormat format = quant::PackFormat::kPackQuantized;  // on disk (quant_scheme_format)
  // GPTQ: the modifier's options with the group's act-order; data-free: act-order none.
  quant::GptqOptions gptq;
  bool static_acts = false;  // a static input-activation scale: pass A collects the input absmax
  HessianKey hessian;        // GPTQ: the Hessian serving it (the recipe's all_experts applied)
  std::string key_path;      // the recipe group it comes from, for messages
  // The profile it is written in (profile_layout.h), which also picks the data-free scale rules:
  // appmana-dsv4-int's are its converter's (quant/int_requant.h), with this INT4 mode.
  OutputProfile profile = OutputProfile::kVllm;
  Int4ScaleMode int4_scale_mode = Int4ScaleMode::kMse;

  bool gptq_solved() const { return kind == ModifierKind::kGptq; }
  bool needs_data() const { return gptq_solved() || static_acts; }
};

struct PlannedModule {
  ModuleNames names;
  std::string family;  // tensor_family of the module name: layers.*.ffn.experts.*.w1
  int layer = -1;      // as ExpectedTensor::layer (>= num_layers: MTP stage)
  int expert = -1;
  int64_t rows = 0, cols = 0;  // logical [out, in]
  model::TensorEncoding source = model::TensorEncoding::kPlain;  // kFp8Block / kMxfp4 / kPlain (BF16)
  model::LinearRole role = model::LinearRole::kHead;  // parsed once from the release name
  // Quantized: the resolved scheme, and the recipe modifier/group it comes from (the identity
  // config.json groups modules by; read the scheme, not the recipe, for anything else).
  std::optional<ModuleScheme> scheme;
  int modifier = -1;  // index into recipe.modifiers; -1: kept unquantized
  int group = -1;     // index into that modifier's groups
  std::string kept_reason;  // "ignored by ...", "no target" when kept

  bool quantized() const { return scheme.has_value(); }
  bool needs_data() const { return scheme && scheme->needs_data(); }
};

struct ModulePlan {
  std::vector<PlannedModule> modules;  // inventory order: layer by layer, MTP last
  std::vector<std::string> warnings;
  int64_t hessian_bytes_peak_layer = 0;  // fp32 Hessians one layer needs at once (all-experts mode)
  uint64_t output_bytes = 0;             // estimated size of the Linear weights in the artifact
  uint64_t source_bytes = 0;             // the source checkpoint's tensors (the inventory's)
  uint64_t artifact_bytes = 0;           // estimated size of all the artifact's tensors
};

ModulePlan module_plan_build(const Recipe& recipe, const model::ModelConfig& config, int mtp_stages);
// Per family: count, shape, source, what happens (modifier/group/scheme/format or kept + why);
// then the totals and every warning.
std::string module_plan_table(const Recipe& recipe, const ModulePlan& plan);
nlohmann::ordered_json module_plan_json(const Recipe& recipe, const ModulePlan& plan);

// The recipe group that quantizes a planned module (module.quantized()): for the edges that
// describe the recipe itself (config.json's groups, the plan table).
const RecipeGroup& module_group(const Recipe& recipe, const PlannedModule& module);

// The Hessians a GPTQ module is solved against: its scheme's key, once per output group for wo_a.
std::vector<HessianId> module_hessian_ids(const PlannedModule& module, int o_groups);


}  // namespace dsv4::calib

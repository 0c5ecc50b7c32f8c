// recipe.h: a calibration recipe, parsed from YAML into typed structs with every default filled.
// The quantization part is llm-compressor's format (gptq_and_formats.md §2.1): stages holding
// `GPTQModifier` and/or `QuantizationModifier` (data-free) entries, each with `config_groups`
// (targets, weights, input_activations, format) or `scheme` + `targets`, and `ignore`,
// `dampening_frac`, `block_size`, `actorder`. The dsv4-calib sections (`model`, `dataset`,
// `calibration`, `output`, `run`) sit beside the stages at the top level.
//
//   Recipe r = recipe_load("recipes/w4a16_mtp.yaml");
//   recipe_apply_overrides(r, {.model = "/models/dsv4", .num_samples = 64});
//   std::string resolved = recipe_to_yaml(r);   // recipe.yaml of the artifact, defaults filled
//
// Unknown keys, wrong types and invalid values throw dsv4::Error("recipe", ...) naming the file
// and the key path (`quant_stage.quant_modifiers.GPTQModifier.config_groups.group_0.weights.
// group_size`). Checks that need the model (targets matching nothing, group sizes that do not
// divide a matched module) belong to module_plan.h.
// Tests: tests/calib/test_recipe.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "calib/output_profile.h"
#include "data/calib_data.h"
#include "quant/gptq.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {

enum class ModifierKind : uint8_t { kGptq, kQuantization };
std::string_view modifier_kind_name(ModifierKind k);  // "GPTQModifier" / "QuantizationModifier"

// One config group: the modules it targets and the scheme they get.
struct RecipeGroup {
  std::string name;                  // "group_0", or the preset name for `scheme: {W4A16: [...]}`
  std::vector<std::string> targets;  // "re:<regex>" (anchored at the start), a module name or a class
  quant::QuantScheme scheme;
  quant::ActOrder actorder = quant::ActOrder::kStatic;  // the group's, else the modifier's
  bool actorder_explicit = false;    // weights.actorder was written in the group
  std::string key_path;              // where it was written, for messages
};

struct RecipeModifier {
  ModifierKind kind = ModifierKind::kGptq;
  std::string key_path;  // "quant_stage.quant_modifiers.GPTQModifier"
  std::vector<RecipeGroup> groups;
  std::vector<std::string> ignore;
  // GPTQ options (QuantizationModifier ignores them; setting one there is an error).
  quant::GptqOptions gptq;
};

// How the routed experts' w2 inputs are taken for the Hessian: kUnweighted as transformers and
// llm-compressor see them (routing weight applied after w2), kWeighted with the routing weight
// applied before w2 as DeepSeek's reference forward does.
enum class W2Input : uint8_t { kUnweighted, kWeighted };

// How pass A's Hessian sums are kept: kExact as fixed-point integers (quant/hessian_exact.h),
// the same bits whatever the number of ranks; kFp32 as fp32 sums, whose last bits depend on how
// the samples were split across ranks (the GPU collector's only mode so far).
enum class HessianSums : uint8_t { kExact, kFp32 };

// Held-out validation (calibration.heldout, issue 24; calib/heldout.h): a share of the samples,
// picked by sample index (so the same at any world size), feeds a second Hessian instead of the
// calibration one; each GPTQ module is solved at every candidate damping and by RTN, and the one
// with the least Hessian-weighted error on the held-out Hessian is kept. Off by default.
struct HeldoutOptions {
  double fraction = 0.0;                       // share of the samples held out; 0: off
  std::vector<double> dampings = {0.01, 0.1, 1.0};  // dampening_frac candidates (RTN is always one)
  bool refit = true;  // the chosen damping solved again on every sample's Hessian (train + held-out)
  bool enabled() const { return fraction > 0.0; }
};

struct CalibrationSection {
  bool all_experts = true;      // every expert sees every token for its Hessian (§5.1)
  bool propagate_error = true;  // the next layer's input comes from the quantized layer
  W2Input w2_input = W2Input::kUnweighted;
  HessianSums hessian_sums = HessianSums::kExact;
  int64_t batch_tokens = 4096;  // tokens per forward chunk (memory bound, not a numerics knob)
  HeldoutOptions heldout;
};

// Where the scale tensors of each family are written in another dtype than the scheme says.
struct OutputSection {
  std::string dir;
  uint64_t shard_bytes = 5ull << 30;  // 5 GiB, as llm-compressor's save_pretrained
  OutputProfile profile = OutputProfile::kVllm;  // how the solved modules are laid out (output_profile.h)
  Int4ScaleMode int4_scale_mode = Int4ScaleMode::kMse;  // appmana-dsv4-int's data-free INT4 scales
  AppmanaWoA wo_a = AppmanaWoA::kInt8;                  // appmana-dsv4-int's main-layer attn.wo_a
  bool mtp_aliases = false;           // mtp.0.head.weight / mtp.0.emb.tok_emb.weight
  // turboquant: tq_config.json's sensitive_patterns (its loader gives sensitive_bits to the names
  // containing one); upstream's default.
  std::vector<std::string> sensitive_patterns = {"o_proj", "down_proj"};
  bool copy_tokenizer = true;
};

struct RunSection {
  int checkpoint_every = 1;      // layers per journal commit with an activation snapshot
  double collective_timeout_s = 1800.0;
};

struct Recipe {
  std::string origin;  // the file (or "<string>") it was read from
  std::string model;   // the release checkpoint directory
  std::string tokenizer;  // directory with tokenizer.json; empty: the model directory
  data::DatasetOptions dataset;
  CalibrationSection calibration;
  OutputSection output;
  RunSection run;
  std::vector<RecipeModifier> modifiers;  // in file order
  std::string stage;                      // the stage name, e.g. "quant_stage"

  bool needs_data() const;  // any GPTQModifier, or a static activation scheme
  bool gptaq() const;       // a GPTQModifier solved with calibration.gptq.asymmetric (GPTAQ, quant/gptaq.h)
};

// Command-line overrides (--model, --dataset, --out, --num-samples, --seq-len, --profile).
struct RecipeOverrides {
  std::optional<std::string> model;
  std::optional<std::string> dataset;
  std::optional<std::string> out;
  std::optional<int64_t> num_samples;
  std::optional<int64_t> seq_len;
  std::optional<OutputProfile> profile;  // --profile
};

Recipe recipe_load(const std::string& path);
Recipe recipe_parse(const std::string& yaml_text, const std::string& origin);
void recipe_apply_overrides(Recipe& recipe, const RecipeOverrides& overrides);
// The resolved recipe (every default written out) as YAML; recipe_parse reads it back equal.
std::string recipe_to_yaml(const Recipe& recipe);

}  // namespace dsv4::calib

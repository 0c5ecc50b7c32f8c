// recipe_emit.cpp: Recipe -> YAML with every default written out (the artifact's recipe.yaml).
// Groups are always written as config_groups with full QuantizationArgs, so the file says what
// ran even when the input used a preset name. The stage is one llm-compressor 0.14 loads
// (Recipe.create_instance): only GPTQModifier's and QuantizationModifier's own keys, compressed-
// tensors' spellings (actorder "weight" or null, torch dtype names); our GPTQ options that
// llm-compressor does not have go to calibration.gptq.
#include <yaml-cpp/yaml.h>

#include <optional>

#include "calib/heldout.h"
#include "calib/recipe.h"
#include "calib/scheme_json.h"

namespace dsv4::calib {
namespace {

using nlohmann::ordered_json;

void emit_json(YAML::Emitter& e, const ordered_json& j) {
  switch (j.type()) {
    case ordered_json::value_t::object:
      e << YAML::BeginMap;
      for (const auto& [k, v] : j.items()) {
        e << YAML::Key << k << YAML::Value;
        emit_json(e, v);
      }
      e << YAML::EndMap;
      break;
    case ordered_json::value_t::array:
      e << YAML::Flow << YAML::BeginSeq;
      for (const auto& v : j) emit_json(e, v);
      e << YAML::EndSeq;
      break;
    case ordered_json::value_t::null: e << YAML::Null; break;
    case ordered_json::value_t::boolean: e << j.get<bool>(); break;
    case ordered_json::value_t::number_integer:
    case ordered_json::value_t::number_unsigned: e << j.get<int64_t>(); break;
    case ordered_json::value_t::number_float: e << j.get<double>(); break;
    default: e << YAML::DoubleQuoted << j.get<std::string>(); break;
  }
}

// The modifier-level actorder that makes llm-compressor 0.14 give every group what ran
// (GPTQModifier.resolve_quantization_config: a group's null takes the modifier's value, and an
// explicit group value must equal an explicit modifier value): the groups' common value. Groups
// that differ (only our "none" alias can make them) get no modifier value and keep their own.
std::optional<quant::ActOrder> common_actorder(const RecipeModifier& m) {
  if (m.groups.empty()) return std::nullopt;
  for (const RecipeGroup& g : m.groups) {
    if (g.actorder != m.groups[0].actorder) return std::nullopt;
  }
  return m.groups[0].actorder;
}

ordered_json modifier_json(const RecipeModifier& m) {
  ordered_json j;
  if (m.kind == ModifierKind::kGptq) {
    j["dampening_frac"] = m.gptq.dampening_frac;
    j["block_size"] = m.gptq.block_size;
    if (const auto order = common_actorder(m)) {
      j["actorder"] = actorder_json(*order);
    }
  }
  j["ignore"] = m.ignore;
  ordered_json groups = ordered_json::object();
  const bool mixed = m.kind == ModifierKind::kGptq && !common_actorder(m);
  for (const RecipeGroup& g : m.groups) {
    ordered_json gj = scheme_group_json(g, g.targets, ArgsSpelling::kRecipe);
    if (mixed && g.actorder == quant::ActOrder::kNone) gj["weights"]["actorder"] = "none";  // our alias
    groups[g.name] = gj;
  }
  j["config_groups"] = groups;
  return j;
}

// dsv4-calib's GPTQ options that GPTQModifier does not have (its model forbids extra keys): in
// the calibration section, which llm-compressor never reads (only `*_stage` keys are recipes).
ordered_json gptq_extras_json(const Recipe& r) {
  for (const RecipeModifier& m : r.modifiers) {
    if (m.kind != ModifierKind::kGptq) continue;
    ordered_json j = {{"qparams", m.gptq.qparams == quant::QParamsTiming::kLazy ? "lazy" : "upfront"},
                      {"max_damping_escalations", m.gptq.max_damping_escalations}};
    // Past classic GPTQ (issue 24): written only when set, so a classic recipe's resolved text,
    // its hash and its artifact's bytes stay as they were.
    const quant::GptqOptions classic;
    if (m.gptq.scale_search != classic.scale_search) j["scale_search"] = quant::scale_search_name(m.gptq.scale_search);
    if (m.gptq.refine_passes != classic.refine_passes) j["refine_passes"] = m.gptq.refine_passes;
    if (m.gptq.asymmetric != classic.asymmetric) j["asymmetric"] = m.gptq.asymmetric;
    return j;
  }
  return nullptr;
}

// The header a resolved recipe with options past classic GPTQ starts with: llm-compressor never
// reads calibration.gptq, so the same stage loaded there runs classic GPTQ. Empty for a classic
// recipe (its resolved text, and hash, unchanged).
std::string beyond_classic_note(const Recipe& r) {
  const quant::GptqOptions classic;
  for (const RecipeModifier& m : r.modifiers) {
    if (m.kind != ModifierKind::kGptq) continue;
    if (m.gptq.scale_search == classic.scale_search && m.gptq.refine_passes == classic.refine_passes &&
        m.gptq.asymmetric == classic.asymmetric) {
      return {};
    }
    return "# calibration.gptq.scale_search, refine_passes and asymmetric are dsv4-calib's own rounding options (issue 24).\n"
           "# llm-compressor's GPTQModifier has no equivalent: it loads this stage and runs classic GPTQ.\n";
  }
  return {};
}

}  // namespace

std::string recipe_to_yaml(const Recipe& r) {
  ordered_json j;
  j["model"] = {{"path", r.model}, {"tokenizer", r.tokenizer}};
  const data::DatasetOptions& d = r.dataset;
  j["dataset"] = {
      {"files", d.files},
      {"format", d.format == data::DatasetFormat::kJsonl ? "jsonl" : d.format == data::DatasetFormat::kText ? "text" : "auto"},
      {"text_unit", d.text_unit == data::TextUnit::kLine ? "line" : d.text_unit == data::TextUnit::kFile ? "file" : "paragraph"},
      {"num_samples", d.num_samples},
      {"seq_len", d.seq_len},
      {"min_len", d.min_len},
      {"seed", d.seed},
      {"chat", !d.chat ? "none" : *d.chat == data::ChatMode::kThinking ? "thinking" : "chat"},
      {"add_bos", d.add_bos},
      {"packing", d.packing},
      {"skip_malformed", d.skip_malformed}};
  j["calibration"] = {{"all_experts", r.calibration.all_experts},
                      {"propagate_error", r.calibration.propagate_error},
                      {"w2_input", r.calibration.w2_input == W2Input::kWeighted ? "weighted" : "unweighted"},
                      {"hessian_sums", r.calibration.hessian_sums == HessianSums::kFp32 ? "fp32" : "exact"},
                      {"batch_tokens", r.calibration.batch_tokens}};
  if (const ordered_json extras = gptq_extras_json(r); !extras.is_null()) j["calibration"]["gptq"] = extras;
  // Only when enabled, so other recipes' resolved text (and hash) stays as it was.
  if (r.calibration.heldout.enabled()) j["calibration"]["heldout"] = heldout_json(r.calibration.heldout);
  j["output"] = {{"dir", r.output.dir},
                 {"shard_size", std::to_string(r.output.shard_bytes)},
                 {"profile", output_profile_name(r.output.profile)}};
  // Only where it applies, so a vllm recipe's resolved text (and its hash) stays as it was.
  if (r.output.profile == OutputProfile::kAppmanaDsv4Int) {
    j["output"]["int4_scale_mode"] = int4_scale_mode_name(r.output.int4_scale_mode);
    j["output"]["wo_a"] = appmana_wo_a_name(r.output.wo_a);
  }
  if (r.output.profile == OutputProfile::kTurboquant) j["output"]["sensitive_patterns"] = r.output.sensitive_patterns;
  j["output"]["mtp_aliases"] = r.output.mtp_aliases;
  j["output"]["copy_tokenizer"] = r.output.copy_tokenizer;
  j["run"] = {{"checkpoint_every", r.run.checkpoint_every}, {"collective_timeout_s", r.run.collective_timeout_s}};
  ordered_json mods = ordered_json::object();
  for (const RecipeModifier& m : r.modifiers) mods[std::string(modifier_kind_name(m.kind))] = modifier_json(m);
  j[r.stage.empty() ? "quant_stage" : r.stage] = {{"quant_modifiers", mods}};
  YAML::Emitter e;
  emit_json(e, j);
  return beyond_classic_note(r) + std::string(e.c_str()) + "\n";
}

}  // namespace dsv4::calib

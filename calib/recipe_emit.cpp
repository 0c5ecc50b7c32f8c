// recipe_emit.cpp: Recipe -> YAML with every default written out (the artifact's recipe.yaml).
// Groups are always written as config_groups with full QuantizationArgs, so the file says what
// ran even when the input used a preset name.
#include <yaml-cpp/yaml.h>

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

ordered_json modifier_json(const RecipeModifier& m) {
  ordered_json j;
  if (m.kind == ModifierKind::kGptq) {
    j["dampening_frac"] = m.gptq.dampening_frac;
    j["block_size"] = m.gptq.block_size;
    // No modifier-level actorder: every group carries its own, which is what ran.
    j["qparams"] = m.gptq.qparams == quant::QParamsTiming::kLazy ? "lazy" : "upfront";
    j["max_damping_escalations"] = m.gptq.max_damping_escalations;
  }
  j["ignore"] = m.ignore;
  ordered_json groups = ordered_json::object();
  for (const RecipeGroup& g : m.groups) groups[g.name] = scheme_group_json(g, g.targets, ArgsSpelling::kRecipe);
  j["config_groups"] = groups;
  return j;
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
  j["output"] = {{"dir", r.output.dir},
                 {"shard_size", std::to_string(r.output.shard_bytes)},
                 {"profile", output_profile_name(r.output.profile)}};
  // Only where it applies, so a vllm recipe's resolved text (and its hash) stays as it was.
  if (r.output.profile == OutputProfile::kAppmanaDsv4Int) {
    j["output"]["int4_scale_mode"] = int4_scale_mode_name(r.output.int4_scale_mode);
  }
  j["output"]["mtp_aliases"] = r.output.mtp_aliases;
  j["output"]["copy_tokenizer"] = r.output.copy_tokenizer;
  j["run"] = {{"checkpoint_every", r.run.checkpoint_every}, {"collective_timeout_s", r.run.collective_timeout_s}};
  ordered_json mods = ordered_json::object();
  for (const RecipeModifier& m : r.modifiers) mods[std::string(modifier_kind_name(m.kind))] = modifier_json(m);
  j[r.stage.empty() ? "quant_stage" : r.stage] = {{"quant_modifiers", mods}};
  YAML::Emitter e;
  emit_json(e, j);
  return std::string(e.c_str()) + "\n";
}

}  // namespace dsv4::calib

// artifact_config.cpp: config.json with a compressed-tensors quantization_config whose targets
// vLLM resolves exactly as planned (see artifact_config.h).
#include "calib/artifact_config.h"

#include <map>
#include <set>

#include "calib/profile_appmana.h"
#include "calib/profile_turboquant.h"
#include "calib/scheme_json.h"
#include "calib/target_match.h"
#include "common/check.h"
#include "common/json_guard.h"
#include "common/log.h"
#include "model/names.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// vLLM's FusedMoE looks its experts up under these literal names.
std::string_view moe_lookup_leaf(model::LinearRole role) {
  if (role == model::LinearRole::kExpertW1) return "gate_proj";
  if (role == model::LinearRole::kExpertW3) return "up_proj";
  return "down_proj";
}

// "model.layers.12.ffn.experts.7" -> template "layers.{L}.ffn.experts.{E}" with L = 12.
struct Templated {
  std::string scope;  // everything before the last '.', numbers abstracted
  std::string leaf;
  int layer = -1;
};

Templated templated(std::string name) {
  if (name.starts_with("model.")) name = name.substr(6);
  Templated t;
  const size_t dot = name.rfind('.');
  t.leaf = dot == std::string::npos ? name : name.substr(dot + 1);
  const std::string scope = dot == std::string::npos ? "" : name.substr(0, dot);
  size_t i = 0;
  while (i < scope.size()) {
    bool replaced = false;
    for (const std::string_view key : {std::string_view("layers."), std::string_view("experts.")}) {
      if (scope.compare(i, key.size(), key) != 0 || (i > 0 && scope[i - 1] != '.')) continue;
      size_t j = i + key.size();
      size_t k = j;
      while (k < scope.size() && std::isdigit(static_cast<unsigned char>(scope[k]))) ++k;
      if (k == j) continue;
      if (key == "layers.") t.layer = std::stoi(scope.substr(j, k - j));
      t.scope.append(key).append(key == "layers." ? "{L}" : "{E}");
      i = k;
      replaced = true;
      break;
    }
    if (!replaced) t.scope.push_back(scope[i++]);
  }
  return t;
}

std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '.') out += "\\.";
    else out += c;
  }
  return out;
}

std::string join(const std::set<std::string>& parts, const char* sep) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// Anchored regexes covering exactly these names (numbers of experts generalised, layers listed
// unless all main layers are present).
std::vector<std::string> names_to_targets(const std::vector<std::string>& names, const model::ModelConfig& c) {
  std::map<std::pair<std::string, std::string>, std::set<int>> layers_of;  // (scope, leaf) -> layers
  for (const std::string& n : names) {
    const Templated t = templated(n);
    layers_of[{t.scope, t.leaf}].insert(t.layer);
  }
  std::map<std::pair<std::string, std::string>, std::set<std::string>> leaves;  // (scope, layer regex) -> leaves
  for (const auto& [key, ls] : layers_of) {
    std::string layer_re;
    if (!ls.count(-1)) {
      bool all_main = true;
      for (int l = 0; l < c.num_layers; ++l) all_main = all_main && ls.count(l);
      if (all_main && static_cast<int>(ls.size()) == c.num_layers) {
        layer_re = "\\d+";
        // \d+ would also reach MTP layers numbered after the main ones; those live under
        // `mtp_block.` or `mtp.` in every naming, so main-layer scopes cannot reach them.
      } else {
        std::set<std::string> s;
        for (int l : ls) s.insert(std::to_string(l));
        layer_re = "(?:" + join(s, "|") + ")";
      }
    }
    leaves[{key.first, layer_re}].insert(key.second);
  }
  std::vector<std::string> out;
  for (const auto& [key, ls] : leaves) {
    std::string scope = regex_escape(key.first);
    for (const auto& [ph, re] : {std::pair<std::string, std::string>{"{L}", key.second}, {"{E}", "\\d+"}}) {
      for (size_t at = scope.find(ph); at != std::string::npos; at = scope.find(ph)) scope.replace(at, ph.size(), re);
    }
    const std::string leaf_re = ls.size() == 1 ? *ls.begin() : "(?:" + join(ls, "|") + ")";
    out.push_back("re:^(?:model\\.)?" + (scope.empty() ? "" : scope + "\\.") + leaf_re + "$");
  }
  return out;
}

// The scheme part of a config group (everything but targets), key order ignored, for comparisons.
json scheme_key(const ordered_json& group) {
  json j = json::parse(group.dump());
  j.erase("targets");
  return j;
}

RecipeGroup config_group_of(const Recipe& r, const PlannedModule& m) {
  RecipeGroup g = module_group(r, m);
  g.actorder = m.scheme->gptq.actorder;  // data-free rounding has none (ModuleScheme)
  return g;
}

}  // namespace

std::vector<std::string> module_lookup_names(const PlannedModule& m, const model::NameMap& names) {
  std::vector<std::string> out{m.names.release};
  if (m.names.hf) out.push_back(*m.names.hf);
  if (const auto v = names.vllm_module(m.names.release)) {
    if (v->expert >= 0) {
      const std::string leaf(moe_lookup_leaf(m.role));
      out.push_back(v->name + ".0." + leaf);
      out.push_back(v->name + "." + std::to_string(v->expert) + "." + leaf);
    } else {
      out.push_back(v->name);
      if (v->shard >= 0) {  // the shard under vLLM's prefix: fused name's parent + release leaf
        out.push_back(v->name.substr(0, v->name.rfind('.')) + m.names.release.substr(m.names.release.rfind('.')));
      }
    }
  }
  return out;
}

ordered_json artifact_quantization_config(const Recipe& r, const ModulePlan& plan, const model::ModelConfig& c,
                                          const ordered_json& source_qc) {
  // Groups in recipe order, numbered group_0.. over those that quantize something.
  std::map<std::pair<int, int>, std::vector<std::string>> names_by_group;
  std::map<std::pair<int, int>, const PlannedModule*> first_of_group;  // (modifier, group) -> its first module
  std::vector<std::string> kept_names;
  std::set<quant::PackFormat> formats;
  const model::NameMap name_map(c);
  for (const PlannedModule& m : plan.modules) {
    std::vector<std::string> names = module_lookup_names(m, name_map);
    if (m.quantized()) {
      auto& v = names_by_group[{m.modifier, m.group}];
      v.insert(v.end(), names.begin(), names.end());
      first_of_group.emplace(std::pair{m.modifier, m.group}, &m);
    } else {
      kept_names.insert(kept_names.end(), names.begin(), names.end());
    }
  }
  ordered_json groups = ordered_json::object();
  int index = 0;
  for (const auto& [key, names] : names_by_group) {
    const RecipeGroup g = config_group_of(r, *first_of_group.at(key));  // every module of a group agrees
    if (g.actorder == quant::ActOrder::kGroup) {
      log_warn("%s: actorder group is written as \"group\", which compressed-tensors 0.19 (and the vLLM "
               "releases built on it) refuse to load ('has been removed'); use static for a servable artifact",
               g.key_path.c_str());
    }
    formats.insert(quant::quant_scheme_format(g.scheme));
    groups["group_" + std::to_string(index++)] = scheme_group_json(g, names_to_targets(names, c), ArgsSpelling::kConfigJson);
  }
  ordered_json q;
  q["config_groups"] = groups;
  q["format"] = formats.size() == 1 ? std::string(quant::pack_format_name(*formats.begin())) : "mixed-precision";
  q["global_compression_ratio"] = nullptr;
  q["ignore"] = names_to_targets(kept_names, c);
  q["kv_cache_scheme"] = nullptr;
  q["quant_method"] = "compressed-tensors";
  q["quantization_status"] = "compressed";
  // vLLM's DSV4 model reads scale_fmt unconditionally (seed_pipelines §3.2).
  q["scale_fmt"] = source_qc.is_object() && source_qc.contains("scale_fmt") ? source_qc["scale_fmt"] : ordered_json("ue8m0");
  q["sparsity_config"] = ordered_json::object();
  q["transform_config"] = ordered_json::object();
  q["version"] = kCompressedTensorsFormatVersion;

  const std::vector<std::string> bad = artifact_config_check(q, r, plan, c);
  if (!bad.empty()) {
    std::string list;
    for (size_t i = 0; i < bad.size() && i < 8; ++i) list += "\n  " + bad[i];
    DSV4_FAIL("config", "%s: vLLM cannot load this plan as written: it resolves %zu module(s) differently (vLLM "
              "fuses wq_a+wkv, compressor wkv+wgate and shared w1+w3, and serves all experts of a layer with one "
              "scheme taken from expert 0; each such set must share one recipe group):%s",
              r.origin.c_str(), bad.size(), list.c_str());
  }
  return q;
}

ordered_json artifact_config_json(const std::string& text, const Recipe& r, const ModulePlan& plan,
                                  const model::ModelConfig& c) {
  ordered_json cfg;
  try {
    cfg = json_parse<ordered_json>(text, "source config.json");
  } catch (const json::exception& e) {
    DSV4_FAIL("config", "source config.json does not parse: %s", e.what());
  }
  DSV4_CHECK_IN("config", cfg.is_object(), "source config.json is not an object");
  if (r.output.profile == OutputProfile::kAppmanaDsv4Int) return appmana_config_json(std::move(cfg), r, plan);
  if (r.output.profile == OutputProfile::kTurboquant) return turboquant_config_json(std::move(cfg));
  const ordered_json source_qc = cfg.contains("quantization_config") ? cfg["quantization_config"] : ordered_json();
  cfg["quantization_config"] = artifact_quantization_config(r, plan, c, source_qc);
  return cfg;
}

std::vector<std::string> artifact_config_check(const json& q, const Recipe& r, const ModulePlan& plan,
                                               const model::ModelConfig& c) {
  std::vector<std::string> problems;
  if (!q.is_object() || !q.contains("config_groups") || !q["config_groups"].is_object()) {
    return {"quantization_config has no config_groups object"};
  }
  struct Group {
    std::string name;
    TargetMatcher targets;
    json scheme;
  };
  std::vector<Group> groups;
  for (const auto& [name, g] : q["config_groups"].items()) {
    std::vector<std::string> t;
    if (g.contains("targets") && g["targets"].is_array()) t = g["targets"].get<std::vector<std::string>>();
    groups.push_back({name, TargetMatcher(t, "config.json quantization_config.config_groups." + name + ".targets"),
                      scheme_key(ordered_json::parse(g.dump()))});  // NOLINT: copy of an unordered group
  }
  std::vector<std::string> ignore_list;
  if (q.contains("ignore") && q["ignore"].is_array()) ignore_list = q["ignore"].get<std::vector<std::string>>();
  const TargetMatcher ignore(ignore_list, "config.json quantization_config.ignore");
  const model::NameMap name_map(c);

  for (const PlannedModule& m : plan.modules) {
    const std::optional<json> want =
        m.quantized() ? std::optional(scheme_key(scheme_group_json(config_group_of(r, m), {}, ArgsSpelling::kConfigJson)))
                      : std::nullopt;
    for (const std::string& name : module_lookup_names(m, name_map)) {
      const ModuleNames probe{name, std::nullopt, std::nullopt, {}};
      int hit = -1;
      for (size_t i = 0; i < groups.size() && hit < 0; ++i) {
        if (groups[i].targets.match(probe) >= 0) hit = static_cast<int>(i);
      }
      const bool ignored = ignore.match(probe) >= 0;
      const bool quantized = hit >= 0 && !ignored;
      std::string issue;
      if (want && !quantized) {
        issue = ignored ? "planned quantized, but ignored" : "planned quantized, but no group targets it";
      } else if (!want && quantized) {
        issue = "planned unquantized, but " + groups[static_cast<size_t>(hit)].name + " targets it";
      } else if (want && groups[static_cast<size_t>(hit)].scheme != *want) {
        issue = "resolves to " + groups[static_cast<size_t>(hit)].name + ", whose scheme differs from the plan's";
      }
      if (!issue.empty()) problems.push_back(m.names.release + " (as " + name + "): " + issue);
    }
  }
  return problems;
}

}  // namespace dsv4::calib

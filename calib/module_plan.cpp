// module_plan.cpp: recipe x inventory -> which module gets which scheme.
#include "calib/module_plan.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "calib/profile_layout.h"
#include "calib/profile_turboquant.h"
#include "common/check.h"
#include "model/names.h"
#include "quant/compressed_module.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {
namespace {

std::string describe_scheme(const PlannedModule& m, const RecipeGroup& g) {
  std::string s = g.scheme.name + " (" + g.scheme.weights.to_string();
  if (g.scheme.input_activations) s += "; acts " + g.scheme.input_activations->to_string();
  return s + ") " + profile_module_format(m);
}

// Bytes one module takes in the artifact under its scheme (weights and scales only).
uint64_t module_output_bytes(const PlannedModule& m) {
  const uint64_t n = static_cast<uint64_t>(m.rows) * static_cast<uint64_t>(m.cols);
  if (!m.quantized()) return n * 2;  // BF16 (exact decode of an FP8/FP4 source, or the BF16 as is)
  if (m.scheme->profile == OutputProfile::kTurboquant) return turboquant_module_bytes(m);
  const quant::QuantArgs& a = m.scheme->scheme.weights;
  uint64_t bytes = (n * static_cast<uint64_t>(a.num_bits) + 7) / 8;
  const uint64_t scale_bytes = dtype_size(quant::compressed_module_scale_dtype(a));
  if (a.group_size > 0) bytes += n / static_cast<uint64_t>(a.group_size) * scale_bytes;
  if (a.strategy == quant::Strategy::kChannel) bytes += static_cast<uint64_t>(m.rows) * scale_bytes;
  if (a.strategy == quant::Strategy::kBlock) {
    bytes += static_cast<uint64_t>((m.rows + 127) / 128) * static_cast<uint64_t>((m.cols + 127) / 128) * scale_bytes;
  }
  return bytes;
}

// The whole source checkpoint and the artifact (every tensor the inventory implies: a module's
// `.weight` and `.scale` become its output tensors, the rest is copied as stored, plus the MTP
// aliases), for comparing a profile's size with a published artifact's.
void artifact_size_estimate(const Recipe& recipe, const model::ModelConfig& config, int mtp_stages, ModulePlan& plan) {
  std::map<std::string, const PlannedModule*> by_name;
  for (const PlannedModule& m : plan.modules) by_name[m.names.release] = &m;
  const auto module_of = [&](const std::string& name, const char* suffix) -> const PlannedModule* {
    if (!name.ends_with(suffix)) return nullptr;
    const auto it = by_name.find(name.substr(0, name.size() - std::strlen(suffix)));
    return it == by_name.end() ? nullptr : it->second;
  };
  uint64_t embed = 0, head = 0;
  for (const model::ExpectedTensor& t : model::inventory_expected(config, mtp_stages)) {
    plan.source_bytes += t.bytes();
    if (t.name == "embed.weight") embed = t.bytes();
    if (t.name == "head.weight") head = t.bytes();
    if (const PlannedModule* m = module_of(t.name, ".weight")) {
      plan.artifact_bytes += module_output_bytes(*m);
    } else if (!module_of(t.name, ".scale")) {
      plan.artifact_bytes += t.bytes();
    }
  }
  if (recipe.output.mtp_aliases) plan.artifact_bytes += static_cast<uint64_t>(mtp_stages) * (embed + head);
}

// The Hessian serving a GPTQ module, shared as hessian_key.h's HessianInput describes.
HessianKey hessian_key_of(const PlannedModule& m, bool all_experts) {
  using model::LinearRole;
  HessianKey k;
  k.layer = m.layer;
  switch (m.role) {
    case LinearRole::kAttnWqA:
    case LinearRole::kAttnWkv:
    case LinearRole::kCompressorWkv:
    case LinearRole::kCompressorWgate:
    case LinearRole::kIndexerWeightsProj:
    case LinearRole::kIndexerCompressorWkv:
    case LinearRole::kIndexerCompressorWgate: k.input = HessianInput::kAttnInput; return k;
    case LinearRole::kAttnWqB:
    case LinearRole::kIndexerWqB: k.input = HessianInput::kQr; return k;
    case LinearRole::kSharedW1:
    case LinearRole::kSharedW3: k.input = HessianInput::kSharedW13; return k;
    case LinearRole::kExpertW1:
    case LinearRole::kExpertW3:
      k.input = HessianInput::kExpertW13;
      k.expert = all_experts ? HessianKey::kAllExperts : m.expert;
      return k;
    default:
      k.input = HessianInput::kOwn;
      k.role = m.role;
      k.expert = m.expert;
      return k;
  }
}

// The scheme a module gets from its modifier and group.
ModuleScheme scheme_resolve(const PlannedModule& m, const RecipeModifier& mod, const RecipeGroup& g,
                            bool all_experts) {
  ModuleScheme s;
  s.kind = mod.kind;
  s.scheme = g.scheme;
  s.format = quant::quant_scheme_format(g.scheme);
  s.gptq = mod.gptq;
  s.gptq.actorder = mod.kind == ModifierKind::kGptq ? g.actorder : quant::ActOrder::kNone;
  s.static_acts = g.scheme.input_activations && quant::activation_needs_calibration(*g.scheme.input_activations);
  s.hessian = hessian_key_of(m, all_experts);
  s.key_path = g.key_path;
  return s;
}

}  // namespace

const RecipeGroup& module_group(const Recipe& r, const PlannedModule& m) {
  DSV4_CHECK_IN("plan", m.quantized() && m.modifier < static_cast<int>(r.modifiers.size()),
                "%s is not quantized by this recipe", m.names.release.c_str());
  return r.modifiers[static_cast<size_t>(m.modifier)].groups[static_cast<size_t>(m.group)];
}

ModulePlan module_plan_build(const Recipe& recipe, const model::ModelConfig& config, int mtp_stages) {
  const model::NameMap names(config);
  ModulePlan plan;
  for (const model::ExpectedTensor& t : model::inventory_expected(config, mtp_stages)) {
    if (!t.name.ends_with(".weight")) continue;
    const std::string module = t.name.substr(0, t.name.size() - 7);
    // The Linears (recipe targets) are the names with a role; the router `ffn.gate` has none.
    const std::optional<model::LinearRole> role = model::linear_role_parse(module);
    if (!role) continue;
    PlannedModule m;
    m.names.release = module;
    m.role = *role;
    m.names.hf = names.hf_module(module);
    if (const auto v = names.vllm_module(module)) m.names.vllm = v->name;
    m.names.classes = m.role == model::LinearRole::kAttnWoA
                          ? std::vector<std::string>{"DeepseekV4GroupedLinear", "Linear"}
                          : std::vector<std::string>{"Linear"};
    m.family = model::tensor_family(module);
    m.layer = t.layer;
    m.expert = t.expert;
    m.rows = t.logical_shape[0];
    m.cols = t.logical_shape[1];
    m.source = t.encoding;
    plan.modules.push_back(std::move(m));
  }

  // One matcher per target list and per ignore list; hit counts feed the warnings.
  struct ModMatch {
    TargetMatcher ignore;
    std::vector<TargetMatcher> groups;
    std::vector<int64_t> ignore_hits;
    std::vector<std::vector<int64_t>> target_hits;
  };
  std::vector<ModMatch> mm;
  for (const RecipeModifier& mod : recipe.modifiers) {
    ModMatch x{TargetMatcher(mod.ignore, recipe.origin + ": " + mod.key_path + ".ignore"), {}, {}, {}};
    x.ignore_hits.assign(mod.ignore.size(), 0);
    for (const RecipeGroup& g : mod.groups) {
      x.groups.emplace_back(g.targets, recipe.origin + ": " + g.key_path + " targets");
      x.target_hits.emplace_back(g.targets.size(), 0);
    }
    mm.push_back(std::move(x));
  }

  for (PlannedModule& m : plan.modules) {
    for (size_t i = 0; i < recipe.modifiers.size(); ++i) {
      const RecipeModifier& mod = recipe.modifiers[i];
      int group = -1, entry = -1;
      for (size_t g = 0; g < mm[i].groups.size() && group < 0; ++g) {
        entry = mm[i].groups[g].match(m.names);
        if (entry >= 0) group = static_cast<int>(g);
      }
      if (group < 0) continue;
      const int ig = mm[i].ignore.match(m.names);
      if (ig >= 0) {  // ignore wins over targets
        ++mm[i].ignore_hits[static_cast<size_t>(ig)];
        if (m.kept_reason.empty()) m.kept_reason = "ignored by " + mod.key_path + ".ignore '" + mod.ignore[static_cast<size_t>(ig)] + "'";
        continue;
      }
      ++mm[i].target_hits[static_cast<size_t>(group)][static_cast<size_t>(entry)];
      const RecipeGroup& rg = mod.groups[static_cast<size_t>(group)];
      DSV4_USER_CHECK("recipe", !m.quantized(),
                      "%s: module %s is targeted by both %s and %s; a module can be quantized once "
                      "(narrow the targets or add it to one modifier's ignore)",
                      recipe.origin.c_str(), m.names.release.c_str(),
                      m.quantized() ? m.scheme->key_path.c_str() : "", rg.key_path.c_str());
      const quant::QuantArgs& a = rg.scheme.weights;
      // turboquant pads a row to whole groups with zeros, as upstream does.
      if ((a.strategy == quant::Strategy::kGroup || a.strategy == quant::Strategy::kTensorGroup) &&
          recipe.output.profile != OutputProfile::kTurboquant) {
        DSV4_USER_CHECK("recipe", m.cols % a.group_size == 0,
                        "%s: %s: group_size %d does not divide the %lld input features of %s [%lld, %lld]",
                        recipe.origin.c_str(), rg.key_path.c_str(), a.group_size, static_cast<long long>(m.cols),
                        m.names.release.c_str(), static_cast<long long>(m.rows), static_cast<long long>(m.cols));
      }
      const quant::PackFormat format = quant::quant_scheme_format(rg.scheme);
      if (format == quant::PackFormat::kNvfp4PackQuantized || format == quant::PackFormat::kMxfp4PackQuantized) {
        DSV4_USER_CHECK("recipe", m.cols % 2 == 0,
                        "%s: %s: %s has an odd number of input features (%lld) for FP4 packing",
                        recipe.origin.c_str(), rg.key_path.c_str(), m.names.release.c_str(),
                        static_cast<long long>(m.cols));
      }
      m.modifier = static_cast<int>(i);
      m.group = group;
      m.scheme = scheme_resolve(m, mod, rg, recipe.calibration.all_experts);
      m.scheme->profile = recipe.output.profile;
      m.scheme->int4_scale_mode = recipe.output.int4_scale_mode;
      m.kept_reason.clear();
    }
    if (!m.quantized() && m.kept_reason.empty()) m.kept_reason = "not targeted";
  }
  output_profile_check(recipe, plan);

  for (size_t i = 0; i < recipe.modifiers.size(); ++i) {
    const RecipeModifier& mod = recipe.modifiers[i];
    for (size_t g = 0; g < mod.groups.size(); ++g) {
      for (size_t e = 0; e < mod.groups[g].targets.size(); ++e) {
        if (mm[i].target_hits[g][e] == 0) {
          plan.warnings.push_back(mod.groups[g].key_path + " target '" + mod.groups[g].targets[e] +
                                  "' matches no module that is not ignored");
        }
      }
    }
    for (size_t e = 0; e < mod.ignore.size(); ++e) {
      if (mm[i].ignore_hits[e] == 0) {
        plan.warnings.push_back(mod.key_path + ".ignore '" + mod.ignore[e] + "' matches no targeted module");
      }
    }
  }

  artifact_size_estimate(recipe, config, mtp_stages, plan);
  // Hessians of one layer: one per distinct HessianKey of its GPTQ modules (wo_a: one per group).
  std::map<int, std::map<HessianKey, int64_t>> per_layer;
  for (const PlannedModule& m : plan.modules) {
    plan.output_bytes += module_output_bytes(m);
    if (!m.quantized() || !m.scheme->gptq_solved()) continue;
    const int64_t groups = m.role == model::LinearRole::kAttnWoA ? config.o_groups : 1;
    per_layer[m.layer][m.scheme->hessian] = groups * m.cols * m.cols * 4;
  }
  for (const auto& [layer, hs] : per_layer) {
    int64_t sum = 0;
    for (const auto& [k, b] : hs) sum += b;
    plan.hessian_bytes_peak_layer = std::max(plan.hessian_bytes_peak_layer, sum);
  }
  return plan;
}

std::string module_plan_table(const Recipe& recipe, const ModulePlan& plan) {
  struct Row {
    int64_t count = 0;
    std::string shape, source, action;
  };
  std::vector<std::string> order;
  std::map<std::string, Row> rows;
  for (const PlannedModule& m : plan.modules) {
    const std::string action = m.quantized()
                                   ? std::string(modifier_kind_name(m.scheme->kind)) + " " +
                                         describe_scheme(m, module_group(recipe, m))
                                   : "kept BF16: " + m.kept_reason;
    const std::string key = m.family + "|" + action;
    if (!rows.count(key)) {
      order.push_back(key);
      rows[key].shape = "[" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "]";
      rows[key].source = m.source == model::TensorEncoding::kFp8Block ? "fp8" : m.source == model::TensorEncoding::kMxfp4 ? "mxfp4" : "bf16";
      rows[key].action = action;
    }
    ++rows[key].count;
  }
  std::string out = strfmt("%-44s %7s %-14s %-6s %s\n", "module family", "count", "shape", "source", "action");
  int64_t quantized = 0;
  for (const PlannedModule& m : plan.modules) quantized += m.quantized();
  for (const std::string& key : order) {
    const Row& r = rows[key];
    out += strfmt("%-44s %7lld %-14s %-6s %s\n", key.substr(0, key.find('|')).c_str(),
                  static_cast<long long>(r.count), r.shape.c_str(), r.source.c_str(), r.action.c_str());
  }
  out += strfmt("modules: %zu Linear, %lld quantized, %lld kept\n", plan.modules.size(),
                static_cast<long long>(quantized), static_cast<long long>(plan.modules.size()) - quantized);
  out += strfmt("estimate: Linear weights in the artifact %.3f GB; peak Hessian memory per layer %.3f GB (fp32)\n",
                static_cast<double>(plan.output_bytes) / 1e9, static_cast<double>(plan.hessian_bytes_peak_layer) / 1e9);
  out += strfmt("estimate: artifact %.2f GB from %.2f GB of source (%s profile; %.4f of the source)\n",
                static_cast<double>(plan.artifact_bytes) / 1e9, static_cast<double>(plan.source_bytes) / 1e9,
                std::string(output_profile_name(recipe.output.profile)).c_str(),
                plan.source_bytes ? static_cast<double>(plan.artifact_bytes) / static_cast<double>(plan.source_bytes) : 0.0);
  for (const std::string& w : plan.warnings) out += "warning: " + w + "\n";
  return out;
}

nlohmann::ordered_json module_plan_json(const Recipe& recipe, const ModulePlan& plan) {
  nlohmann::ordered_json j;
  nlohmann::ordered_json mods = nlohmann::ordered_json::array();
  int64_t quantized = 0;
  for (const PlannedModule& m : plan.modules) {
    nlohmann::ordered_json e;
    e["module"] = m.names.release;
    e["family"] = m.family;
    e["shape"] = {m.rows, m.cols};
    if (m.quantized()) {
      ++quantized;
      const RecipeGroup& g = module_group(recipe, m);
      e["modifier"] = std::string(modifier_kind_name(m.scheme->kind));
      e["group"] = g.name;
      e["scheme"] = g.scheme.name;
      e["format"] = profile_module_format(m);
    } else {
      e["kept"] = m.kept_reason;
    }
    mods.push_back(std::move(e));
  }
  j["modules"] = std::move(mods);
  j["quantized"] = quantized;
  j["kept"] = static_cast<int64_t>(plan.modules.size()) - quantized;
  j["output_linear_bytes"] = plan.output_bytes;
  j["artifact_bytes"] = plan.artifact_bytes;
  j["source_bytes"] = plan.source_bytes;
  j["hessian_bytes_peak_layer"] = plan.hessian_bytes_peak_layer;
  j["warnings"] = plan.warnings;
  return j;
}

std::vector<HessianId> module_hessian_ids(const PlannedModule& module, int o_groups) {
  DSV4_CHECK_IN("calib", module.scheme && module.scheme->gptq_solved(), "%s is not solved by GPTQ",
                module.names.release.c_str());
  if (module.role != model::LinearRole::kAttnWoA) return {HessianId{module.scheme->hessian}};
  std::vector<HessianId> ids;
  for (int g = 0; g < o_groups; ++g) ids.push_back({module.scheme->hessian, g});
  return ids;
}

}  // namespace dsv4::calib

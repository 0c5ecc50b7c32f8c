// profile_layout.cpp: per-profile module tensors and the recipe check (see profile_layout.h).
#include "calib/profile_layout.h"

#include "calib/profile_appmana.h"
#include "calib/profile_turboquant.h"
#include "common/check.h"

namespace dsv4::calib {
namespace {

std::string scheme_text(const PlannedModule& m) {
  if (!m.quantized()) return "kept unquantized";
  std::string s = m.scheme->key_path + " quantizes it (" + m.scheme->scheme.weights.to_string();
  if (m.scheme->scheme.input_activations) s += "; acts " + m.scheme->scheme.input_activations->to_string();
  return s + ")";
}

// turboquant: tq_config.json holds one group size, a width and at most one sensitive width, and
// its loader picks a module's width by output.sensitive_patterns (substrings of the name).
void turboquant_profile_check(const Recipe& r, const ModulePlan& plan) {
  const PlannedModule* first = nullptr;
  for (const PlannedModule& m : plan.modules) {
    if (!m.quantized()) continue;
    if (!first) first = &m;
    DSV4_USER_CHECK("recipe", m.scheme->scheme.weights.group_size == first->scheme->scheme.weights.group_size,
                    "%s: output.profile turboquant writes one group_size (tq_config.json), but %s (%s) has %lld "
                    "and %s (%s) %lld",
                    r.origin.c_str(), first->names.release.c_str(), first->scheme->key_path.c_str(),
                    static_cast<long long>(first->scheme->scheme.weights.group_size), m.names.release.c_str(),
                    m.scheme->key_path.c_str(), static_cast<long long>(m.scheme->scheme.weights.group_size));
  }
  const std::vector<std::string> bad = turboquant_config_resolve_check(turboquant_tq_config(r, plan), plan);
  DSV4_USER_CHECK("recipe", bad.empty(),
                  "%s: output.profile turboquant: turboquant's loader takes tq_config.json's bits, or sensitive_bits "
                  "for names containing one of output.sensitive_patterns, so the recipe may use two widths, the "
                  "second exactly on the modules those patterns match; %s (%zu modules)",
                  r.origin.c_str(), bad.front().c_str(), bad.size());
}

}  // namespace

std::string profile_cannot_store(OutputProfile p, const PlannedModule& m, const OutputSection& out) {
  switch (p) {
    case OutputProfile::kVllm: return "";  // every scheme quant/ solves has a compressed-tensors layout
    case OutputProfile::kAppmanaDsv4Int: return appmana_cannot_store(m, out.wo_a);
    case OutputProfile::kTurboquant: return turboquant_cannot_store(m);
  }
  return "unknown profile";
}

void output_profile_check(const Recipe& r, const ModulePlan& plan) {
  const std::string profile(output_profile_name(r.output.profile));
  int dense_strategy = -1;  // appmana: the first INT8 module's strategy
  for (const PlannedModule& m : plan.modules) {
    const std::string why = profile_cannot_store(r.output.profile, m, r.output);
    if (!why.empty()) {
      std::string able;
      for (OutputProfile p : kOutputProfiles) {
        if (profile_cannot_store(p, m, r.output).empty()) {
          able += (able.empty() ? "" : ", ") + std::string(output_profile_name(p));
        }
      }
      DSV4_USER_FAIL("recipe", "%s: output.profile %s cannot store %s as %s: %s; profiles that can store it: %s",
                     r.origin.c_str(), profile.c_str(), m.names.release.c_str(), scheme_text(m).c_str(), why.c_str(),
                     able.empty() ? "none" : able.c_str());
    }
    if (r.output.profile != OutputProfile::kAppmanaDsv4Int || !m.quantized() ||
        model::linear_role_is_routed_expert(m.role)) {
      continue;
    }
    const int s = static_cast<int>(m.scheme->scheme.weights.strategy);
    DSV4_USER_CHECK("recipe", dense_strategy < 0 || dense_strategy == s,
                    "%s: output.profile %s writes one INT8 mode for all dense linears (config.json's "
                    "linears_w8a16 group), but %s (%s) differs from the first INT8 module's strategy; use channel "
                    "or block for all",
                    r.origin.c_str(), profile.c_str(), m.names.release.c_str(), m.scheme->key_path.c_str());
    dense_strategy = s;
  }
  const bool has_mtp = !plan.modules.empty() && plan.modules.back().names.release.starts_with("mtp.");
  DSV4_USER_CHECK("recipe", r.output.profile != OutputProfile::kAppmanaDsv4Int || r.output.mtp_aliases || !has_mtp,
                  "%s: output.profile %s materialises the MTP stages' embed/head copies in %s, as the fork's "
                  "pipeline-parallel MTP loader needs; set output.mtp_aliases: true",
                  r.origin.c_str(), profile.c_str(), kAppmanaMtpSharedShard);
  if (r.output.profile == OutputProfile::kTurboquant) turboquant_profile_check(r, plan);
}

std::string profile_module_format(const PlannedModule& m) {
  const ModuleScheme& s = *m.scheme;
  if (s.profile == OutputProfile::kAppmanaDsv4Int) return appmana_module_format(m);
  if (s.profile == OutputProfile::kTurboquant) return turboquant_module_format(m);
  return std::string(quant::pack_format_name(s.format));
}

std::vector<quant::EncodedTensor> profile_module_layout(const PlannedModule& m, bool with_g_idx) {
  const ModuleScheme& s = *m.scheme;
  if (s.profile == OutputProfile::kAppmanaDsv4Int) return appmana_module_layout(m);
  if (s.profile == OutputProfile::kTurboquant) return turboquant_module_layout(m);
  return quant::compressed_module_layout(s.format, s.scheme.weights, m.rows, m.cols, with_g_idx);
}

std::vector<quant::EncodedTensor> profile_module_encode(const PlannedModule& m, const quant::QParams& qparams,
                                                        const std::vector<int32_t>& codes,
                                                        const std::vector<int32_t>& g_idx) {
  const ModuleScheme& s = *m.scheme;
  if (s.profile == OutputProfile::kAppmanaDsv4Int) return appmana_module_encode(m, qparams, codes);
  if (s.profile == OutputProfile::kTurboquant) return turboquant_module_encode(m, qparams, codes);
  return quant::compressed_module_encode(s.format, s.scheme.weights, qparams, codes, g_idx, m.rows, m.cols);
}

}  // namespace dsv4::calib

// output_profile.cpp: profile names (see output_profile.h).
#include "calib/output_profile.h"

#include "common/check.h"
#include "common/suggest.h"

namespace dsv4::calib {

std::string_view output_profile_name(OutputProfile p) {
  switch (p) {
    case OutputProfile::kVllm: return "vllm";
    case OutputProfile::kAppmanaDsv4Int: return "appmana-dsv4-int";
    case OutputProfile::kTurboquant: return "turboquant";
  }
  return "?";
}

std::optional<OutputProfile> output_profile_from_name(std::string_view name) {
  for (OutputProfile p : kOutputProfiles) {
    if (output_profile_name(p) == name) return p;
  }
  return std::nullopt;
}

std::vector<std::string> output_profile_names() {
  std::vector<std::string> out;
  for (OutputProfile p : kOutputProfiles) out.emplace_back(output_profile_name(p));
  return out;
}

OutputProfile output_profile_parse(std::string_view name, std::string_view where) {
  if (const auto p = output_profile_from_name(name)) return *p;
  std::string known;
  for (const std::string& n : output_profile_names()) known += (known.empty() ? "" : ", ") + n;
  const std::string near = suggest_nearest(std::string(name), output_profile_names());
  DSV4_USER_FAIL("recipe", "%.*s: unknown output profile '%.*s'%s; the profiles are %s",
                 static_cast<int>(where.size()), where.data(), static_cast<int>(name.size()), name.data(),
                 near.empty() ? "" : (" (did you mean " + near + "?)").c_str(), known.c_str());
}

std::string_view appmana_wo_a_name(AppmanaWoA w) { return w == AppmanaWoA::kInt8 ? "int8" : "bf16"; }

std::string_view int4_scale_mode_name(Int4ScaleMode m) {
  switch (m) {
    case Int4ScaleMode::kAbsmax7: return "absmax7";
    case Int4ScaleMode::kAbsmax8: return "absmax8";
    case Int4ScaleMode::kMse: return "mse";
  }
  return "?";
}

}  // namespace dsv4::calib

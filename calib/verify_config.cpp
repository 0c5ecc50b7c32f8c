// verify_config.cpp: the `config` check (verify.h): every source key of config.json kept with its
// value and none added, the quantization_config invariants of compressed-tensors (method, status,
// formats, scale_fmt), compressed-tensors' own validators (ct_rules.h), and artifact_config_check:
// vLLM resolves every module to the plan's scheme.
#include "calib/verify_check.h"

#include <algorithm>
#include <set>

#include "calib/artifact_config.h"
#include "calib/ct_rules.h"
#include "calib/profile_appmana.h"
#include "calib/profile_turboquant.h"
#include "common/check.h"
#include "common/json_guard.h"
#include "common/fs.h"

namespace dsv4::calib::verify_detail {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// appmana-dsv4-int: config.json is exactly the source's with the fork's keys (profile_appmana.h),
// and the fork's glob targets give every quantized module the group of its bit width.
void appmana_config_check(const Expected& e, const ordered_json& a, const ordered_json& s, VerifyCheck& c) {
  const ordered_json want = appmana_config_json(s, e.recipe, e.plan);
  for (const auto& [key, value] : want.items()) {
    if (!a.contains(key)) note_fail(c, key + ": missing (expected " + json_excerpt(value) + ")");
    else if (a[key] != value) note_fail(c, key + ": " + json_excerpt(a[key]) + ", expected " + json_excerpt(value));
    else note_ok(c);
  }
  for (const auto& [key, value] : a.items()) {
    if (!want.contains(key)) note_fail(c, key + ": not expected in an appmana-dsv4-int config");
  }
  for (const std::string& b : appmana_config_resolve_check(a.value("quantization_config", ordered_json()), e.plan)) {
    note_fail(c, "the fork resolves " + b);
  }
  finish(c, strfmt("%zu keys as the dsv4_int converter writes them, %zu modules resolved", want.size(),
                   e.plan.modules.size()));
}

// turboquant: config.json is exactly the source's without quantization_config (upstream's
// _write_raw_source_config_json), and tq_config.json is the plan's, resolving every module's width.
void turboquant_config_check(const Expected& e, const std::string& art_dir, const ordered_json& a,
                             const ordered_json& s, VerifyCheck& c) {
  const ordered_json want = turboquant_config_json(s);
  if (a != want) {
    for (const auto& [key, value] : want.items()) {
      if (!a.contains(key) || a[key] != value) note_fail(c, key + ": " + (a.contains(key) ? json_excerpt(a[key]) : "missing") + ", expected " + json_excerpt(value));
    }
    for (const auto& [key, value] : a.items()) {
      if (!want.contains(key)) note_fail(c, key + ": not expected (turboquant's config.json is the source's without quantization_config)");
    }
  } else {
    note_ok(c);
  }
  ordered_json tq;
  try {
    tq = json_parse<ordered_json>(read_file(art_dir + "/" + kTqConfigFile), art_dir + "/" + kTqConfigFile);
  } catch (const std::exception& ex) {
    note_fail(c, clip(ex.what(), 200));
    finish(c, std::string(kTqConfigFile) + " missing or unreadable");
    return;
  }
  const ordered_json tq_want = turboquant_tq_config(e.recipe, e.plan);
  if (tq != tq_want) note_fail(c, std::string(kTqConfigFile) + ": " + json_excerpt(tq) + ", expected " + json_excerpt(tq_want));
  else note_ok(c);
  for (const std::string& b : turboquant_config_resolve_check(tq, e.plan)) note_fail(c, "turboquant's loader: " + b);
  finish(c, strfmt("config.json = the source's without quantization_config; %s as the plan, %zu modules resolved",
                   kTqConfigFile, e.plan.modules.size()));
}

}  // namespace

void config_check(const Expected& e, const std::string& art_dir, const std::string& src_dir, VerifyCheck& c) {
  ordered_json a, s;
  try {
    a = json_parse<ordered_json>(read_file(art_dir + "/config.json"), art_dir + "/config.json");
    s = json_parse<ordered_json>(read_file(src_dir + "/config.json"), src_dir + "/config.json");
  } catch (const std::exception& ex) {
    note_fail(c, clip(ex.what(), 200));
    finish(c, "config.json does not parse");
    return;
  }
  if (e.recipe.output.profile == OutputProfile::kAppmanaDsv4Int) return appmana_config_check(e, a, s, c);
  if (e.recipe.output.profile == OutputProfile::kTurboquant) return turboquant_config_check(e, art_dir, a, s, c);
  for (const auto& [key, value] : s.items()) {
    if (key == "quantization_config") continue;
    if (!a.contains(key)) note_fail(c, key + ": missing (the source has " + json_excerpt(value) + ")");
    else if (a[key] != value) note_fail(c, key + ": " + json_excerpt(a[key]) + ", the source has " + json_excerpt(value));
    else note_ok(c);
  }
  for (const auto& [key, value] : a.items()) {
    if (key != "quantization_config" && !s.contains(key)) note_fail(c, key + ": not in the source config");
  }
  if (!a.contains("quantization_config") || !a["quantization_config"].is_object()) {
    note_fail(c, "quantization_config: missing");
    finish(c, "no quantization_config");
    return;
  }
  const ordered_json& q = a["quantization_config"];
  const auto expect_str = [&](const char* key, const std::string& want) {
    if (!q.contains(key) || !q[key].is_string()) note_fail(c, strfmt("quantization_config.%s: missing", key));
    else if (!want.empty() && q[key].get<std::string>() != want)
      note_fail(c, strfmt("quantization_config.%s: %s, expected \"%s\"", key, json_excerpt(q[key]).c_str(), want.c_str()));
    else note_ok(c);
  };
  expect_str("quant_method", "compressed-tensors");
  expect_str("quantization_status", "compressed");
  expect_str("scale_fmt", "");
  std::set<std::string> formats;
  if (!q.contains("config_groups") || !q["config_groups"].is_object() || q["config_groups"].empty()) {
    note_fail(c, "quantization_config.config_groups: missing or empty");
  } else {
    for (const auto& [name, g] : q["config_groups"].items()) {
      if (!g.is_object() || !g.contains("format") || !g["format"].is_string()) {
        note_fail(c, "quantization_config.config_groups." + name + ".format: missing");
      } else {
        formats.insert(g["format"].get<std::string>());
        note_ok(c);
      }
    }
  }
  if (!formats.empty()) expect_str("format", formats.size() == 1 ? *formats.begin() : "mixed-precision");
  // What the consumer's pydantic models refuse fails here, whatever our own reader accepts.
  const std::vector<CtViolation> refused = ct_quantization_config_violations(json::parse(q.dump()));
  for (const CtViolation& v : refused) {
    note_fail(c, strfmt("compressed-tensors %s refuses quantization_config.%s: %s [rule %s]", kCtRulesVersion,
                        v.where.c_str(), v.message.c_str(), v.rule.c_str()));
  }
  if (refused.empty()) note_ok(c);
  const std::vector<std::string> bad = artifact_config_check(json::parse(q.dump()), e.recipe, e.plan, e.config);
  for (const std::string& b : bad) note_fail(c, "vLLM resolves " + b);
  c.checked += static_cast<int64_t>(e.plan.modules.size() - std::min(bad.size(), e.plan.modules.size()));
  finish(c, strfmt("%zu source keys, %zu config groups, %zu modules resolved", s.size(),
                   q.contains("config_groups") ? q["config_groups"].size() : size_t{0}, e.plan.modules.size()));
}

}  // namespace dsv4::calib::verify_detail

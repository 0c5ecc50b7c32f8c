// artifact_config.h: the artifact's config.json: the source config with every key kept and its
// `quantization_config` replaced by a compressed-tensors one (gptq_and_formats.md §3.1, §3.4-3.5;
// DESIGN §3), and the check that vLLM's scheme lookup over it gives every module the scheme the
// plan gave it.
//
//   nlohmann::ordered_json cfg = artifact_config_json(source_config_text, recipe, plan, config);
//   std::vector<std::string> bad = artifact_config_check(cfg["quantization_config"], plan, config);
//
// Targets are generated, not copied from the recipe, because vLLM looks modules up by its own
// names: fused `attn.fused_wqa_wkv` / `compressor.fused_wkv_wgate` / `shared_experts.gate_up_proj`
// (and their shard names), the literal `<layer>.ffn.experts.0.gate_proj|up_proj|down_proj` for a
// FusedMoE, `model.`-prefixed layers, MTP layers renumbered to `model.layers.{N+S}.mtp_block.*`.
// Each group's targets are anchored regexes over the exact layers and leaves it quantizes, in
// the release, transformers and vLLM spellings; `ignore` lists the unquantized Linears the same
// way. Because vLLM requires every shard of a fused module and every expert of a FusedMoE to
// share one scheme, a plan that splits them is an error here (before any work is done).
// Tests: tests/calib/test_artifact_config.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "calib/module_plan.h"
#include "model/config.h"
#include "model/names.h"

namespace dsv4::calib {

// The compressed-tensors release whose config and tensor format this artifact follows.
inline constexpr const char* kCompressedTensorsFormatVersion = "0.19.0";

nlohmann::ordered_json artifact_quantization_config(const Recipe& recipe, const ModulePlan& plan,
                                                    const model::ModelConfig& config,
                                                    const nlohmann::ordered_json& source_quantization_config);

// source_config_text: the source config.json as read (key order and every key are kept).
nlohmann::ordered_json artifact_config_json(const std::string& source_config_text, const Recipe& recipe,
                                            const ModulePlan& plan, const model::ModelConfig& config);

// Every name vLLM, transformers or our loader look a module up by (release, transformers, vLLM
// module, fused shard names, the FusedMoE's expert-0 names).
std::vector<std::string> module_lookup_names(const PlannedModule& module, const model::NameMap& names);

// Resolves every planned module through quantization_config's targets and ignore as vLLM does
// (first group whose targets match any lookup name; ignore wins) and returns one line per module
// whose result differs from the plan (empty: consistent).
std::vector<std::string> artifact_config_check(const nlohmann::json& quantization_config, const Recipe& recipe,
                                               const ModulePlan& plan, const model::ModelConfig& config);

}  // namespace dsv4::calib

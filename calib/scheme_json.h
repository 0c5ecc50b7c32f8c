// scheme_json.h: a config group as compressed-tensors serializes a QuantizationScheme (the dict
// under quantization_config.config_groups.group_N, gptq_and_formats.md §3.1/§3.5): targets,
// weights and input_activations as QuantizationArgs dumps, output_activations null, format.
// The same dump goes into the artifact's config.json and the resolved recipe.yaml, so the two
// can never disagree.
//
//   nlohmann::ordered_json g = scheme_group_json(group, targets_for_vllm);
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "calib/recipe.h"

namespace dsv4::calib {

// Where the two spellings differ: e8m0 scales on a non-MX strategy (FP8 block with the release's
// power-of-two scales) are stored as FP32 (the dtype vLLM's block-FP8 kernels take; see
// quant/pack.h), so config.json says scale_dtype "torch.float32", what is on disk, while the
// recipe says "torch.float8_e8m0fnu" (llm-compressor's spelling of the power-of-two rule) so that
// reading it back gives the same args.
enum class ArgsSpelling : uint8_t { kConfigJson, kRecipe };

// "weight" (kStatic), null (kNone), or the removed "group" (kGroup; see scheme_json.cpp).
nlohmann::ordered_json actorder_json(quant::ActOrder actorder);
nlohmann::ordered_json quant_args_json(const quant::QuantArgs& args, quant::ActOrder actorder,
                                       ArgsSpelling spelling);
nlohmann::ordered_json activation_args_json(const quant::ActivationArgs& args);
// `targets` replaces the group's own targets (config.json expands them to vLLM's names).
nlohmann::ordered_json scheme_group_json(const RecipeGroup& group, const std::vector<std::string>& targets,
                                         ArgsSpelling spelling);

}  // namespace dsv4::calib

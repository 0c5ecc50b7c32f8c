// recipe_quant_args.h: compressed-tensors QuantizationArgs (gptq_and_formats.md §2.2) read from a
// recipe's `weights:` / `input_activations:` mapping into quant::QuantArgs / quant::ActivationArgs,
// with compressed-tensors' inference rules (strategy from group_size, observer spellings, the
// scale dtype implied by NVFP4/MX) and errors naming the key path.
//
//   YamlReader w = group.child("weights");
//   std::optional<quant::ActOrder> order;
//   quant::QuantArgs args = recipe_weights_parse(w, &order);
#pragma once

#include <optional>

#include "calib/yaml_reader.h"
#include "quant/gptq.h"
#include "quant/quant_args.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {

// *actorder gets the args' `actorder` when written (weight/static -> kStatic; "none", our old
// spelling, -> kNone; null/false -> nothing, so the modifier's value applies, as in
// llm-compressor; the spellings compressed-tensors 0.19 removed, group/dynamic/true, are read as
// weight with a warning: see recipe_quant_args.cpp).
quant::QuantArgs recipe_weights_parse(YamlReader& r, std::optional<quant::ActOrder>* actorder);
quant::ActivationArgs recipe_activations_parse(YamlReader& r);
// A value the quant/ rules refuse, as a user error at `r`'s key path plus the problem's field:
// "FILE: ...weights.num_bits: expected 2 to 8 bits for int weights, got 9". Nothing when valid.
void recipe_args_check(const YamlReader& r, const quant::ArgsProblem& problem);
// A modifier-level actorder: nothing when the key is absent (llm-compressor's default, "static"),
// kNone for null/false/none, kStatic for weight/static (and the removed spellings, as above).
std::optional<quant::ActOrder> recipe_actorder_parse(YamlReader& r, const std::string& key);

}  // namespace dsv4::calib

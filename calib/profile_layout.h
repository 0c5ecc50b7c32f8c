// profile_layout.h: one planned module's tensors in the output profile its scheme is written in
// (output_profile.h): the seam between a solved module (codes, qparams, dequantized weight) and
// its bytes on disk. vllm goes to quant/compressed_module.h, appmana-dsv4-int to
// calib/profile_appmana.h.
//
//   output_profile_check(recipe, plan);                 // module_plan_build runs it
//   auto layout = profile_module_layout(m, with_g_idx); // names, dtypes, shapes (bytes empty)
//   auto tensors = profile_module_encode(m, qparams, codes, g_idx);
//
// Tests: tests/calib/test_output_profile.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "calib/module_plan.h"
#include "calib/output_profile.h"
#include "calib/recipe.h"
#include "quant/compressed_module.h"

namespace dsv4::calib {

// Why `profile` cannot store module m as planned ("" when it can), with the recipe's output keys.
std::string profile_cannot_store(OutputProfile profile, const PlannedModule& m, const OutputSection& out);

// A user error, before any work, for the first module the recipe's output.profile cannot store:
// it names the recipe file and key, the module, the recipe group that quantizes it, why, and the
// profiles that can store it. Also: appmana-dsv4-int needs one INT8 mode for all its dense
// linears (its config has one group) and output.mtp_aliases (it materialises the MTP shared
// tensors).
void output_profile_check(const Recipe& recipe, const ModulePlan& plan);

// How the module is stored, for `plan`: the compressed-tensors format name ("pack-quantized"), or
// the profile's own ("dsv4_int int4 uint4b8 + bf16/32, mse scales").
std::string profile_module_format(const PlannedModule& m);

// The weight tensors only (a static activation scheme's input scales follow them in the vllm
// profile: quant_scheme.h's activation_layout / activation_encode).
std::vector<quant::EncodedTensor> profile_module_layout(const PlannedModule& m, bool with_g_idx);
std::vector<quant::EncodedTensor> profile_module_encode(const PlannedModule& m, const quant::QParams& qparams,
                                                        const std::vector<int32_t>& codes,
                                                        const std::vector<int32_t>& g_idx);

}  // namespace dsv4::calib

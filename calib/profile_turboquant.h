// profile_turboquant.h: the turboquant output profile (output_profile.h): turboquant-vllm's
// "TQ3-native" checkpoint (../shared/reference/seed_pipelines.md §1.4, §3.4, checked against
// turboquant-plus-vllm 0.13.12's checkpoint.py, the DeepSeek-V4-aware converter), read by its
// vLLM plugin (`--quantization turboquant`; docs/COMPATIBILITY.md, tests/golden/turboquant_load_check.py).
//
//   std::string why = turboquant_cannot_store(module);        // "" when the profile can store it
//   auto layout = turboquant_module_layout(module);           // {weight.tq_packed, weight.tq_norms}
//   auto tensors = turboquant_module_encode(module, qparams, codes);   // codes: codebook indices
//   std::vector<float> w = turboquant_linear_decode(packed, norms, rows, cols, "layers.0.attn.wq_a");
//
// A quantized module is a recipe scheme `int, symmetric, group G, 2..4 bits, weight only`, which
// this profile stores as TurboQuant of that width and group (quant/turboquant.h): per module,
//   <module>.weight.tq_packed  U8  [rows · ceil(cols/G), G · bits / 8]   (48 bytes a group for TQ3 g128)
//   <module>.weight.tq_norms   F32 [rows, ceil(cols/G)]                  (norm-corrected group norms)
// the names upstream writes for a 2-D `.weight` (a 3-D expert tensor would be flattened to
// [E·out, in] first; the release stores experts 2-D, one per name, so none is). The source's
// `.scale` is consumed. Data-free solves are upstream's quantizer (the codes and the norm
// correction); GPTQ solves choose the codes by error feedback (quant/turboquant_gptq.h) and store
// them the same way. Kept modules are dense BF16, the exact decode of an FP8/MXFP4 source.
//
// The artifact's other files: config.json = the source's without quantization_config (upstream's
// _write_raw_source_config_json), and tq_config.json = {format: "tq3_native", bits, group_size,
// quantizer_seed: 42, compressed_layers, original_model, [sensitive_bits, sensitive_patterns],
// [orig_in_dims: {weight name: input width} for widths not a multiple of the group]},
// which is what turboquant's loader takes the format from.
// Tests: tests/calib/test_output_profile.cpp, tests/e2e/cli_profile_turboquant.sh.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "calib/module_plan.h"
#include "calib/profile_appmana.h"
#include "quant/compressed_module.h"

namespace dsv4::calib {

inline constexpr const char* kTqConfigFile = "tq_config.json";

// Why the profile cannot hold module m as the plan has it ("" when it can).
std::string turboquant_cannot_store(const PlannedModule& m);
// The module's bits and group size (m quantized and storable).
int turboquant_bits(const PlannedModule& m);
int turboquant_group(const PlannedModule& m);

std::vector<quant::EncodedTensor> turboquant_module_layout(const PlannedModule& m);
uint64_t turboquant_module_bytes(const PlannedModule& m);
// "tq3 g128 U8 + f32 norms (WHT seed 42, Lloyd-Max, data-free)", "... (gptq codes)": what `plan` shows.
std::string turboquant_module_format(const PlannedModule& m);
// codes: [rows, ceil(cols/G)·G] codebook indices; qparams.scale: [rows, ceil(cols/G)] norms.
std::vector<quant::EncodedTensor> turboquant_module_encode(const PlannedModule& m, const quant::QParams& qparams,
                                                           const std::vector<int32_t>& codes);

// Whether (packed, norms) are a TurboQuant module of [rows, cols] (bits and group size from the
// shapes: the group size is the power of two that gives norms' group count, bits the packed
// width · 8 / G); the decode throws naming `module` and what is wrong.
bool turboquant_linear_recognized(const StoredTensor& packed, const StoredTensor& norms, int64_t rows, int64_t cols,
                                  std::string* why, int* bits = nullptr, int* group = nullptr);
std::vector<float> turboquant_linear_decode(const StoredTensor& packed, const StoredTensor& norms, int64_t rows,
                                            int64_t cols, const std::string& module);

// config.json: the source's, without quantization_config.
nlohmann::ordered_json turboquant_config_json(nlohmann::ordered_json source_config);
// tq_config.json (key order as upstream writes it). original_model: the source directory's name.
nlohmann::ordered_json turboquant_tq_config(const Recipe& recipe, const ModulePlan& plan);
// One line per quantized module whose bit width turboquant's loader, reading tq_config (bits,
// sensitive_bits, sensitive_patterns as substrings of the name), would take otherwise; empty: consistent.
std::vector<std::string> turboquant_config_resolve_check(const nlohmann::ordered_json& tq_config,
                                                         const ModulePlan& plan);

}  // namespace dsv4::calib

// profile_appmana.h: the appmana-dsv4-int output profile (output_profile.h): how a solved module
// is laid out for the AppMana Ampere vLLM fork's `dsv4_int` loader, the decode back to fp32, and
// the checkpoint's config.json (../shared/reference/seed_pipelines.md §3.5, checked against the
// fork's tools/ampere/dsv4_requant_checkpoint.py and quantization/dsv4_int.py).
//
//   std::string why = appmana_cannot_store(module, AppmanaWoA::kInt8);   // "" when it can store it
//   auto layout = appmana_module_layout(module);               // {weight, scale}: dtypes and shapes
//   auto tensors = appmana_module_encode(module, qparams, codes);
//   std::vector<float> w = appmana_linear_decode(weight, scale, rows, cols, "layers.0.attn.wq_a");
//
// Per module, names without the module prefix (the release's own `.weight` / `.scale`):
//   routed expert, INT4 sym group 32:  weight I8 [out, in/2], uint4b8 (code + 8; low nibble = even
//                                       input, high = odd); scale BF16 [out, in/32]
//   dense, INT8 sym channel:            weight U8 [out, in] = code + 128; scale BF16 [out]
//   dense, INT8 sym block 128x128:      weight I8 [out, in]; scale BF16 [ceil(out/128), ceil(in/128)]
// and the decode is bf16(code * scale), as the fork's dequantize_* helpers compute it. What the
// release stores in MXFP4 must be quantized to the INT4 layout and what it stores in FP8 to an INT8
// one (the fork picks its kernels by module name). The main layers' attn.wo_a is INT8 like the
// other FP8 linears (output.wo_a: int8, as the fork's loader builds it) or BF16 without a scale
// (bf16, the seed converter's); the MTP stages' wo_a stays BF16 (the fork's
// dsv4_complete_int8_dense.py converts only `layers.N.attn.wo_a`). BF16 modules stay as they are.
// Tests: tests/calib/test_profile_appmana.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "calib/module_plan.h"
#include "common/dtype.h"
#include "quant/compressed_module.h"

namespace dsv4::calib {

// The shard holding the MTP stages' copies of embed.weight / head.weight (the fork's pipeline-
// parallel MTP loader reads them there), and the index metadata that marks them.
inline constexpr const char* kAppmanaMtpSharedShard = "model-mtp-shared.safetensors";

// Why the profile cannot hold module m as the plan has it ("" when it can); wo_a: output.wo_a.
std::string appmana_cannot_store(const PlannedModule& m, AppmanaWoA wo_a);

std::vector<quant::EncodedTensor> appmana_module_layout(const PlannedModule& m);
// "dsv4_int int4 uint4b8 I8 + bf16 scale/32 (mse scales)", "... int8 channel U8+128 + bf16 scale/row
// (absmax/127)", "... (gptq codes)": what `plan` shows.
std::string appmana_module_format(const PlannedModule& m);
std::vector<quant::EncodedTensor> appmana_module_encode(const PlannedModule& m, const quant::QParams& qparams,
                                                        const std::vector<int32_t>& codes);

// One stored tensor as the decoder sees it.
struct StoredTensor {
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
};
// Which of the three layouts (weight, scale) are, or "" with *why set; the decode throws naming
// `module` and what is wrong.
bool appmana_linear_recognized(const StoredTensor& weight, const StoredTensor& scale, int64_t rows, int64_t cols,
                               std::string* why);
std::vector<float> appmana_linear_decode(const StoredTensor& weight, const StoredTensor& scale, int64_t rows,
                                         int64_t cols, const std::string& module);

// config.json: the source config, `expert_dtype: int4`, quantization_config replaced by the
// fork's dsv4_int block, and its top-level `vllm` kernel block, in the seed's key order.
nlohmann::ordered_json appmana_config_json(nlohmann::ordered_json source_config, const Recipe& recipe,
                                           const ModulePlan& plan);

// One line per quantized module that the fork's lookup over quantization_config gives another
// bit width than the plan (its targets are fnmatch globs over the release names: INT4 modules must
// match experts_w4a16, INT8 ones linears_w8a16); empty: consistent.
std::vector<std::string> appmana_config_resolve_check(const nlohmann::ordered_json& quantization_config,
                                                      const ModulePlan& plan);

}  // namespace dsv4::calib

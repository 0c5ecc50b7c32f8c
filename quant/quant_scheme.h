// quant_scheme.h: a whole compressed-tensors QuantizationScheme as the calibrator needs it: the
// weight args (quant_args.h), the input-activation args, and the on-disk format that follows from
// both (compressors/format.py's priority list, gptq_and_formats.md §3.1).
//
//   QuantScheme s = quant_scheme_preset("FP8_BLOCK");   // weights fp8 block, acts fp8 group 128 dynamic
//   PackFormat f = quant_scheme_format(s);              // float-quantized
//   if (activation_needs_calibration(*s.input_activations)) ...   // FP8 static, NVFP4
//   auto t = activation_encode(s, observed_amax);       // input_scale / input_global_scale tensors
//
// Activations are quantized by the server (vLLM) at run time; the calibrator only writes what a
// static scheme needs from calibration data: FP8's per-tensor input_scale and NVFP4's
// input_global_scale, both from the absolute max of the module's inputs over the calibration
// tokens. Dynamic activation schemes (W8A8, FP8_BLOCK, ...) write nothing.
// Tests: tests/quant/test_quant_scheme.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quant/compressed_module.h"
#include "quant/pack.h"
#include "quant/quant_args.h"

namespace dsv4::quant {

enum class ActStrategy : uint8_t { kTensor, kToken, kGroup, kTensorGroup };
// compressed-tensors `dynamic`: false (static scale from calibration), true (per call), "local"
// (NVFP4: static global scale, dynamic per-group scales).
enum class ActDynamic : uint8_t { kStatic, kDynamic, kLocal };

struct ActivationArgs {
  int num_bits = 8;
  QuantType type = QuantType::kInt;
  bool symmetric = true;
  ActStrategy strategy = ActStrategy::kToken;
  int group_size = 0;  // > 0 for kGroup / kTensorGroup
  ActDynamic dynamic = ActDynamic::kDynamic;

  ArgsProblem problem() const;  // compressed-tensors' rules (§2.2); fields as in QuantArgs
  void check() const;           // throws problem(), its field prefixed "input_activations."
  std::string to_string() const;
};

struct QuantScheme {
  std::string name;  // preset name, or "custom"
  QuantArgs weights;
  std::optional<ActivationArgs> input_activations;
  std::optional<PackFormat> format;  // the recipe's `format:` override; inferred when empty

  void check() const;
};

std::string_view act_strategy_name(ActStrategy s);
std::string_view act_dynamic_name(ActDynamic d);

// Presets (compressed-tensors 0.18 §2.3 plus the dsv4 weight extras of quant_args_preset, which
// are weight-only): weights from quant_args_preset, activations as the preset defines them.
// Extra names beyond quant_args_preset: FP8_DYNAMIC, MXFP4. Unknown -> error listing the known.
QuantScheme quant_scheme_preset(std::string_view name);
std::vector<std::string> quant_scheme_preset_names();

// The compressed-tensors format of a module with this scheme: the override if set, else the first
// of mxfp4-pack (fp4 group 32), nvfp4-pack (fp4 group 16), int-quantized (int weights with any
// input activations, W8A8 and W4AFP8 alike), pack-quantized (int weights, no activations),
// float-quantized (float weights with input activations), naive-quantized (the rest).
PackFormat quant_scheme_format(const QuantScheme& scheme);

// Whether the input activations need calibration data (a static scale or a global scale).
bool activation_needs_calibration(const ActivationArgs& act);

// The activation tensors a static scheme writes, from the absolute max of the module's inputs:
// FP8 static tensor -> input_scale [1] in the model dtype (bf16), amax/448 computed as
// calculate_qparams does; NVFP4 (tensor_group, local) -> input_global_scale [1] f32 =
// 448*6/amax. Dynamic schemes and schemes without activations -> empty.
std::vector<EncodedTensor> activation_encode(const QuantScheme& scheme, float input_amax);
// The tensors activation_encode writes (names, dtypes, shapes; bytes empty), without any data:
// the writer plans shards and `verify` checks key sets from it. Throws, as activation_encode
// does, for static activations other than symmetric per-tensor and NVFP4's tensor_group/local.
std::vector<EncodedTensor> activation_layout(const QuantScheme& scheme);

}  // namespace dsv4::quant

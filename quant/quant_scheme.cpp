// quant_scheme.cpp: scheme presets, format inference and the static activation tensors.
#include "quant/quant_scheme.h"

#include <cmath>
#include <cstring>

#include "common/check.h"
#include "common/codec.h"
#include "quant/quantizer.h"

namespace dsv4::quant {

std::string_view act_strategy_name(ActStrategy s) {
  switch (s) {
    case ActStrategy::kTensor: return "tensor";
    case ActStrategy::kToken: return "token";
    case ActStrategy::kGroup: return "group";
    case ActStrategy::kTensorGroup: return "tensor_group";
  }
  return "?";
}

std::string_view act_dynamic_name(ActDynamic d) {
  switch (d) {
    case ActDynamic::kStatic: return "false";
    case ActDynamic::kDynamic: return "true";
    case ActDynamic::kLocal: return "local";
  }
  return "?";
}

std::string ActivationArgs::to_string() const {
  std::string out = strfmt("%s%d %s %s", type == QuantType::kInt ? "int" : "float", num_bits,
                           symmetric ? "sym" : "asym", act_strategy_name(strategy).data());
  if (group_size > 0) out += strfmt(" group=%d", group_size);
  out += strfmt(" dynamic=%s", act_dynamic_name(dynamic).data());
  return out;
}

ArgsProblem ActivationArgs::problem() const {
  const std::string bits = std::to_string(num_bits);
  if (type == QuantType::kInt && (num_bits < 2 || num_bits > 8)) {
    return {"num_bits", bits, "expected 2 to 8 bits for int activations"};
  }
  if (type == QuantType::kFloat && num_bits != 8 && num_bits != 4) {
    return {"num_bits", bits, "float activations are fp8 or fp4, expected 8 or 4"};
  }
  if (type == QuantType::kFloat && !symmetric) {
    return {"symmetric", "false", "asymmetric float activations are not implemented by compressed-tensors"};
  }
  const bool grouped = strategy == ActStrategy::kGroup || strategy == ActStrategy::kTensorGroup;
  if (grouped != (group_size > 0)) {
    return {"group_size", std::to_string(group_size),
            grouped ? "group strategies need group_size > 0" : "only group strategies take a group_size"};
  }
  const std::string dyn(act_dynamic_name(dynamic));
  if (strategy == ActStrategy::kToken && dynamic != ActDynamic::kDynamic) {
    return {"dynamic", dyn, "the token strategy must be dynamic"};
  }
  if (dynamic == ActDynamic::kLocal && strategy != ActStrategy::kTensorGroup) {
    return {"dynamic", dyn, "only strategy tensor_group has a local mode"};
  }
  return {};
}

void ActivationArgs::check() const {
  if (const ArgsProblem p = problem()) {
    DSV4_FAIL("quant", "input_activations.%s (%s)", p.to_string().c_str(), to_string().c_str());
  }
}

void QuantScheme::check() const {
  weights.check();
  if (input_activations) input_activations->check();
  if (format) compressed_module_check_format(*format, weights);
}

namespace {

ActivationArgs act(int bits, QuantType type, ActStrategy strategy, int group_size,
                   ActDynamic dynamic) {
  ActivationArgs a;
  a.num_bits = bits;
  a.type = type;
  a.strategy = strategy;
  a.group_size = group_size;
  a.dynamic = dynamic;
  return a;
}

struct SchemePreset {
  const char* name;
  const char* weights;  // quant_args_preset name
  std::optional<ActivationArgs> input_activations;
};

// Activation halves of compressed-tensors 0.18 (§2.3). Weight-only presets have none.
const SchemePreset kSchemePresets[] = {
    {"W8A8", "W8A8", act(8, QuantType::kInt, ActStrategy::kToken, 0, ActDynamic::kDynamic)},
    {"FP8", "FP8", act(8, QuantType::kFloat, ActStrategy::kTensor, 0, ActDynamic::kStatic)},
    {"FP8_DYNAMIC", "FP8_DYNAMIC",
     act(8, QuantType::kFloat, ActStrategy::kToken, 0, ActDynamic::kDynamic)},
    {"FP8_BLOCK", "FP8_BLOCK",
     act(8, QuantType::kFloat, ActStrategy::kGroup, 128, ActDynamic::kDynamic)},
    {"FP8_BLOCK_E8M0", "FP8_BLOCK_E8M0",
     act(8, QuantType::kFloat, ActStrategy::kGroup, 128, ActDynamic::kDynamic)},
    {"NVFP4", "NVFP4", act(4, QuantType::kFloat, ActStrategy::kTensorGroup, 16, ActDynamic::kLocal)},
    {"MXFP4", "MXFP4A16", act(4, QuantType::kFloat, ActStrategy::kGroup, 32, ActDynamic::kDynamic)},
};

}  // namespace

std::vector<std::string> quant_scheme_preset_names() {
  std::vector<std::string> names = quant_args_preset_names();
  for (const SchemePreset& p : kSchemePresets) {
    bool known = false;
    for (const std::string& n : names) known = known || n == p.name;
    if (!known) names.emplace_back(p.name);
  }
  return names;
}

QuantScheme quant_scheme_preset(std::string_view name) {
  QuantScheme s;
  s.name = std::string(name);
  for (const SchemePreset& p : kSchemePresets) {
    if (name != p.name) continue;
    s.weights = quant_args_preset(p.weights);
    s.input_activations = p.input_activations;
    return s;
  }
  for (const std::string& n : quant_args_preset_names()) {
    if (name != n) continue;
    s.weights = quant_args_preset(n);
    return s;
  }
  std::string known;
  for (const std::string& n : quant_scheme_preset_names()) known += (known.empty() ? "" : ", ") + n;
  DSV4_FAIL("quant", "unknown quantization scheme '%.*s'; known schemes: %s",
            static_cast<int>(name.size()), name.data(), known.c_str());
}

PackFormat quant_scheme_format(const QuantScheme& scheme) {
  if (scheme.format) return *scheme.format;
  const QuantArgs& w = scheme.weights;
  const std::optional<ActivationArgs>& in = scheme.input_activations;
  const bool fp4 = w.type == QuantType::kFloat && w.num_bits == 4;
  if (fp4 && w.group_size == 32) return PackFormat::kMxfp4PackQuantized;
  if (fp4 && w.group_size == 16) return PackFormat::kNvfp4PackQuantized;
  if (w.type == QuantType::kInt) return in ? PackFormat::kIntQuantized : PackFormat::kPackQuantized;
  if (w.type == QuantType::kFloat && in) return PackFormat::kFloatQuantized;
  return PackFormat::kNaiveQuantized;
}

bool activation_needs_calibration(const ActivationArgs& a) {
  return a.dynamic != ActDynamic::kDynamic;
}

std::vector<EncodedTensor> activation_layout(const QuantScheme& scheme) {
  if (!scheme.input_activations || !activation_needs_calibration(*scheme.input_activations)) return {};
  const ActivationArgs& a = *scheme.input_activations;
  if (a.strategy == ActStrategy::kTensorGroup && a.dynamic == ActDynamic::kLocal) {
    return {{"input_global_scale", DType::kF32, {1}, {}}};
  }
  DSV4_CHECK_IN("quant", a.strategy == ActStrategy::kTensor && a.symmetric,
                "scheme %s: static input activations %s are not supported (only symmetric "
                "per-tensor input_scale and NVFP4's input_global_scale)",
                scheme.name.c_str(), a.to_string().c_str());
  return {{"input_scale", DType::kBF16, {1}, {}}};
}

std::vector<EncodedTensor> activation_encode(const QuantScheme& scheme, float input_amax) {
  std::vector<EncodedTensor> out = activation_layout(scheme);  // the names, dtypes and shapes
  if (out.empty()) return out;
  const ActivationArgs& a = *scheme.input_activations;
  DSV4_CHECK_IN("quant", std::isfinite(input_amax) && input_amax >= 0.0f,
                "input amax %g for scheme %s: expected a finite non-negative maximum", input_amax,
                scheme.name.c_str());
  EncodedTensor& t = out[0];
  if (t.name == "input_global_scale") {
    const float gs = nvfp4_global_scale(input_amax);
    t.bytes.resize(sizeof(float));
    std::memcpy(t.bytes.data(), &gs, sizeof(float));
    return out;
  }
  // calculate_qparams on [-amax, amax] with the activation args, in the model dtype (bf16).
  QuantArgs qa;
  qa.num_bits = a.num_bits;
  qa.type = a.type;
  qa.strategy = Strategy::kTensor;
  qa.scale_dtype = ScaleDType::kModel;
  const float scale = qparams_calculate(qa, -input_amax, input_amax, 0.0f).scale;
  const uint16_t b = bf16_encode(scale);
  t.bytes.resize(sizeof(b));
  std::memcpy(t.bytes.data(), &b, sizeof(b));
  return out;
}

}  // namespace dsv4::quant

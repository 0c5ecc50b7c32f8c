// quant_args.cpp: validation, printing and presets of QuantArgs (see quant_args.h).
// Tests: tests/quant/test_quant_args.cpp.
#include "quant/quant_args.h"

#include <cmath>
#include <ostream>

#include "common/check.h"

namespace dsv4::quant {

std::string_view strategy_name(Strategy s) {
  switch (s) {
    case Strategy::kTensor: return "tensor";
    case Strategy::kChannel: return "channel";
    case Strategy::kGroup: return "group";
    case Strategy::kBlock: return "block";
    case Strategy::kTensorGroup: return "tensor_group";
  }
  return "?";
}

std::string_view scale_dtype_name(ScaleDType d) {
  switch (d) {
    case ScaleDType::kModel: return "model(bf16)";
    case ScaleDType::kF32: return "fp32";
    case ScaleDType::kE4m3: return "e4m3";
    case ScaleDType::kE8m0: return "e8m0";
  }
  return "?";
}

float QuantArgs::qmin() const {
  if (type == QuantType::kInt) return -std::ldexp(1.0f, num_bits - 1);
  return num_bits == 8 ? -448.0f : -6.0f;
}

float QuantArgs::qmax() const {
  if (type == QuantType::kInt) return std::ldexp(1.0f, num_bits - 1) - 1.0f;
  return num_bits == 8 ? 448.0f : 6.0f;
}

bool QuantArgs::is_mx() const {
  return scale_dtype == ScaleDType::kE8m0 && strategy == Strategy::kGroup;
}

std::string ArgsProblem::to_string() const { return field + " " + value + ": " + expected; }

namespace {

ArgsProblem bits_problem(const QuantArgs& a) {
  const std::string bits = std::to_string(a.num_bits);
  if (a.type == QuantType::kInt) {
    if (a.num_bits < 2 || a.num_bits > 8) return {"num_bits", bits, "expected 2 to 8 bits for int weights"};
  } else if (a.num_bits != 4 && a.num_bits != 8) {
    return {"num_bits", bits, "expected 4 (fp4 e2m1) or 8 (fp8 e4m3) for float weights"};
  } else if (!a.symmetric && a.num_bits == 4) {
    // compressed-tensors raises NotImplementedError for this (§2.2).
    return {"symmetric", "false", "asymmetric FP4 is not implemented, expected true"};
  }
  return {};
}

ArgsProblem layout_problem(const QuantArgs& a) {
  const std::string strategy(strategy_name(a.strategy));
  const std::string group = std::to_string(a.group_size);
  const std::string block = strfmt("[%d, %d]", a.block_structure[0], a.block_structure[1]);
  const bool grouped = a.strategy == Strategy::kGroup || a.strategy == Strategy::kTensorGroup;
  if (grouped && a.group_size <= 0) return {"group_size", group, "strategy " + strategy + " needs group_size > 0"};
  if (!grouped && a.group_size != 0) {
    return {"group_size", group, "only strategy group/tensor_group takes a group size"};
  }
  const bool block_set = a.block_structure[0] != 0 || a.block_structure[1] != 0;
  if (a.strategy == Strategy::kBlock && (a.block_structure[0] <= 0 || a.block_structure[1] <= 0)) {
    return {"block_structure", block, "strategy block needs positive [rows, cols]"};
  }
  if (a.strategy != Strategy::kBlock && block_set) {
    return {"block_structure", block, "only strategy block takes a block structure"};
  }
  return {};
}

ArgsProblem scale_problem(const QuantArgs& a) {
  const std::string scale(scale_dtype_name(a.scale_dtype));
  if (a.strategy == Strategy::kTensorGroup) {
    // The global scale 448*6/amax is the NVFP4 formula; no other format defines one.
    const char* nvfp4 = "strategy tensor_group (NVFP4) needs type float with num_bits 4";
    if (a.type != QuantType::kFloat) return {"type", "int", nvfp4};
    if (a.num_bits != 4) return {"num_bits", std::to_string(a.num_bits), nvfp4};
    if (a.scale_dtype != ScaleDType::kE4m3) return {"scale_dtype", scale, "strategy tensor_group needs e4m3 scales"};
  }
  if (a.scale_dtype == ScaleDType::kE8m0) {
    if (a.type != QuantType::kFloat) {
      return {"scale_dtype", scale, "power-of-two scales are defined for float weights only"};
    }
    if (!a.symmetric) return {"symmetric", "false", "e8m0 scales need symmetric weights"};
  }
  return {};
}

ArgsProblem mse_problem(const QuantArgs& a) {
  if (a.observer != ObserverKind::kMse) return {};
  const MseOptions& m = a.mse;
  if (m.grid < 1) return {"observer_kwargs.grid", std::to_string(m.grid), "expected >= 1"};
  if (!(m.maxshrink >= 0.0f && m.maxshrink <= 1.0f)) {
    return {"observer_kwargs.maxshrink", strfmt("%g", m.maxshrink), "expected in [0, 1]"};
  }
  if (!(m.norm > 0.0f)) return {"observer_kwargs.norm", strfmt("%g", m.norm), "expected > 0"};
  if (m.patience < 1) return {"observer_kwargs.patience", std::to_string(m.patience), "expected >= 1"};
  if (!(m.expand > 0.0f)) return {"observer_kwargs.expand", strfmt("%g", m.expand), "expected > 0"};
  return {};
}

}  // namespace

ArgsProblem QuantArgs::problem() const {
  for (ArgsProblem p : {bits_problem(*this), layout_problem(*this), scale_problem(*this), mse_problem(*this)}) {
    if (p) return p;
  }
  return {};
}

void QuantArgs::check() const {
  if (const ArgsProblem p = problem()) {
    DSV4_FAIL("quant", "%s (%s)", p.to_string().c_str(), to_string().c_str());
  }
}

std::string QuantArgs::to_string() const {
  std::string out = strfmt("%s%d %s %s", type == QuantType::kInt ? "int" : "float", num_bits,
                           symmetric ? "sym" : "asym", strategy_name(strategy).data());
  if (group_size != 0) out += strfmt(" group_size=%d", group_size);
  if (strategy == Strategy::kBlock || block_structure[0] != 0 || block_structure[1] != 0) {
    out += strfmt(" block=[%d,%d]", block_structure[0], block_structure[1]);
  }
  out += strfmt(" scale=%s", scale_dtype_name(scale_dtype).data());
  if (observer == ObserverKind::kMinMax) {
    out += " observer=minmax";
  } else {
    out += strfmt(" observer=mse(maxshrink=%g grid=%d norm=%g patience=%d expand=%g)",
                  mse.maxshrink, mse.grid, mse.norm, mse.patience, mse.expand);
  }
  return out;
}

bool operator==(const QuantArgs& a, const QuantArgs& b) {
  return a.num_bits == b.num_bits && a.type == b.type && a.symmetric == b.symmetric &&
         a.strategy == b.strategy && a.group_size == b.group_size &&
         a.block_structure == b.block_structure && a.scale_dtype == b.scale_dtype &&
         a.observer == b.observer && a.mse.maxshrink == b.mse.maxshrink &&
         a.mse.grid == b.mse.grid && a.mse.norm == b.mse.norm &&
         a.mse.patience == b.mse.patience && a.mse.expand == b.mse.expand;
}

std::ostream& operator<<(std::ostream& os, const QuantArgs& a) { return os << a.to_string(); }

namespace {

QuantArgs int_args(int bits, bool symmetric, Strategy strategy, int group_size) {
  QuantArgs a;
  a.num_bits = bits;
  a.type = QuantType::kInt;
  a.symmetric = symmetric;
  a.strategy = strategy;
  a.group_size = group_size;
  return a;
}

QuantArgs float_args(int bits, Strategy strategy, int group_size, ScaleDType scale_dtype) {
  QuantArgs a;
  a.num_bits = bits;
  a.type = QuantType::kFloat;
  a.strategy = strategy;
  a.group_size = group_size;
  a.scale_dtype = scale_dtype;
  return a;
}

struct Preset {
  const char* name;
  QuantArgs (*make)();
};

// Weights half of compressed-tensors 0.18 presets (§2.3), plus the dsv4 extras at the end.
const Preset kPresets[] = {
    {"W4A16", [] { return int_args(4, true, Strategy::kGroup, 128); }},
    {"W4A16_ASYM", [] { return int_args(4, false, Strategy::kGroup, 128); }},
    {"W8A16", [] { return int_args(8, true, Strategy::kGroup, 128); }},
    // compressed-tensors <= 0.15 spelled W8A16 as per-channel.
    {"W8A16_CHANNEL", [] { return int_args(8, true, Strategy::kChannel, 0); }},
    {"W3A16", [] { return int_args(3, true, Strategy::kGroup, 128); }},
    {"W8A8", [] { return int_args(8, true, Strategy::kChannel, 0); }},
    {"FP8", [] { return float_args(8, Strategy::kTensor, 0, ScaleDType::kModel); }},
    {"FP8_DYNAMIC", [] { return float_args(8, Strategy::kChannel, 0, ScaleDType::kModel); }},
    {"FP8_BLOCK",
     [] {
       QuantArgs a = float_args(8, Strategy::kBlock, 0, ScaleDType::kModel);
       a.block_structure = {128, 128};
       return a;
     }},
    // FP8_BLOCK with the DSV4 release's power-of-two e8m0 scales (re-encodes it bit-exactly).
    {"FP8_BLOCK_E8M0",
     [] {
       QuantArgs a = float_args(8, Strategy::kBlock, 0, ScaleDType::kE8m0);
       a.block_structure = {128, 128};
       return a;
     }},
    {"NVFP4A16", [] { return float_args(4, Strategy::kTensorGroup, 16, ScaleDType::kE4m3); }},
    {"NVFP4", [] { return float_args(4, Strategy::kTensorGroup, 16, ScaleDType::kE4m3); }},
    {"MXFP4A16", [] { return float_args(4, Strategy::kGroup, 32, ScaleDType::kE8m0); }},
    {"INT4_G32", [] { return int_args(4, true, Strategy::kGroup, 32); }},
    // "uint8-style": asymmetric int8 with a zero point (stored signed, §1.8).
    {"INT8_ASYM_CHANNEL", [] { return int_args(8, false, Strategy::kChannel, 0); }},
};

}  // namespace

std::vector<std::string> quant_args_preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

QuantArgs quant_args_preset(std::string_view name) {
  std::string known;
  for (const Preset& p : kPresets) {
    if (name == p.name) return p.make();
    known += known.empty() ? "" : ", ";
    known += p.name;
  }
  DSV4_FAIL("quant", "unknown quantization preset '%.*s'; known presets: %s",
            static_cast<int>(name.size()), name.data(), known.c_str());
}

void quant_args_check_shape(const QuantArgs& args, int64_t rows, int64_t cols) {
  DSV4_CHECK_IN("quant", rows > 0 && cols > 0,
                "weight shape [%lld, %lld]: expected positive rows and cols",
                static_cast<long long>(rows), static_cast<long long>(cols));
  if (args.strategy == Strategy::kGroup || args.strategy == Strategy::kTensorGroup) {
    DSV4_CHECK_IN("quant", cols % args.group_size == 0,
                  "weight shape [%lld, %lld]: group_size %d does not divide the %lld columns (%s)",
                  static_cast<long long>(rows), static_cast<long long>(cols), args.group_size,
                  static_cast<long long>(cols), args.to_string().c_str());
  }
}

}  // namespace dsv4::quant

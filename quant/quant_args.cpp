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

void QuantArgs::check() const {
  const std::string s = to_string();
  const char* cs = s.c_str();
  if (type == QuantType::kInt) {
    DSV4_CHECK_IN("quant", num_bits >= 2 && num_bits <= 8,
                  "num_bits %d: int weights need 2..8 bits (%s)", num_bits, cs);
  } else {
    DSV4_CHECK_IN("quant", num_bits == 4 || num_bits == 8,
                  "num_bits %d: float weights are fp4 (e2m1) or fp8 (e4m3) only (%s)", num_bits,
                  cs);
    // compressed-tensors raises NotImplementedError for this (§2.2).
    DSV4_CHECK_IN("quant", symmetric || num_bits != 4,
                  "symmetric=false: asymmetric FP4 is not implemented (%s)", cs);
  }
  const bool grouped = strategy == Strategy::kGroup || strategy == Strategy::kTensorGroup;
  if (grouped) {
    DSV4_CHECK_IN("quant", group_size > 0, "group_size %d: strategy %s needs group_size > 0 (%s)",
                  group_size, strategy_name(strategy).data(), cs);
  } else {
    DSV4_CHECK_IN("quant", group_size == 0,
                  "group_size %d: only strategy group/tensor_group takes a group size (%s)",
                  group_size, cs);
  }
  if (strategy == Strategy::kBlock) {
    DSV4_CHECK_IN("quant", block_structure[0] > 0 && block_structure[1] > 0,
                  "block_structure [%d, %d]: strategy block needs positive [rows, cols] (%s)",
                  block_structure[0], block_structure[1], cs);
  } else {
    DSV4_CHECK_IN("quant", block_structure[0] == 0 && block_structure[1] == 0,
                  "block_structure [%d, %d]: only strategy block takes a block structure (%s)",
                  block_structure[0], block_structure[1], cs);
  }
  if (strategy == Strategy::kTensorGroup) {
    // The global scale 448*6/amax is the NVFP4 formula; no other format defines one.
    DSV4_CHECK_IN("quant", type == QuantType::kFloat && num_bits == 4,
                  "type/num_bits: strategy tensor_group is NVFP4 and needs float 4-bit (%s)", cs);
    DSV4_CHECK_IN("quant", scale_dtype == ScaleDType::kE4m3,
                  "scale_dtype %s: strategy tensor_group needs e4m3 scales (%s)",
                  scale_dtype_name(scale_dtype).data(), cs);
  }
  if (scale_dtype == ScaleDType::kE8m0) {
    DSV4_CHECK_IN("quant", type == QuantType::kFloat,
                  "scale_dtype e8m0: power-of-two scales are defined for float weights only (%s)",
                  cs);
    DSV4_CHECK_IN("quant", symmetric, "symmetric=false: e8m0 scales need symmetric weights (%s)",
                  cs);
  }
  if (observer == ObserverKind::kMse) {
    DSV4_CHECK_IN("quant", mse.grid >= 1, "mse.grid %d: expected >= 1", mse.grid);
    DSV4_CHECK_IN("quant", mse.maxshrink >= 0.0f && mse.maxshrink <= 1.0f,
                  "mse.maxshrink %g: expected in [0, 1]", mse.maxshrink);
    DSV4_CHECK_IN("quant", mse.norm > 0.0f, "mse.norm %g: expected > 0", mse.norm);
    DSV4_CHECK_IN("quant", mse.patience >= 1, "mse.patience %d: expected >= 1", mse.patience);
    DSV4_CHECK_IN("quant", mse.expand > 0.0f, "mse.expand %g: expected > 0", mse.expand);
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

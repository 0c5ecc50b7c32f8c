// quant_args.h: the weight quantization scheme (compressed-tensors QuantizationArgs, reduced to
// what a weight-only calibrator needs), its validation, and the named presets of
// compressed-tensors 0.18 (gptq_and_formats.md §2.2, §2.3) plus two dsv4 extras.
//
//   QuantArgs a = quant_args_preset("W4A16");   // int4 sym group 128, bf16 scales, minmax
//   a.check();                                  // throws dsv4::Error naming the bad field
//   quant_args_check_shape(a, rows, cols);      // e.g. group size must divide cols
//
// Only weights are described: the input-activation half of a preset (dynamic per-token etc.)
// needs no calibration math here. Tests: tests/quant/test_quant_args.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::quant {

enum class QuantType : uint8_t { kInt, kFloat };

enum class Strategy : uint8_t { kTensor, kChannel, kGroup, kBlock, kTensorGroup };

// How the scale is stored. kModel is the weight dtype (bf16 for DSV4): llm-compressor computes
// the scale from the bf16 weight and stores weight_scale in it, so every arithmetic step of the
// scale is rounded to bf16 (§1.8). kE8m0 is compressed-tensors' "uint8" (MX) scale dtype.
enum class ScaleDType : uint8_t { kModel, kF32, kE4m3, kE8m0 };

enum class ObserverKind : uint8_t { kMinMax, kMse };

// A value that check() refuses, as data: a caller that holds the user's file (calib/'s recipe
// reader) names its own key path from `field` instead of quoting an internal error. `field` is
// the compressed-tensors key ("num_bits", "observer_kwargs.grid"), `value` what it holds, and
// `expected` what would be accepted.
struct ArgsProblem {
  std::string field;  // empty: nothing wrong
  std::string value;
  std::string expected;
  explicit operator bool() const { return !field.empty(); }
  std::string to_string() const;  // "num_bits 9: expected 2 to 8 bits for int weights"
};

// llm-compressor memoryless_mse defaults (§1.9).
struct MseOptions {
  float maxshrink = 0.20f;
  int grid = 100;
  float norm = 2.4f;
  int patience = 5;
  float expand = 1.0f;
};

struct QuantArgs {
  int num_bits = 8;
  QuantType type = QuantType::kInt;
  bool symmetric = true;
  Strategy strategy = Strategy::kTensor;
  int group_size = 0;                       // > 0 for kGroup / kTensorGroup, else 0
  std::array<int, 2> block_structure{0, 0};  // [rows, cols], only for kBlock
  ScaleDType scale_dtype = ScaleDType::kModel;
  ObserverKind observer = ObserverKind::kMinMax;
  MseOptions mse;

  // The first value compressed-tensors' rules refuse; check() throws it as dsv4::Error("quant").
  ArgsProblem problem() const;
  void check() const;
  std::string to_string() const;

  // Representable range of the codes (§1.8 calculate_range): int [-2^(b-1), 2^(b-1)-1],
  // fp8 e4m3 ±448, fp4 e2m1 ±6.
  float qmin() const;
  float qmax() const;
  // MX scales (§1.8 generate_mx_scales): e8m0 scales on a group strategy. E8m0 on any other
  // strategy (the FP8_BLOCK_E8M0 option) uses the DeepSeek "never clips" rule
  // s = 2^ceil(log2(amax/448)) instead, which is what the DSV4 release's FP8 scales are.
  bool is_mx() const;
};

bool operator==(const QuantArgs& a, const QuantArgs& b);
std::ostream& operator<<(std::ostream& os, const QuantArgs& a);

std::string_view strategy_name(Strategy s);
std::string_view scale_dtype_name(ScaleDType d);

// Presets by name (case-sensitive, compressed-tensors spelling). Unknown name -> error that
// lists the known ones. The result always passes check().
QuantArgs quant_args_preset(std::string_view name);
std::vector<std::string> quant_args_preset_names();

// Checks a weight [rows, cols] against the args: positive dims; group size divides cols (for
// group / tensor_group; vLLM's kernels need it). Block shapes may be ragged (padded, §4.1).
void quant_args_check_shape(const QuantArgs& args, int64_t rows, int64_t cols);

}  // namespace dsv4::quant

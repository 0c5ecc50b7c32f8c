// profile_turboquant.cpp: the TQ-native layout, decode and config files (see profile_turboquant.h).
#include "calib/profile_turboquant.h"

#include <cstring>
#include <filesystem>
#include <map>

#include "common/check.h"
#include "common/safetensors.h"
#include "quant/turboquant.h"

namespace dsv4::calib {
namespace {

using quant::QuantArgs;

bool is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

int64_t groups_of(const PlannedModule& m) { return quant::tq_groups_per_row(m.cols, turboquant_group(m)); }

// The width tq_config.json names as `bits` (the most common; ties to the smaller) and the other
// one, if any, as `sensitive_bits` (0: none).
std::pair<int, int> config_bits(const ModulePlan& plan) {
  std::map<int, int64_t> count;
  for (const PlannedModule& m : plan.modules) {
    if (m.quantized()) ++count[m.scheme->scheme.weights.num_bits];
  }
  int bits = 3, most = -1, sensitive = 0;
  for (const auto& [b, n] : count) {
    if (n > most) most = static_cast<int>(n), bits = b;
  }
  for (const auto& [b, n] : count) {
    if (b != bits) sensitive = b;
  }
  return {bits, sensitive};
}

}  // namespace

std::string turboquant_cannot_store(const PlannedModule& m) {
  if (!m.quantized()) return "";  // kept modules are dense BF16, which turboquant's loader reads as they are
  const ModuleScheme& s = *m.scheme;
  const QuantArgs& a = s.scheme.weights;
  if (s.scheme.input_activations) return "it stores weight-only schemes (no input_activations)";
  if (s.gptq_solved() && s.gptq.actorder == quant::ActOrder::kGroup) {
    return "it has no place for an act-order weight_g_idx (use actorder static)";
  }
  if (a.type != quant::QuantType::kInt || !a.symmetric || a.strategy != quant::Strategy::kGroup) {
    return "it stores TurboQuant codes, given as int symmetric group schemes (num_bits 2, 3 or 4, group_size a "
           "power of two, 128 as upstream)";
  }
  if (a.num_bits < 2 || a.num_bits > 4) return "TurboQuant codebooks are defined for 2, 3 and 4 bits";
  if (!is_pow2(a.group_size) || a.group_size < 8 || a.group_size > 4096) {
    return "the Walsh-Hadamard rotation needs a power-of-two group size from 8 to 4096 (upstream: 128)";
  }
  return "";
}

int turboquant_bits(const PlannedModule& m) { return m.scheme->scheme.weights.num_bits; }
int turboquant_group(const PlannedModule& m) { return static_cast<int>(m.scheme->scheme.weights.group_size); }

std::vector<quant::EncodedTensor> turboquant_module_layout(const PlannedModule& m) {
  const int64_t g = groups_of(m), gbytes = turboquant_group(m) * turboquant_bits(m) / 8;
  return {{"weight.tq_packed", DType::kU8, {m.rows * g, gbytes}, {}}, {"weight.tq_norms", DType::kF32, {m.rows, g}, {}}};
}

uint64_t turboquant_module_bytes(const PlannedModule& m) {
  uint64_t n = 0;
  for (const quant::EncodedTensor& t : turboquant_module_layout(m)) n += static_cast<uint64_t>(quant::encoded_tensor_bytes(t));
  return n;
}

std::string turboquant_module_format(const PlannedModule& m) {
  return "tq" + std::to_string(turboquant_bits(m)) + " g" + std::to_string(turboquant_group(m)) +
         " U8 + f32 norms (WHT seed 42, Lloyd-Max, " + (m.scheme->gptq_solved() ? "gptq codes)" : "data-free)");
}

std::vector<quant::EncodedTensor> turboquant_module_encode(const PlannedModule& m, const quant::QParams& qp,
                                                           const std::vector<int32_t>& codes) {
  std::vector<quant::EncodedTensor> t = turboquant_module_layout(m);
  const quant::TqCodec codec(turboquant_bits(m), turboquant_group(m));
  const int64_t g = groups_of(m);
  DSV4_CHECK_IN("writer",
                static_cast<int64_t>(codes.size()) == m.rows * g * codec.group_size() &&
                    static_cast<int64_t>(qp.scale.size()) == m.rows * g,
                "%s: %zu codes and %zu norms do not fit the turboquant layout of [%lld, %lld] in groups of %d",
                m.names.release.c_str(), codes.size(), qp.scale.size(), static_cast<long long>(m.rows),
                static_cast<long long>(m.cols), codec.group_size());
  const std::vector<uint8_t> packed = quant::tq_pack(codec, codes);
  t[0].bytes.resize(packed.size());
  std::memcpy(t[0].bytes.data(), packed.data(), packed.size());
  t[1].bytes.resize(qp.scale.size() * 4);
  std::memcpy(t[1].bytes.data(), qp.scale.data(), qp.scale.size() * 4);
  return t;
}

bool turboquant_linear_recognized(const StoredTensor& p, const StoredTensor& n, int64_t rows, int64_t cols,
                                  std::string* why, int* bits_out, int* group_out) {
  std::string problem;
  int bits = 0, group = 0;
  if (p.dtype != DType::kU8 || n.dtype != DType::kF32 || p.shape.size() != 2 || n.shape.size() != 2) {
    problem = ".tq_packed is " + std::string(dtype_name(p.dtype)) + " " + shape_string(p.shape) + " and .tq_norms " +
              std::string(dtype_name(n.dtype)) + " " + shape_string(n.shape) + ", expected U8 and F32, both 2-D";
  } else if (n.shape[0] != rows || n.shape[1] <= 0) {
    problem = ".tq_norms is " + shape_string(n.shape) + ", expected [" + std::to_string(rows) + ", groups]";
  } else {
    for (int g = 8; g <= 4096; g *= 2) {
      if (quant::tq_groups_per_row(cols, g) == n.shape[1]) {
        group = g;
        break;
      }
    }
    bits = group > 0 ? static_cast<int>(p.shape[1] * 8 / group) : 0;
    if (group == 0 || p.shape[0] != rows * n.shape[1] || bits < 2 || bits > 4 || p.shape[1] * 8 != bits * group) {
      problem = ".tq_packed " + shape_string(p.shape) + " with .tq_norms " + shape_string(n.shape) +
                " is no 2/3/4-bit layout of [" + std::to_string(rows) + ", " + std::to_string(cols) +
                "] in power-of-two groups";
    }
  }
  if (problem.empty() && (p.bytes.size() != TensorSpec{"", p.dtype, p.shape}.bytes() ||
                          n.bytes.size() != TensorSpec{"", n.dtype, n.shape}.bytes())) {
    problem = "its bytes do not match its dtype and shape";
  }
  if (why) *why = problem;
  if (bits_out) *bits_out = bits;
  if (group_out) *group_out = group;
  return problem.empty();
}

std::vector<float> turboquant_linear_decode(const StoredTensor& p, const StoredTensor& n, int64_t rows, int64_t cols,
                                            const std::string& module) {
  std::string why;
  int bits = 0, group = 0;
  DSV4_USER_CHECK("artifact", turboquant_linear_recognized(p, n, rows, cols, &why, &bits, &group),
                  "%s: not a turboquant module: %s", module.c_str(), why.c_str());
  const quant::TqCodec codec(bits, group);
  std::vector<float> norms(static_cast<size_t>(n.shape[0] * n.shape[1]));
  std::memcpy(norms.data(), n.bytes.data(), norms.size() * 4);
  const auto* packed = reinterpret_cast<const uint8_t*>(p.bytes.data());
  return quant::tq_dequantize(codec, quant::tq_unpack(codec, packed, p.shape[0]), norms, rows, cols);
}

nlohmann::ordered_json turboquant_config_json(nlohmann::ordered_json cfg) {
  cfg.erase("quantization_config");
  return cfg;
}

nlohmann::ordered_json turboquant_tq_config(const Recipe& r, const ModulePlan& plan) {
  int64_t compressed = 0, group = 128;
  for (const PlannedModule& m : plan.modules) {
    if (!m.quantized()) continue;
    ++compressed;
    group = m.scheme->scheme.weights.group_size;  // output_profile_check: one group size for all
  }
  const auto [bits, sensitive] = config_bits(plan);
  nlohmann::ordered_json j = {{"format", "tq3_native"},
                              {"bits", bits},
                              {"group_size", group},
                              {"quantizer_seed", quant::kTqSeed},
                              {"compressed_layers", compressed},
                              {"original_model", std::filesystem::path(r.model).filename().string()}};
  if (j["original_model"].get<std::string>().empty()) j["original_model"] = std::filesystem::path(r.model).parent_path().filename().string();
  if (sensitive != 0) {
    j["sensitive_bits"] = sensitive;
    j["sensitive_patterns"] = r.output.sensitive_patterns;
  }
  // The true input width of a weight padded to whole groups (the packed layout keeps the padded
  // one), which upstream's loader truncates back to; never needed at V4-Flash's widths.
  nlohmann::ordered_json orig = nlohmann::ordered_json::object();
  for (const PlannedModule& m : plan.modules) {
    if (m.quantized() && m.cols % group != 0) orig[m.names.release + ".weight"] = m.cols;
  }
  if (!orig.empty()) j["orig_in_dims"] = std::move(orig);
  return j;
}

std::vector<std::string> turboquant_config_resolve_check(const nlohmann::ordered_json& tq, const ModulePlan& plan) {
  std::vector<std::string> problems;
  if (!tq.is_object() || !tq.contains("bits") || !tq["bits"].is_number_integer()) return {"tq_config.json has no integer bits"};
  const int bits = tq["bits"].get<int>();
  const int sensitive = tq.contains("sensitive_bits") && tq["sensitive_bits"].is_number_integer() ? tq["sensitive_bits"].get<int>() : 0;
  std::vector<std::string> patterns;
  if (tq.contains("sensitive_patterns") && tq["sensitive_patterns"].is_array()) {
    for (const auto& p : tq["sensitive_patterns"]) {
      if (p.is_string()) patterns.push_back(p.get<std::string>());
    }
  }
  for (const PlannedModule& m : plan.modules) {
    if (!m.quantized()) continue;
    bool hit = false;  // upstream's select_bits: any pattern as a substring of the tensor name
    for (const std::string& p : patterns) hit = hit || m.names.release.find(p) != std::string::npos;
    const int loaded = (sensitive != 0 && hit) ? sensitive : bits;
    if (loaded != turboquant_bits(m)) {
      problems.push_back(m.names.release + ": planned " + std::to_string(turboquant_bits(m)) +
                         " bits, but tq_config.json's bits/sensitive_bits/sensitive_patterns give it " +
                         std::to_string(loaded));
    }
  }
  return problems;
}

}  // namespace dsv4::calib

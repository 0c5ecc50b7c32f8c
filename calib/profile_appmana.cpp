// profile_appmana.cpp: the dsv4_int layout, decode and config.json (see profile_appmana.h).
#include "calib/profile_appmana.h"

#include <fnmatch.h>

#include <cstring>

#include "common/check.h"
#include "common/codec.h"
#include "common/safetensors.h"

namespace dsv4::calib {
namespace {

using quant::QuantArgs;
using quant::Strategy;

enum class Layout : uint8_t { kInt4Group32, kInt8Channel, kInt8Block };

bool is_int4_g32(const QuantArgs& a) {
  return a.type == quant::QuantType::kInt && a.num_bits == 4 && a.symmetric && a.strategy == Strategy::kGroup &&
         a.group_size == 32 && a.scale_dtype == quant::ScaleDType::kModel;
}

bool is_int8(const QuantArgs& a, Strategy s) {
  return a.type == quant::QuantType::kInt && a.num_bits == 8 && a.symmetric && a.strategy == s &&
         a.scale_dtype == quant::ScaleDType::kModel &&
         (s != Strategy::kBlock || (a.block_structure[0] == 128 && a.block_structure[1] == 128));
}

int64_t ceil128(int64_t n) { return (n + 127) / 128; }

bool is_int8_linear(const QuantArgs& a) { return is_int8(a, Strategy::kChannel) || is_int8(a, Strategy::kBlock); }

// attn.wo_a: the main layers' follows output.wo_a, the MTP stages' stays BF16 (see the header).
// "" for a quantized one means it may be quantized: the checks of any FP8 linear follow.
std::string wo_a_cannot_store(const PlannedModule& m, AppmanaWoA wo_a) {
  const bool mtp = m.names.release.starts_with("mtp.");
  if (m.quantized()) {
    if (mtp) return "the fork's layout keeps the MTP stages' attn.wo_a in BF16; leave it unquantized";
    return wo_a == AppmanaWoA::kBf16 ? "output.wo_a is bf16: attn.wo_a is stored in BF16 without a scale; leave it "
                                       "unquantized, or set output.wo_a: int8"
                                     : "";
  }
  if (mtp || wo_a == AppmanaWoA::kBf16 || m.source != model::TensorEncoding::kFp8Block) return "";
  return "output.wo_a is int8 (the default: the fork's dsv4_int loader builds the main layers' attn.wo_a as an "
         "INT8 linear and cannot load it in BF16): quantize it INT8 with the other FP8 linears (int, 8 bits, "
         "symmetric, the same channel or block [128, 128] mode), or set output.wo_a: bf16 for the seed "
         "converter's BF16 layout";
}

Layout layout_of(const PlannedModule& m) {
  const QuantArgs& a = m.scheme->scheme.weights;
  if (is_int4_g32(a)) return Layout::kInt4Group32;
  return a.strategy == Strategy::kChannel ? Layout::kInt8Channel : Layout::kInt8Block;
}

float bf16_at(std::span<const std::byte> b, size_t i) {
  uint16_t v;
  std::memcpy(&v, b.data() + 2 * i, 2);
  return bf16_decode(v);
}

}  // namespace

std::string appmana_cannot_store(const PlannedModule& m, AppmanaWoA wo_a) {
  const bool expert = model::linear_role_is_routed_expert(m.role);
  if (m.role == model::LinearRole::kAttnWoA) {
    const std::string why = wo_a_cannot_store(m, wo_a);
    if (!why.empty() || !m.quantized()) return why;
  }
  if (!m.quantized()) {
    if (m.source == model::TensorEncoding::kMxfp4) {
      return "the fork loads the release's MXFP4 routed experts as INT4 group 32; quantize them "
             "(int, 4 bits, symmetric, group 32)";
    }
    if (m.source == model::TensorEncoding::kFp8Block) {
      return "the fork loads the release's FP8 linears as INT8; quantize them (int, 8 bits, symmetric, "
             "channel or block [128, 128])";
    }
    return "";
  }
  const ModuleScheme& s = *m.scheme;
  const QuantArgs& a = s.scheme.weights;
  if (s.scheme.input_activations) return "it stores weight-only schemes (no input_activations)";
  if (s.gptq_solved() && s.gptq.actorder == quant::ActOrder::kGroup) {
    return "it has no place for an act-order weight_g_idx (use actorder static)";
  }
  if (m.source == model::TensorEncoding::kPlain) {
    return "it keeps the release's BF16 modules as they are; only MXFP4 and FP8 modules are converted";
  }
  if (expert) {
    return is_int4_g32(a) ? "" : "it stores routed experts as INT4 symmetric group 32 with BF16 scales only";
  }
  return is_int8_linear(a)
             ? ""
             : "it stores FP8 linears as INT8 symmetric, channel or block [128, 128], with BF16 scales only";
}

std::string appmana_module_format(const PlannedModule& m) {
  const bool gptq = m.scheme->gptq_solved();
  switch (layout_of(m)) {
    case Layout::kInt4Group32:
      return std::string("dsv4_int int4 uint4b8 I8 + bf16 scale/32 (") +
             (gptq ? "gptq codes" : std::string(int4_scale_mode_name(m.scheme->int4_scale_mode)) + " scales") + ")";
    case Layout::kInt8Channel: return std::string("dsv4_int int8 channel U8+128 + bf16 scale/row (") + (gptq ? "gptq codes)" : "absmax/127)");
    case Layout::kInt8Block: return std::string("dsv4_int int8 block I8 + bf16 scale/128x128 (") + (gptq ? "gptq codes)" : "absmax/127)");
  }
  return "?";
}

std::vector<quant::EncodedTensor> appmana_module_layout(const PlannedModule& m) {
  const int64_t r = m.rows, c = m.cols;
  switch (layout_of(m)) {
    case Layout::kInt4Group32: return {{"weight", DType::kI8, {r, c / 2}, {}}, {"scale", DType::kBF16, {r, c / 32}, {}}};
    case Layout::kInt8Channel: return {{"weight", DType::kU8, {r, c}, {}}, {"scale", DType::kBF16, {r}, {}}};
    case Layout::kInt8Block:
      return {{"weight", DType::kI8, {r, c}, {}}, {"scale", DType::kBF16, {ceil128(r), ceil128(c)}, {}}};
  }
  return {};
}

std::vector<quant::EncodedTensor> appmana_module_encode(const PlannedModule& m, const quant::QParams& qp,
                                                        const std::vector<int32_t>& codes) {
  std::vector<quant::EncodedTensor> t = appmana_module_layout(m);
  const Layout layout = layout_of(m);
  DSV4_CHECK_IN("writer", codes.size() == static_cast<size_t>(m.rows * m.cols) &&
                              qp.scale.size() == static_cast<size_t>(t[1].shape[0] * (t[1].shape.size() > 1 ? t[1].shape[1] : 1)),
                "%s: %zu codes and %zu scales do not fit the appmana-dsv4-int layout of [%lld, %lld]",
                m.names.release.c_str(), codes.size(), qp.scale.size(), static_cast<long long>(m.rows),
                static_cast<long long>(m.cols));
  t[0].bytes.resize(static_cast<size_t>(quant::encoded_tensor_bytes(t[0])));
  auto* w = reinterpret_cast<uint8_t*>(t[0].bytes.data());
  if (layout == Layout::kInt4Group32) {
    // uint4b8: the signed code + 8; the even input in the low nibble (the fork's _pack_int4_pairs).
    for (size_t i = 0; i < t[0].bytes.size(); ++i) {
      w[i] = static_cast<uint8_t>(((codes[2 * i + 1] + 8) << 4) | ((codes[2 * i] + 8) & 0xF));
    }
  } else {
    const int bias = layout == Layout::kInt8Channel ? 128 : 0;  // AllSpark's U8 holds code + 128
    for (size_t i = 0; i < codes.size(); ++i) w[i] = static_cast<uint8_t>(codes[i] + bias);
  }
  t[1].bytes.resize(qp.scale.size() * 2);
  for (size_t i = 0; i < qp.scale.size(); ++i) {
    const uint16_t b = bf16_encode(qp.scale[i]);
    DSV4_CHECK_IN("writer", bf16_decode(b) == qp.scale[i], "%s: scale %zu (%g) is not a BF16 value",
                  m.names.release.c_str(), i, static_cast<double>(qp.scale[i]));
    std::memcpy(t[1].bytes.data() + 2 * i, &b, 2);
  }
  return t;
}

bool appmana_linear_recognized(const StoredTensor& w, const StoredTensor& s, int64_t rows, int64_t cols,
                               std::string* why) {
  const auto shape = [](std::vector<int64_t> v) { return v; };
  std::string problem;
  if (s.dtype != DType::kBF16) {
    problem = "its .scale is " + std::string(dtype_name(s.dtype)) + ", expected BF16";
  } else if (w.dtype == DType::kI8 && w.shape == shape({rows, cols / 2}) && cols % 32 == 0) {
    if (s.shape != shape({rows, cols / 32})) problem = "INT4 .scale is " + shape_string(s.shape) + ", expected [out, in/32]";
  } else if (w.dtype == DType::kU8 && w.shape == shape({rows, cols})) {
    if (s.shape != shape({rows})) problem = "INT8 channel .scale is " + shape_string(s.shape) + ", expected [out]";
  } else if (w.dtype == DType::kI8 && w.shape == shape({rows, cols})) {
    if (s.shape != shape({ceil128(rows), ceil128(cols)})) {
      problem = "INT8 block .scale is " + shape_string(s.shape) + ", expected [ceil(out/128), ceil(in/128)]";
    }
  } else {
    problem = ".weight is " + std::string(dtype_name(w.dtype)) + " " + shape_string(w.shape) +
              ", none of I8 [out, in/2] (INT4), U8 [out, in] (INT8 channel), I8 [out, in] (INT8 block) for [" +
              std::to_string(rows) + ", " + std::to_string(cols) + "]";
  }
  if (problem.empty() && (w.bytes.size() != TensorSpec{"", w.dtype, w.shape}.bytes() ||
                          s.bytes.size() != TensorSpec{"", s.dtype, s.shape}.bytes())) {
    problem = "its bytes do not match its dtype and shape";
  }
  if (why) *why = problem;
  return problem.empty();
}

std::vector<float> appmana_linear_decode(const StoredTensor& w, const StoredTensor& s, int64_t rows, int64_t cols,
                                         const std::string& module) {
  std::string why;
  DSV4_USER_CHECK("artifact", appmana_linear_recognized(w, s, rows, cols, &why),
                  "%s: not an appmana-dsv4-int module: %s", module.c_str(), why.c_str());
  std::vector<float> out(static_cast<size_t>(rows * cols));
  const auto* b = reinterpret_cast<const uint8_t*>(w.bytes.data());
  if (w.shape[1] * 2 == cols && w.dtype == DType::kI8) {  // INT4 uint4b8, group 32
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint8_t byte = b[r * (cols / 2) + c / 2];
        const int code = ((c % 2 == 0) ? (byte & 0xF) : (byte >> 4)) - 8;
        out[r * cols + c] = bf16_decode(bf16_encode(static_cast<float>(code) * bf16_at(s.bytes, r * (cols / 32) + c / 32)));
      }
    }
    return out;
  }
  const bool channel = w.dtype == DType::kU8;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int code = channel ? static_cast<int>(b[r * cols + c]) - 128 : static_cast<int>(static_cast<int8_t>(b[r * cols + c]));
      const float scale = channel ? bf16_at(s.bytes, r) : bf16_at(s.bytes, (r / 128) * ceil128(cols) + c / 128);
      out[r * cols + c] = bf16_decode(bf16_encode(static_cast<float>(code) * scale));
    }
  }
  return out;
}

nlohmann::ordered_json appmana_config_json(nlohmann::ordered_json cfg, const Recipe& recipe, const ModulePlan& plan) {
  using nlohmann::ordered_json;
  // The INT8 mode (output_profile_check makes it one for all) and where the INT4 scales came from.
  std::string strategy = "channel", scale_mode(int4_scale_mode_name(recipe.output.int4_scale_mode));
  for (const PlannedModule& m : plan.modules) {
    if (!m.quantized()) continue;
    if (model::linear_role_is_routed_expert(m.role) && m.scheme->gptq_solved()) scale_mode = "gptq";
    if (!model::linear_role_is_routed_expert(m.role) && m.scheme->scheme.weights.strategy == Strategy::kBlock) {
      strategy = "block";
    }
  }
  ordered_json dense = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", strategy}};
  if (strategy == "block") dense["block_size"] = {128, 128};
  const ordered_json act16 = {{"num_bits", 16}, {"type", "float"}};
  cfg["expert_dtype"] = "int4";
  cfg["quantization_config"] = {
      {"quant_method", "dsv4_int"},
      {"format", "int_packed"},
      {"config_groups",
       {{"experts_w4a16",
         {{"weights",
           {{"num_bits", 4}, {"type", "int"}, {"format", "int4"}, {"symmetric", true}, {"group_size", 32},
            {"strategy", "group"}, {"scale_mode", scale_mode}}},
          {"input_activations", act16},
          {"targets", {"*.ffn.experts.*.w1", "*.ffn.experts.*.w2", "*.ffn.experts.*.w3"}}}},
        {"linears_w8a16",
         {{"weights", dense},
          {"input_activations", act16},
          {"targets",
           {"*.attn.wq_a", "*.attn.wq_b", "*.attn.wkv", "*.attn.wo_a", "*.attn.wo_b", "*.attn.indexer.wq_b",
            "*.attn.indexer.compressor.wkv", "*.attn.indexer.compressor.wgate", "*.ffn.shared_experts.w1",
            "*.ffn.shared_experts.w2", "*.ffn.shared_experts.w3", "mtp.*.e_proj", "mtp.*.h_proj"}}}}}},
      {"ignore",
       {"embed", "head", "norm", "lm_head", "*norm.weight", "attn.attn_sink", "*.gate.*", "hc_*", "*.hc_attn_*",
        "*.hc_ffn_*"}}};
  // The fork resolves every entry fail-closed at startup; this is the converter's list as published.
  cfg["vllm"] = {{"kernels",
                  {"flash_mla.sparse_mla_decode_int8", "flash_mla.sparse_mla_prefill_int8",
                   "vllm._custom_ops.indexer_k_quant_and_cache_int8",
                   "vllm.models.deepseek_v4.common.ops.fused_indexer_q.fused_indexer_q_rope_quant_int8",
                   "vllm.model_executor.layers.quantization.utils.marlin_utils.marlin_act_int8_process_scales",
                   "vllm.model_executor.layers.sparse_attn_indexer.streaming_prefill_topk"}},
                 {"cache_type", "int8_ds_mla"}};
  return cfg;
}

std::vector<std::string> appmana_config_resolve_check(const nlohmann::ordered_json& q, const ModulePlan& plan) {
  const auto globs = [&](const char* group) {
    std::vector<std::string> out;
    if (q.is_object() && q.contains("config_groups") && q["config_groups"].contains(group) &&
        q["config_groups"][group].contains("targets") && q["config_groups"][group]["targets"].is_array()) {
      for (const auto& t : q["config_groups"][group]["targets"]) {
        if (t.is_string()) out.push_back(t.get<std::string>());
      }
    }
    return out;
  };
  const std::vector<std::string> experts = globs("experts_w4a16"), linears = globs("linears_w8a16");
  const auto matches = [](const std::vector<std::string>& g, const std::string& name) {
    for (const std::string& p : g) {
      if (fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
    }
    return false;
  };
  std::vector<std::string> problems;
  for (const PlannedModule& m : plan.modules) {
    if (!m.quantized()) continue;
    const bool int4 = m.scheme->scheme.weights.num_bits == 4;
    if (!matches(int4 ? experts : linears, m.names.release)) {
      problems.push_back(m.names.release + ": planned INT" + (int4 ? "4" : "8") + ", but no " +
                         (int4 ? "experts_w4a16" : "linears_w8a16") + " target matches it");
    }
  }
  return problems;
}

}  // namespace dsv4::calib

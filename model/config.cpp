// config.cpp: ModelConfig's built-in shapes (flash, tiny), the release-spelling writer, the
// consistency check, the layer schedule and value_diff. Parsing is in config_parse.cpp; the facts
// confirmed from transformers 5.17.0 and vLLM 0.33.0 are listed at the top of that file.
#include "model/config.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "common/check.h"
#include "model/config_fields.h"

namespace dsv4::model {
namespace {

using json = nlohmann::json;
using namespace config_fields;

// Writes a float-typed field, keeping an integer JSON type when the source used one and the value
// is unchanged (the release writes rope_theta as 10000); otherwise a JSON float, which
// transformers' strict float fields require.
void put_float(json& out, const char* key, double v) {
  auto it = out.find(key);
  if (it != out.end() && it->is_number_integer() && static_cast<double>(it->get<int64_t>()) == v)
    return;
  out[key] = v;
}

}  // namespace

ModelConfig ModelConfig::flash(int num_layers, int num_experts) {
  ModelConfig c;  // member defaults are the release values (reference §1.1)
  c.origin =
      "built-in flash(" + std::to_string(num_layers) + ", " + std::to_string(num_experts) + ")";
  c.num_layers = num_layers;
  c.compress_ratios.clear();
  // Release schedule: two sliding layers, layer 2 CSA, then HCA on odd and CSA on even layers.
  for (int i = 0; i < num_layers; ++i)
    c.compress_ratios.push_back(i < 2 ? 0 : (i % 2 == 1 ? 128 : 4));
  c.compress_ratios.push_back(0);  // the MTP block
  c.num_hash_layers = std::min(3, num_layers);
  c.n_routed_experts = num_experts;
  c.num_experts_per_tok = std::min(6, num_experts);
  c.check();
  return c;
}

ModelConfig ModelConfig::tiny() {
  ModelConfig c;
  c.origin = "built-in tiny";
  c.vocab_size = 512;
  c.hidden_size = 256;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 1;
  c.head_dim = 64;
  c.rope_head_dim = 32;
  c.q_lora_rank = 128;
  c.o_groups = 2;
  c.o_lora_rank = 64;
  c.sliding_window = 16;
  // HCA keeps the release ratio 128: transformers 5.17 maps compress_ratios through the fixed
  // table {0, 4, 128} (KeyError on 8), so any other ratio would make config.json unloadable there.
  c.compress_ratios = {0, 4, 128, 4, 0};  // sliding (hash), CSA, HCA, CSA, MTP sliding
  c.num_hash_layers = 1;
  c.rope_theta = 10000.0;
  c.compress_rope_theta = 160000.0;
  c.yarn = YarnScaling{true, 16.0, 64, 32.0, 1.0};
  c.max_position_embeddings = 4096;
  c.index_n_heads = 2;
  c.index_head_dim = 64;
  c.index_topk = 4;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_shared_experts = 1;
  c.moe_intermediate_size = 128;
  c.hc_mult = 4;
  c.hc_sinkhorn_iters = 20;
  c.num_nextn_predict_layers = 1;
  c.check();
  return c;
}

json ModelConfig::to_release_json() const {
  json out = source.is_object() ? source : json::object();
  for (const char* key : kTransformersOnlyKeys) out.erase(key);
  out["architectures"] = json::array({"DeepseekV4ForCausalLM"});
  out["model_type"] = "deepseek_v4";
  out["torch_dtype"] = "bfloat16";
  for (const auto& [key, field] : kRequiredInts) out[key] = this->*field;
  for (const auto& [key, field] : kOptionalInts) out[key] = this->*field;
  for (const auto& [key, field] : kFloats) put_float(out, key, this->*field);
  for (const auto& [key, field] : kStrings) out[key] = this->*field;
  for (const auto& [key, field] : kBools) out[key] = this->*field;
  out["qk_rope_head_dim"] = rope_head_dim;
  out["max_position_embeddings"] = max_position_embeddings;
  out["compress_ratios"] = compress_ratios;
  out["num_hash_layers"] = num_hash_layers;
  if (yarn.enabled) {
    json y = out.contains("rope_scaling") && out["rope_scaling"].is_object() ? out["rope_scaling"]
                                                                             : json::object();
    y.erase("rope_type");
    y["type"] = "yarn";
    put_float(y, "factor", yarn.factor);
    y["original_max_position_embeddings"] = yarn.original_max_position_embeddings;
    put_float(y, "beta_fast", yarn.beta_fast);
    put_float(y, "beta_slow", yarn.beta_slow);
    out["rope_scaling"] = y;
  } else {
    out.erase("rope_scaling");
  }
  // vLLM accepts only fp4/fp8; an unquantized model simply has no expert_dtype.
  if (expert_dtype == "bf16")
    out.erase("expert_dtype");
  else
    out["expert_dtype"] = expert_dtype;
  if (source_fp8) {
    json q = out.contains("quantization_config") && out["quantization_config"].is_object()
                 ? out["quantization_config"]
                 : json::object();
    q["quant_method"] = "fp8";
    q["fmt"] = "e4m3";
    if (!q.contains("activation_scheme")) q["activation_scheme"] = "dynamic";
    if (!scale_fmt.empty()) q["scale_fmt"] = scale_fmt;
    q["weight_block_size"] = json::array({fp8_block, fp8_block});
    out["quantization_config"] = q;
  }
  const auto eos = out.find("eos_token_id");  // keep a transformers-style list if it agrees
  if (eos == out.end() || !eos->is_array() || eos->empty() || (*eos)[0] != eos_token_id)
    out["eos_token_id"] = eos_token_id;
  for (const auto& [key, value] : {std::pair<const char*, json>{"attention_bias", false},
                                   {"attention_dropout", 0.0},
                                   {"initializer_range", 0.02},
                                   {"use_cache", true}})
    if (!out.contains(key)) out[key] = value;
  return out;
}

void ModelConfig::check() const {
  const char* o = origin.c_str();
  for (const auto& [name, field] : kRequiredInts)
    DSV4_USER_CHECK("config", this->*field > 0, "%s: %s = %d must be positive", o, name,
                  this->*field);
  const std::pair<const char*, int64_t> positive[] = {
      {"num_key_value_heads", num_kv_heads},
      {"qk_rope_head_dim", rope_head_dim},
      {"hc_sinkhorn_iters", hc_sinkhorn_iters},
      {"weight_block_size", fp8_block},
      {"max_position_embeddings", max_position_embeddings}};
  for (const auto& [name, value] : positive)
    DSV4_USER_CHECK("config", value > 0, "%s: %s = %lld must be positive", o, name,
                  static_cast<long long>(value));
  const std::pair<const char*, int> non_negative[] = {
      {"n_shared_experts", n_shared_experts},
      {"num_hash_layers", num_hash_layers},
      {"num_nextn_predict_layers", num_nextn_predict_layers}};
  for (const auto& [name, value] : non_negative)
    DSV4_USER_CHECK("config", value >= 0, "%s: %s = %d must not be negative", o, name, value);
  DSV4_USER_CHECK("config", num_heads % o_groups == 0,
                "%s: num_attention_heads = %d is not divisible by o_groups = %d", o, num_heads,
                o_groups);
  DSV4_USER_CHECK("config", num_heads % num_kv_heads == 0,
                "%s: num_attention_heads = %d is not divisible by num_key_value_heads = %d", o,
                num_heads, num_kv_heads);
  DSV4_USER_CHECK("config", rope_head_dim <= head_dim && rope_head_dim % 2 == 0,
                "%s: qk_rope_head_dim = %d must be even and <= head_dim = %d", o, rope_head_dim,
                head_dim);
  DSV4_USER_CHECK(
      "config", rope_head_dim <= index_head_dim,
      "%s: qk_rope_head_dim = %d must be <= index_head_dim = %d (the indexer ropes the same dims)",
      o, rope_head_dim, index_head_dim);
  DSV4_USER_CHECK("config", num_experts_per_tok <= n_routed_experts,
                "%s: num_experts_per_tok = %d exceeds n_routed_experts = %d", o,
                num_experts_per_tok, n_routed_experts);
  DSV4_USER_CHECK("config", static_cast<int>(compress_ratios.size()) >= num_layers,
                "%s: compress_ratios has %zu entries, fewer than num_hidden_layers = %d", o,
                compress_ratios.size(), num_layers);
  for (size_t i = 0; i < compress_ratios.size(); ++i)
    DSV4_USER_CHECK("config", compress_ratios[i] >= 0, "%s: compress_ratios[%zu] = %d is negative", o,
                  i, compress_ratios[i]);
  // The compressor's position embedding (ape) has `ratio` rows: 32x the release's 128 at most.
  for (size_t i = 0; i < compress_ratios.size(); ++i)
    DSV4_USER_CHECK("config", compress_ratios[i] <= 4096,
                    "%s: \"compress_ratios\"[%zu] = %d is out of range: expected 0 to 4096 (32x the release's 128)",
                    o, i, compress_ratios[i]);
  DSV4_USER_CHECK("config", num_hash_layers <= num_layers,
                "%s: num_hash_layers = %d exceeds num_hidden_layers = %d", o, num_hash_layers,
                num_layers);
  DSV4_USER_CHECK(
      "config", !yarn.enabled || (yarn.factor > 0 && yarn.original_max_position_embeddings > 0),
      "%s: rope_scaling needs factor > 0 and original_max_position_embeddings > 0, got %g and %lld",
      o, yarn.factor, static_cast<long long>(yarn.original_max_position_embeddings));
  DSV4_USER_CHECK("config", rms_norm_eps > 0 && hc_eps > 0,
                "%s: rms_norm_eps = %g and hc_eps = %g must be positive", o, rms_norm_eps, hc_eps);
  DSV4_USER_CHECK("config", expert_dtype == "fp4" || expert_dtype == "fp8" || expert_dtype == "bf16",
                "%s: expert_dtype = \"%s\", expected fp4, fp8 or bf16", o, expert_dtype.c_str());
  DSV4_USER_CHECK(
      "config",
      scoring_func == "sqrtsoftplus" || scoring_func == "softmax" || scoring_func == "sigmoid",
      "%s: scoring_func = \"%s\", expected sqrtsoftplus, softmax or sigmoid", o,
      scoring_func.c_str());
  DSV4_USER_CHECK("config", hidden_act == "silu", "%s: hidden_act = \"%s\", expected silu", o,
                hidden_act.c_str());
}

LayerSpec ModelConfig::layer(int index) const {
  // Any index past the main layers is an MTP block: the stage count comes from the checkpoint's
  // mtp.S. prefixes (DESIGN §2), and blocks without a compress_ratios entry are sliding.
  DSV4_CHECK_IN("config", index >= 0, "%s: layer index %d is negative", origin.c_str(), index);
  LayerSpec s;
  s.compress_ratio = index < static_cast<int>(compress_ratios.size()) ? compress_ratios[index] : 0;
  s.attention = s.compress_ratio == 0   ? AttentionKind::kSliding
                : s.compress_ratio == 4 ? AttentionKind::kCsa
                                        : AttentionKind::kHca;
  // MTP blocks route by learned top-k with a bias, whatever num_hash_layers says.
  s.routing =
      index < num_layers && index < num_hash_layers ? RoutingKind::kHash : RoutingKind::kLearned;
  return s;
}

std::vector<std::string> ModelConfig::value_diff(const ModelConfig& other) const {
  std::vector<std::string> out;
  auto add = [&out](const std::string& name, const auto& a, const auto& b) {
    if (a == b) return;
    std::ostringstream s;
    s << name << ": " << a << " vs " << b;
    out.push_back(s.str());
  };
  for (const auto& [key, field] : kRequiredInts) add(key, this->*field, other.*field);
  for (const auto& [key, field] : kOptionalInts) add(key, this->*field, other.*field);
  for (const auto& [key, field] : kFloats) add(key, this->*field, other.*field);
  for (const auto& [key, field] : kStrings) add(key, this->*field, other.*field);
  for (const auto& [key, field] : kBools) add(key, this->*field, other.*field);
  add("qk_rope_head_dim", rope_head_dim, other.rope_head_dim);
  add("max_position_embeddings", max_position_embeddings, other.max_position_embeddings);
  add("num_hash_layers", num_hash_layers, other.num_hash_layers);
  add("eos_token_id", eos_token_id, other.eos_token_id);
  add("yarn.enabled", yarn.enabled, other.yarn.enabled);
  add("yarn.factor", yarn.factor, other.yarn.factor);
  add("yarn.original_max_position_embeddings", yarn.original_max_position_embeddings,
      other.yarn.original_max_position_embeddings);
  add("yarn.beta_fast", yarn.beta_fast, other.yarn.beta_fast);
  add("yarn.beta_slow", yarn.beta_slow, other.yarn.beta_slow);
  add("expert_dtype", expert_dtype, other.expert_dtype);
  add("source_fp8", source_fp8, other.source_fp8);
  add("fp8_block", fp8_block, other.fp8_block);
  add("scale_fmt", scale_fmt, other.scale_fmt);
  if (compress_ratios != other.compress_ratios) {
    std::ostringstream s;
    s << "compress_ratios:";
    for (int v : compress_ratios) s << " " << v;
    s << " vs";
    for (int v : other.compress_ratios) s << " " << v;
    out.push_back(s.str());
  }
  return out;
}

}  // namespace dsv4::model


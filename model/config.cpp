// config.cpp: ModelConfig from either spelling of config.json, the release writer, the built-in
// shapes (flash, tiny) and the consistency check.
//
// Confirmed against transformers 5.17.0 (wheel from PyPI,
// transformers/models/deepseek_v4/configuration_deepseek_v4.py, and by running DeepseekV4Config on
// the release dict and on the reference's tiny working set, then save_pretrained):
//   - layer_types values are exactly "sliding_attention", "compressed_sparse_attention",
//     "heavily_compressed_attention"; mlp_layer_types values "hash_moe", "moe".
//   - compress_rates is a dict keyed by layer type, default {csa: 4, hca: 128}.
//   - The legacy keys compress_ratios, num_hash_layers, qk_rope_head_dim (and compress_rate_csa /
//     compress_rate_hca) are popped in __post_init__ and folded in: layer_types from
//     compress_ratios through the FIXED map {0: sliding, 4: csa, 128: hca} (so a ratio such as 8,
//     the tiny model's HCA ratio, raises KeyError there: transformers 5.17 cannot read a release
//     spelling with ratios outside {0, 4, 128}), truncated to num_hidden_layers (the MTP entry is
//     dropped); mlp_layer_types = min(n, num_hash_layers) x "hash_moe" then "moe" (default 3);
//     partial_rotary_factor = qk_rope_head_dim / head_dim (default 64/512), and qk_rope_head_dim
//     = int(head_dim * partial_rotary_factor) is written back by save_pretrained as well.
//   - A layer_types given explicitly wins over compress_ratios (compress_ratios is then ignored).
//   - rope_parameters is either nested {main: {rope_type: default, rope_theta,
//     partial_rotary_factor}, compress: {rope_type: yarn, factor, original_max_position_embeddings,
//     beta_fast, beta_slow, rope_theta, partial_rotary_factor, attention_factor: 1.0}} (what
//     save_pretrained writes) or flat {rope_type: yarn, ...} (those keys go to `compress`, whose
//     rope_theta is compress_rope_theta). A top-level rope_scaling {type: yarn, ...} ends up as the
//     nested compress entry. Without rope_scaling the compress rope is "default" (no YaRN).
//   - save_pretrained writes "dtype" (not "torch_dtype") and keeps unknown keys (expert_dtype,
//     quantization_config, topk_method) as plain attributes.
//   - The config class is @strict: float fields (swiglu_limit, hc_eps, routed_scaling_factor, ...)
//     reject JSON integers and int fields reject floats, so the writer keeps those types.
// Confirmed against vLLM 0.33.0 (vllm/models/deepseek_v4/nvidia/model.py, quant_config.py): vLLM
// reads compress_ratios[layer], num_hash_layers, qk_rope_head_dim, quantization_config["scale_fmt"]
// and topk_method == "noaux_tc" (which creates the router bias) directly from config.json;
// expert_dtype defaults to "fp4" there and must be "fp4" or "fp8".
#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>

#include "common/check.h"
#include "common/fs.h"

namespace dsv4::model {
namespace {

using json = nlohmann::json;

constexpr const char* kSliding = "sliding_attention";
constexpr const char* kCsa = "compressed_sparse_attention";
constexpr const char* kHca = "heavily_compressed_attention";

// Keys that only the transformers spelling has; a release config never carries them.
constexpr const char* kTransformersOnlyKeys[] = {"layer_types", "mlp_layer_types", "compress_rates",
                                                 "rope_parameters", "partial_rotary_factor",
                                                 "dtype"};

// Typed, path-aware access to one JSON object. Null counts as absent (transformers writes
// `"pad_token_id": null`); errors name the origin, the dotted key and what was expected.
class Reader {
 public:
  Reader(const json& j, const std::string& origin, std::string prefix = "")
      : j_(j), origin_(origin), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return find(key) != nullptr; }
  std::string path(const char* key) const { return prefix_ + key; }

  const json& require(const char* key, const char* what) const {
    const json* v = find(key);
    if (v == nullptr)
      DSV4_FAIL("config", "%s: required key \"%s\" is missing (expected %s)", origin_.c_str(),
                path(key).c_str(), what);
    return *v;
  }
  int64_t integer(const char* key) const { return as_integer(require(key, "an integer"), key); }
  int64_t integer_or(const char* key, int64_t fallback) const {
    const json* v = find(key);
    return v ? as_integer(*v, key) : fallback;
  }
  int to_int(const char* key) const { return narrow(integer(key), key); }
  int to_int_or(const char* key, int fallback) const { return narrow(integer_or(key, fallback), key); }
  double number_or(const char* key, double fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_number()) bad_type(key, "a number", *v);
    return v->get<double>();
  }
  double number(const char* key) const {
    require(key, "a number");
    return number_or(key, 0.0);
  }
  bool boolean_or(const char* key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) bad_type(key, "true or false", *v);
    return v->get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) bad_type(key, "a string", *v);
    return v->get<std::string>();
  }
  const json& array(const char* key) const {
    const json& v = require(key, "an array");
    if (!v.is_array()) bad_type(key, "an array", v);
    return v;
  }
  // Sub-reader for a nested object; nullopt when absent.
  std::optional<Reader> object(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_object()) bad_type(key, "an object", *v);
    return Reader(*v, origin_, path(key) + ".");
  }
  int element_int(const json& arr, const char* key, size_t i) const {
    const std::string name = path(key) + "[" + std::to_string(i) + "]";
    if (!arr[i].is_number_integer())
      DSV4_FAIL("config", "%s: \"%s\" must be an integer, got %s", origin_.c_str(), name.c_str(),
                arr[i].dump().c_str());
    return narrow(arr[i].get<int64_t>(), name.c_str());
  }
  std::string element_string(const json& arr, const char* key, size_t i) const {
    if (!arr[i].is_string())
      DSV4_FAIL("config", "%s: \"%s[%zu]\" must be a string, got %s", origin_.c_str(),
                path(key).c_str(), i, arr[i].dump().c_str());
    return arr[i].get<std::string>();
  }
  [[noreturn]] void fail(const char* key, const std::string& message) const {
    DSV4_FAIL("config", "%s: \"%s\" %s", origin_.c_str(), path(key).c_str(), message.c_str());
  }

 private:
  const json* find(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t as_integer(const json& v, const char* key) const {
    // A float such as 4096.0 is rejected: transformers' strict config rejects it too.
    if (!v.is_number_integer()) bad_type(key, "an integer", v);
    return v.get<int64_t>();
  }
  int narrow(int64_t v, const std::string& name) const {
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
      DSV4_FAIL("config", "%s: \"%s\" = %lld does not fit in a 32-bit int", origin_.c_str(),
                (prefix_ + name).c_str(), static_cast<long long>(v));
    return static_cast<int>(v);
  }
  [[noreturn]] void bad_type(const char* key, const char* what, const json& v) const {
    DSV4_FAIL("config", "%s: \"%s\" must be %s, got %s", origin_.c_str(), path(key).c_str(), what,
              v.dump().c_str());
  }

  const json& j_;
  const std::string& origin_;
  std::string prefix_;
};

// YaRN block of either rope_scaling (release) or rope_parameters[.compress] (transformers).
YarnScaling parse_rope(const Reader& r) {
  YarnScaling y;
  const std::string type = r.has("rope_type") ? r.string_or("rope_type", "") : r.string_or("type", "default");
  if (type == "default") {
    y.enabled = false;
    return y;
  }
  if (type != "yarn") r.fail("rope_type", "= \"" + type + "\" is not supported (expected yarn or default)");
  y.enabled = true;
  y.factor = r.number("factor");
  y.original_max_position_embeddings = r.integer("original_max_position_embeddings");
  y.beta_fast = r.number_or("beta_fast", 32.0);  // transformers' YaRN defaults
  y.beta_slow = r.number_or("beta_slow", 1.0);
  // transformers forces 1.0 (the reference applies no YaRN magnitude scaling); another value
  // would make the oracle disagree with our forward, so refuse it instead of ignoring it.
  const double attention_factor = r.number_or("attention_factor", 1.0);
  if (attention_factor != 1.0)
    r.fail("attention_factor", "= " + std::to_string(attention_factor) + " is not supported (DeepSeek-V4 uses 1.0)");
  return y;
}

// Writes a float-typed field, keeping an integer JSON type when the source used one and the value
// is unchanged (the release writes rope_theta as 10000); otherwise a JSON float, which
// transformers' strict float fields require.
void put_float(json& out, const char* key, double v) {
  auto it = out.find(key);
  if (it != out.end() && it->is_number_integer() && static_cast<double>(it->get<int64_t>()) == v) return;
  out[key] = v;
}

}  // namespace

ModelConfig ModelConfig::from_file(const std::string& path) {
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    DSV4_FAIL("config", "%s: not valid JSON: %s", path.c_str(), e.what());
  }
  return from_json(j, path);
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& origin) {
  DSV4_CHECK_IN("config", j.is_object(), "%s: the config must be a JSON object, got %s", origin.c_str(),
                j.type_name());
  const Reader r(j, origin);
  ModelConfig c;  // defaults are the release values; only optional keys fall back to them
  c.source = j;
  c.origin = origin;

  const std::string model_type = r.string_or("model_type", "deepseek_v4");
  if (model_type != "deepseek_v4") r.fail("model_type", "= \"" + model_type + "\", expected \"deepseek_v4\"");

  c.vocab_size = r.to_int("vocab_size");
  c.hidden_size = r.to_int("hidden_size");
  c.num_layers = r.to_int("num_hidden_layers");
  c.num_heads = r.to_int("num_attention_heads");
  c.num_kv_heads = r.to_int_or("num_key_value_heads", c.num_kv_heads);
  c.head_dim = r.to_int("head_dim");
  c.q_lora_rank = r.to_int("q_lora_rank");
  c.o_groups = r.to_int("o_groups");
  c.o_lora_rank = r.to_int("o_lora_rank");
  c.sliding_window = r.to_int("sliding_window");
  c.max_position_embeddings = r.integer_or("max_position_embeddings", c.max_position_embeddings);
  c.index_n_heads = r.to_int("index_n_heads");
  c.index_head_dim = r.to_int("index_head_dim");
  c.index_topk = r.to_int("index_topk");
  c.n_routed_experts = r.to_int("n_routed_experts");
  c.num_experts_per_tok = r.to_int("num_experts_per_tok");
  c.n_shared_experts = r.to_int_or("n_shared_experts", c.n_shared_experts);
  c.moe_intermediate_size = r.to_int("moe_intermediate_size");
  c.scoring_func = r.string_or("scoring_func", c.scoring_func);
  c.topk_method = r.string_or("topk_method", c.topk_method);
  c.norm_topk_prob = r.boolean_or("norm_topk_prob", c.norm_topk_prob);
  c.routed_scaling_factor = r.number_or("routed_scaling_factor", c.routed_scaling_factor);
  c.swiglu_limit = r.number_or("swiglu_limit", c.swiglu_limit);
  c.hidden_act = r.string_or("hidden_act", c.hidden_act);
  c.hc_mult = r.to_int("hc_mult");
  c.hc_sinkhorn_iters = r.to_int_or("hc_sinkhorn_iters", c.hc_sinkhorn_iters);
  c.hc_eps = r.number_or("hc_eps", c.hc_eps);
  c.rms_norm_eps = r.number_or("rms_norm_eps", c.rms_norm_eps);
  c.num_nextn_predict_layers = r.to_int_or("num_nextn_predict_layers", c.num_nextn_predict_layers);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", c.tie_word_embeddings);
  c.bos_token_id = r.to_int_or("bos_token_id", c.bos_token_id);
  if (r.has("eos_token_id") && j["eos_token_id"].is_array()) {  // transformers allows a list
    const json& eos = j["eos_token_id"];
    if (eos.empty()) r.fail("eos_token_id", "is an empty list");
    c.eos_token_id = r.element_int(eos, "eos_token_id", 0);
  } else {
    c.eos_token_id = r.to_int_or("eos_token_id", c.eos_token_id);
  }
  c.rope_theta = r.number_or("rope_theta", c.rope_theta);
  c.compress_rope_theta = r.number_or("compress_rope_theta", c.compress_rope_theta);

  // Rope dims: release qk_rope_head_dim, transformers partial_rotary_factor (int() truncation as
  // in transformers); both present (transformers' own output) must agree.
  const bool has_rope_dim = r.has("qk_rope_head_dim"), has_factor = r.has("partial_rotary_factor");
  const bool release_layers = r.has("compress_ratios");
  if (has_rope_dim) c.rope_head_dim = r.to_int("qk_rope_head_dim");
  if (has_factor) {
    const int from_factor = static_cast<int>(c.head_dim * r.number_or("partial_rotary_factor", 0.0));
    if (has_rope_dim && from_factor != c.rope_head_dim)
      r.fail("partial_rotary_factor", "gives " + std::to_string(from_factor) + " rope dims but qk_rope_head_dim = " +
                                          std::to_string(c.rope_head_dim));
    c.rope_head_dim = from_factor;
  }
  if (!has_rope_dim && !has_factor) {
    if (release_layers) r.require("qk_rope_head_dim", "an integer");
    c.rope_head_dim = c.head_dim / 8;  // transformers' default_partial_rotary_factor = 64 / 512
  }

  // Layer schedule. compress_ratios (release) lists main layers then MTP blocks; layer_types
  // (transformers) lists main layers only and MTP blocks are sliding.
  c.compress_ratios.clear();
  const int n = c.num_layers;
  if (release_layers) {
    const json& ratios = r.array("compress_ratios");
    for (size_t i = 0; i < ratios.size(); ++i) {
      c.compress_ratios.push_back(r.element_int(ratios, "compress_ratios", i));
      if (c.compress_ratios.back() < 0) r.fail("compress_ratios", "[" + std::to_string(i) + "] is negative");
    }
    // Both spellings present: transformers would follow layer_types, we follow compress_ratios, so
    // they must describe the same schedule.
    if (r.has("layer_types")) {
      const json& types = r.array("layer_types");
      for (int i = 0; i < n && i < static_cast<int>(std::min(types.size(), c.compress_ratios.size())); ++i) {
        const int ratio = c.compress_ratios[static_cast<size_t>(i)];
        const char* expected = ratio == 0 ? kSliding : ratio == 4 ? kCsa : kHca;
        if (r.element_string(types, "layer_types", static_cast<size_t>(i)) != expected)
          r.fail("layer_types", "[" + std::to_string(i) + "] disagrees with compress_ratios[" + std::to_string(i) +
                                    "] = " + std::to_string(ratio) + " (expected " + expected + ")");
      }
    }
  } else if (r.has("layer_types")) {
    const json& types = r.array("layer_types");
    int csa_ratio = 4, hca_ratio = 128;
    if (auto rates = r.object("compress_rates")) {
      csa_ratio = rates->to_int_or(kCsa, csa_ratio);
      hca_ratio = rates->to_int_or(kHca, hca_ratio);
    }
    // Our kinds follow the ratio (4 = CSA with indexer, as in the reference and vLLM), so the
    // transformers type names must agree with it.
    if (csa_ratio != 4) r.fail("compress_rates", "." + std::string(kCsa) + " = " + std::to_string(csa_ratio) + ", expected 4");
    if (hca_ratio <= 0 || hca_ratio == 4)
      r.fail("compress_rates", "." + std::string(kHca) + " = " + std::to_string(hca_ratio) + ", expected > 0 and != 4");
    if (types.size() < static_cast<size_t>(std::max(n, 0)))
      r.fail("layer_types", "has " + std::to_string(types.size()) + " entries, fewer than num_hidden_layers = " +
                                std::to_string(n));
    for (int i = 0; i < n; ++i) {  // transformers truncates longer lists the same way
      const std::string t = r.element_string(types, "layer_types", static_cast<size_t>(i));
      if (t == kSliding) c.compress_ratios.push_back(0);
      else if (t == kCsa) c.compress_ratios.push_back(csa_ratio);
      else if (t == kHca) c.compress_ratios.push_back(hca_ratio);
      else r.fail("layer_types", "[" + std::to_string(i) + "] = \"" + t + "\" is not one of " + kSliding + ", " + kCsa + ", " + kHca);
    }
  } else {
    DSV4_FAIL("config", "%s: required key \"compress_ratios\" (release) or \"layer_types\" (transformers) is missing",
              origin.c_str());
  }
  // MTP blocks missing from the list are sliding (transformers never lists them).
  if (static_cast<int>(c.compress_ratios.size()) >= n)
    while (static_cast<int>(c.compress_ratios.size()) < n + c.num_nextn_predict_layers) c.compress_ratios.push_back(0);

  // Hash-routed layers: num_hash_layers (release) or the leading "hash_moe" run of
  // mlp_layer_types; transformers' default is 3.
  int hash_from_types = -1;
  if (r.has("mlp_layer_types")) {
    const json& types = r.array("mlp_layer_types");
    if (types.size() < static_cast<size_t>(std::max(n, 0)))
      r.fail("mlp_layer_types", "has " + std::to_string(types.size()) + " entries, fewer than num_hidden_layers = " +
                                    std::to_string(n));
    hash_from_types = 0;
    for (int i = 0; i < n; ++i) {
      const std::string t = r.element_string(types, "mlp_layer_types", static_cast<size_t>(i));
      if (t == "hash_moe" && hash_from_types == i) ++hash_from_types;
      else if (t == "hash_moe") r.fail("mlp_layer_types", "[" + std::to_string(i) + "] = hash_moe follows a moe layer; hash layers must come first");
      else if (t != "moe") r.fail("mlp_layer_types", "[" + std::to_string(i) + "] = \"" + t + "\" is not hash_moe or moe");
    }
  }
  if (r.has("num_hash_layers")) {
    c.num_hash_layers = r.to_int("num_hash_layers");
    if (hash_from_types >= 0 && hash_from_types != c.num_hash_layers)
      r.fail("mlp_layer_types", "has " + std::to_string(hash_from_types) + " hash_moe layers but num_hash_layers = " +
                                    std::to_string(c.num_hash_layers));
  } else if (hash_from_types >= 0) {
    c.num_hash_layers = hash_from_types;
  } else if (release_layers) {
    r.require("num_hash_layers", "an integer");  // vLLM reads it directly
  } else {
    c.num_hash_layers = std::min(3, n);
  }

  // RoPE: release top-level rope_scaling, else transformers rope_parameters (nested or flat).
  c.yarn.enabled = false;
  if (auto scaling = r.object("rope_scaling")) {
    c.yarn = parse_rope(*scaling);
  } else if (auto params = r.object("rope_parameters")) {
    auto main = params->object("main");
    auto compress = params->object("compress");
    if (main && compress) {
      c.rope_theta = main->number_or("rope_theta", c.rope_theta);
      c.compress_rope_theta = compress->number_or("rope_theta", c.compress_rope_theta);
      c.yarn = parse_rope(*compress);
    } else {
      c.yarn = parse_rope(*params);
    }
  }

  // Source precision: quant_method fp8 = the release's FP8 linears; any other method (e.g. our own
  // compressed-tensors output) is passed through untouched by to_release_json().
  c.source_fp8 = false;
  if (auto q = r.object("quantization_config")) {
    const std::string method = q->string_or("quant_method", "");
    if (method.empty()) q->require("quant_method", "a string");
    if (method == "fp8") {
      c.source_fp8 = true;
      const std::string fmt = q->string_or("fmt", "e4m3");
      if (fmt != "e4m3") q->fail("fmt", "= \"" + fmt + "\", expected e4m3");
      c.scale_fmt = q->string_or("scale_fmt", "");
      c.fp8_block = 128;
      if (q->has("weight_block_size")) {
        const json& block = q->array("weight_block_size");
        if (block.size() != 2) q->fail("weight_block_size", "must have 2 entries, got " + block.dump());
        const int rows = q->element_int(block, "weight_block_size", 0);
        const int cols = q->element_int(block, "weight_block_size", 1);
        if (rows != cols) q->fail("weight_block_size", "= " + block.dump() + " is not square");
        c.fp8_block = rows;
      }
    }
  }
  c.expert_dtype = r.string_or("expert_dtype", r.has("quantization_config") ? "fp4" : "bf16");

  c.check();
  return c;
}

ModelConfig ModelConfig::flash(int num_layers, int num_experts) {
  ModelConfig c;  // member defaults are the release values (reference §1.1)
  c.origin = "built-in flash(" + std::to_string(num_layers) + ", " + std::to_string(num_experts) + ")";
  c.num_layers = num_layers;
  c.compress_ratios.clear();
  // Release schedule: two sliding layers, layer 2 CSA, then HCA on odd and CSA on even layers.
  for (int i = 0; i < num_layers; ++i) c.compress_ratios.push_back(i < 2 ? 0 : (i % 2 == 1 ? 128 : 4));
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
  c.compress_ratios = {0, 4, 8, 4, 0};  // sliding (hash), CSA, HCA, CSA, MTP sliding
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
  out["vocab_size"] = vocab_size;
  out["hidden_size"] = hidden_size;
  out["num_hidden_layers"] = num_layers;
  out["num_attention_heads"] = num_heads;
  out["num_key_value_heads"] = num_kv_heads;
  out["head_dim"] = head_dim;
  out["qk_rope_head_dim"] = rope_head_dim;
  out["q_lora_rank"] = q_lora_rank;
  out["o_groups"] = o_groups;
  out["o_lora_rank"] = o_lora_rank;
  out["sliding_window"] = sliding_window;
  out["compress_ratios"] = compress_ratios;
  put_float(out, "compress_rope_theta", compress_rope_theta);
  put_float(out, "rope_theta", rope_theta);
  if (yarn.enabled) {
    json s = out.contains("rope_scaling") && out["rope_scaling"].is_object() ? out["rope_scaling"] : json::object();
    s.erase("rope_type");
    s["type"] = "yarn";
    put_float(s, "factor", yarn.factor);
    s["original_max_position_embeddings"] = yarn.original_max_position_embeddings;
    put_float(s, "beta_fast", yarn.beta_fast);
    put_float(s, "beta_slow", yarn.beta_slow);
    out["rope_scaling"] = s;
  } else {
    out.erase("rope_scaling");
  }
  out["max_position_embeddings"] = max_position_embeddings;
  out["index_n_heads"] = index_n_heads;
  out["index_head_dim"] = index_head_dim;
  out["index_topk"] = index_topk;
  out["n_routed_experts"] = n_routed_experts;
  out["num_experts_per_tok"] = num_experts_per_tok;
  out["n_shared_experts"] = n_shared_experts;
  out["moe_intermediate_size"] = moe_intermediate_size;
  out["num_hash_layers"] = num_hash_layers;
  out["scoring_func"] = scoring_func;
  out["topk_method"] = topk_method;
  out["norm_topk_prob"] = norm_topk_prob;
  out["routed_scaling_factor"] = routed_scaling_factor;
  out["swiglu_limit"] = swiglu_limit;
  out["hidden_act"] = hidden_act;
  out["hc_mult"] = hc_mult;
  out["hc_sinkhorn_iters"] = hc_sinkhorn_iters;
  out["hc_eps"] = hc_eps;
  out["rms_norm_eps"] = rms_norm_eps;
  out["num_nextn_predict_layers"] = num_nextn_predict_layers;
  // vLLM accepts only fp4/fp8; an unquantized model simply has no expert_dtype.
  if (expert_dtype == "bf16") out.erase("expert_dtype");
  else out["expert_dtype"] = expert_dtype;
  if (source_fp8) {
    json q = out.contains("quantization_config") && out["quantization_config"].is_object() ? out["quantization_config"]
                                                                                            : json::object();
    q["quant_method"] = "fp8";
    q["fmt"] = "e4m3";
    if (!q.contains("activation_scheme")) q["activation_scheme"] = "dynamic";
    if (!scale_fmt.empty()) q["scale_fmt"] = scale_fmt;
    q["weight_block_size"] = json::array({fp8_block, fp8_block});
    out["quantization_config"] = q;
  }
  out["tie_word_embeddings"] = tie_word_embeddings;
  out["bos_token_id"] = bos_token_id;
  const auto eos = out.find("eos_token_id");  // keep a transformers-style list if it agrees
  if (eos == out.end() || !eos->is_array() || eos->empty() || (*eos)[0] != eos_token_id) out["eos_token_id"] = eos_token_id;
  for (const auto& [key, value] : {std::pair<const char*, json>{"attention_bias", false}, {"attention_dropout", 0.0},
                                   {"initializer_range", 0.02}, {"use_cache", true}})
    if (!out.contains(key)) out[key] = value;
  return out;
}

void ModelConfig::check() const {
  const char* o = origin.c_str();
  const std::pair<const char*, int64_t> positive[] = {
      {"vocab_size", vocab_size}, {"hidden_size", hidden_size}, {"num_hidden_layers", num_layers},
      {"num_attention_heads", num_heads}, {"num_key_value_heads", num_kv_heads}, {"head_dim", head_dim},
      {"qk_rope_head_dim", rope_head_dim}, {"q_lora_rank", q_lora_rank}, {"o_groups", o_groups},
      {"o_lora_rank", o_lora_rank}, {"sliding_window", sliding_window},
      {"max_position_embeddings", max_position_embeddings}, {"index_n_heads", index_n_heads},
      {"index_head_dim", index_head_dim}, {"index_topk", index_topk}, {"n_routed_experts", n_routed_experts},
      {"num_experts_per_tok", num_experts_per_tok}, {"moe_intermediate_size", moe_intermediate_size},
      {"hc_mult", hc_mult}, {"hc_sinkhorn_iters", hc_sinkhorn_iters}, {"weight_block_size", fp8_block}};
  for (const auto& [name, value] : positive)
    DSV4_CHECK_IN("config", value > 0, "%s: %s = %lld must be positive", o, name, static_cast<long long>(value));
  const std::pair<const char*, int> non_negative[] = {{"n_shared_experts", n_shared_experts},
                                                      {"num_hash_layers", num_hash_layers},
                                                      {"num_nextn_predict_layers", num_nextn_predict_layers}};
  for (const auto& [name, value] : non_negative)
    DSV4_CHECK_IN("config", value >= 0, "%s: %s = %d must not be negative", o, name, value);
  DSV4_CHECK_IN("config", num_heads % o_groups == 0,
                "%s: num_attention_heads = %d is not divisible by o_groups = %d", o, num_heads, o_groups);
  DSV4_CHECK_IN("config", num_heads % num_kv_heads == 0,
                "%s: num_attention_heads = %d is not divisible by num_key_value_heads = %d", o, num_heads, num_kv_heads);
  DSV4_CHECK_IN("config", rope_head_dim <= head_dim && rope_head_dim % 2 == 0,
                "%s: qk_rope_head_dim = %d must be even and <= head_dim = %d", o, rope_head_dim, head_dim);
  DSV4_CHECK_IN("config", rope_head_dim <= index_head_dim,
                "%s: qk_rope_head_dim = %d must be <= index_head_dim = %d (the indexer ropes the same dims)", o,
                rope_head_dim, index_head_dim);
  DSV4_CHECK_IN("config", num_experts_per_tok <= n_routed_experts,
                "%s: num_experts_per_tok = %d exceeds n_routed_experts = %d", o, num_experts_per_tok, n_routed_experts);
  DSV4_CHECK_IN("config", static_cast<int>(compress_ratios.size()) >= num_layers,
                "%s: compress_ratios has %zu entries, fewer than num_hidden_layers = %d", o, compress_ratios.size(),
                num_layers);
  for (size_t i = 0; i < compress_ratios.size(); ++i)
    DSV4_CHECK_IN("config", compress_ratios[i] >= 0, "%s: compress_ratios[%zu] = %d is negative", o, i,
                  compress_ratios[i]);
  DSV4_CHECK_IN("config", num_hash_layers <= num_layers,
                "%s: num_hash_layers = %d exceeds num_hidden_layers = %d", o, num_hash_layers, num_layers);
  DSV4_CHECK_IN("config", !yarn.enabled || (yarn.factor > 0 && yarn.original_max_position_embeddings > 0),
                "%s: rope_scaling needs factor > 0 and original_max_position_embeddings > 0, got %g and %lld", o,
                yarn.factor, static_cast<long long>(yarn.original_max_position_embeddings));
  DSV4_CHECK_IN("config", rms_norm_eps > 0 && hc_eps > 0, "%s: rms_norm_eps = %g and hc_eps = %g must be positive", o,
                rms_norm_eps, hc_eps);
  DSV4_CHECK_IN("config", expert_dtype == "fp4" || expert_dtype == "fp8" || expert_dtype == "bf16",
                "%s: expert_dtype = \"%s\", expected fp4, fp8 or bf16", o, expert_dtype.c_str());
  DSV4_CHECK_IN("config", scoring_func == "sqrtsoftplus" || scoring_func == "softmax" || scoring_func == "sigmoid",
                "%s: scoring_func = \"%s\", expected sqrtsoftplus, softmax or sigmoid", o, scoring_func.c_str());
  DSV4_CHECK_IN("config", hidden_act == "silu", "%s: hidden_act = \"%s\", expected silu", o, hidden_act.c_str());
}

LayerSpec ModelConfig::layer(int index) const {
  DSV4_CHECK_IN("config", index >= 0 && index < num_layers + num_nextn_predict_layers,
                "%s: layer index %d outside [0, num_hidden_layers + num_nextn_predict_layers = %d)", origin.c_str(),
                index, num_layers + num_nextn_predict_layers);
  LayerSpec s;
  s.compress_ratio = index < static_cast<int>(compress_ratios.size()) ? compress_ratios[index] : 0;
  s.attention = s.compress_ratio == 0 ? AttentionKind::kSliding
                : s.compress_ratio == 4 ? AttentionKind::kCsa
                                        : AttentionKind::kHca;
  // MTP blocks route by learned top-k with a bias, whatever num_hash_layers says.
  s.routing = index < num_layers && index < num_hash_layers ? RoutingKind::kHash : RoutingKind::kLearned;
  return s;
}

std::vector<std::string> ModelConfig::value_diff(const ModelConfig& other) const {
  std::vector<std::string> out;
  auto add = [&out](const char* name, const auto& a, const auto& b) {
    if (a == b) return;
    std::ostringstream s;
    s << name << ": ";
    if constexpr (std::is_same_v<std::decay_t<decltype(a)>, std::vector<int>>) {
      s << "[";
      for (int v : a) s << v << ",";
      s << "] vs [";
      for (int v : b) s << v << ",";
      s << "]";
    } else {
      s << a << " vs " << b;
    }
    out.push_back(s.str());
  };
  const ModelConfig& o = other;
  add("vocab_size", vocab_size, o.vocab_size);
  add("hidden_size", hidden_size, o.hidden_size);
  add("num_layers", num_layers, o.num_layers);
  add("num_heads", num_heads, o.num_heads);
  add("num_kv_heads", num_kv_heads, o.num_kv_heads);
  add("head_dim", head_dim, o.head_dim);
  add("rope_head_dim", rope_head_dim, o.rope_head_dim);
  add("q_lora_rank", q_lora_rank, o.q_lora_rank);
  add("o_groups", o_groups, o.o_groups);
  add("o_lora_rank", o_lora_rank, o.o_lora_rank);
  add("sliding_window", sliding_window, o.sliding_window);
  add("compress_ratios", compress_ratios, o.compress_ratios);
  add("rope_theta", rope_theta, o.rope_theta);
  add("compress_rope_theta", compress_rope_theta, o.compress_rope_theta);
  add("yarn.enabled", yarn.enabled, o.yarn.enabled);
  add("yarn.factor", yarn.factor, o.yarn.factor);
  add("yarn.original_max_position_embeddings", yarn.original_max_position_embeddings,
      o.yarn.original_max_position_embeddings);
  add("yarn.beta_fast", yarn.beta_fast, o.yarn.beta_fast);
  add("yarn.beta_slow", yarn.beta_slow, o.yarn.beta_slow);
  add("max_position_embeddings", max_position_embeddings, o.max_position_embeddings);
  add("index_n_heads", index_n_heads, o.index_n_heads);
  add("index_head_dim", index_head_dim, o.index_head_dim);
  add("index_topk", index_topk, o.index_topk);
  add("n_routed_experts", n_routed_experts, o.n_routed_experts);
  add("num_experts_per_tok", num_experts_per_tok, o.num_experts_per_tok);
  add("n_shared_experts", n_shared_experts, o.n_shared_experts);
  add("moe_intermediate_size", moe_intermediate_size, o.moe_intermediate_size);
  add("num_hash_layers", num_hash_layers, o.num_hash_layers);
  add("scoring_func", scoring_func, o.scoring_func);
  add("topk_method", topk_method, o.topk_method);
  add("norm_topk_prob", norm_topk_prob, o.norm_topk_prob);
  add("routed_scaling_factor", routed_scaling_factor, o.routed_scaling_factor);
  add("swiglu_limit", swiglu_limit, o.swiglu_limit);
  add("hidden_act", hidden_act, o.hidden_act);
  add("hc_mult", hc_mult, o.hc_mult);
  add("hc_sinkhorn_iters", hc_sinkhorn_iters, o.hc_sinkhorn_iters);
  add("hc_eps", hc_eps, o.hc_eps);
  add("rms_norm_eps", rms_norm_eps, o.rms_norm_eps);
  add("num_nextn_predict_layers", num_nextn_predict_layers, o.num_nextn_predict_layers);
  add("expert_dtype", expert_dtype, o.expert_dtype);
  add("source_fp8", source_fp8, o.source_fp8);
  add("fp8_block", fp8_block, o.fp8_block);
  add("scale_fmt", scale_fmt, o.scale_fmt);
  add("tie_word_embeddings", tie_word_embeddings, o.tie_word_embeddings);
  add("bos_token_id", bos_token_id, o.bos_token_id);
  add("eos_token_id", eos_token_id, o.eos_token_id);
  return out;
}

}  // namespace dsv4::model

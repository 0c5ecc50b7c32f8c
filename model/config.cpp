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
#include <cstdarg>
#include <cstdio>
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
constexpr const char* kTransformersOnlyKeys[] = {"layer_types",           "mlp_layer_types",
                                                 "compress_rates",        "rope_parameters",
                                                 "partial_rotary_factor", "dtype"};

// The scalar fields spelled the same way in both spellings: one table drives parsing, writing
// and value_diff. Fields with spelling-specific keys (layer schedule, rope, quantization) are
// handled by hand.
template <typename T>
using Field = std::pair<const char*, T ModelConfig::*>;
using M = ModelConfig;
// clang-format off
constexpr Field<int> kRequiredInts[] = {
    {"vocab_size", &M::vocab_size}, {"hidden_size", &M::hidden_size},
    {"num_hidden_layers", &M::num_layers}, {"num_attention_heads", &M::num_heads},
    {"head_dim", &M::head_dim}, {"q_lora_rank", &M::q_lora_rank}, {"o_groups", &M::o_groups},
    {"o_lora_rank", &M::o_lora_rank}, {"sliding_window", &M::sliding_window},
    {"index_n_heads", &M::index_n_heads}, {"index_head_dim", &M::index_head_dim},
    {"index_topk", &M::index_topk}, {"n_routed_experts", &M::n_routed_experts},
    {"num_experts_per_tok", &M::num_experts_per_tok},
    {"moe_intermediate_size", &M::moe_intermediate_size}, {"hc_mult", &M::hc_mult}};
constexpr Field<int> kOptionalInts[] = {
    {"num_key_value_heads", &M::num_kv_heads}, {"n_shared_experts", &M::n_shared_experts},
    {"hc_sinkhorn_iters", &M::hc_sinkhorn_iters}, {"bos_token_id", &M::bos_token_id},
    {"num_nextn_predict_layers", &M::num_nextn_predict_layers}};
constexpr Field<double> kFloats[] = {
    {"routed_scaling_factor", &M::routed_scaling_factor}, {"swiglu_limit", &M::swiglu_limit},
    {"hc_eps", &M::hc_eps}, {"rms_norm_eps", &M::rms_norm_eps}, {"rope_theta", &M::rope_theta},
    {"compress_rope_theta", &M::compress_rope_theta}};
constexpr Field<std::string> kStrings[] = {
    {"scoring_func", &M::scoring_func}, {"topk_method", &M::topk_method},
    {"hidden_act", &M::hidden_act}};
constexpr Field<bool> kBools[] = {
    {"norm_topk_prob", &M::norm_topk_prob}, {"tie_word_embeddings", &M::tie_word_embeddings}};
// clang-format on

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
  int to_int_or(const char* key, int fallback) const {
    return narrow(integer_or(key, fallback), key);
  }
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
  // Throws "<origin>: "<path.key>" <printf-formatted message>".
  [[noreturn]] void fail(const char* key, const char* fmt, ...) const
      __attribute__((format(printf, 3, 4))) {
    va_list args;
    va_start(args, fmt);
    char message[512];
    std::vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    DSV4_FAIL("config", "%s: \"%s\" %s", origin_.c_str(), path(key).c_str(), message);
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
  const std::string type =
      r.has("rope_type") ? r.string_or("rope_type", "") : r.string_or("type", "default");
  if (type == "default") {
    y.enabled = false;
    return y;
  }
  if (type != "yarn")
    r.fail("rope_type", "= \"%s\" is not supported (expected yarn or default)", type.c_str());
  y.enabled = true;
  y.factor = r.number("factor");
  y.original_max_position_embeddings = r.integer("original_max_position_embeddings");
  y.beta_fast = r.number_or("beta_fast", 32.0);  // transformers' YaRN defaults
  y.beta_slow = r.number_or("beta_slow", 1.0);
  // transformers forces 1.0 (the reference applies no YaRN magnitude scaling); another value
  // would make the oracle disagree with our forward, so refuse it instead of ignoring it.
  const double attention_factor = r.number_or("attention_factor", 1.0);
  if (attention_factor != 1.0)
    r.fail("attention_factor", "= %g is not supported (DeepSeek-V4 uses 1.0)", attention_factor);
  return y;
}

// Writes a float-typed field, keeping an integer JSON type when the source used one and the value
// is unchanged (the release writes rope_theta as 10000); otherwise a JSON float, which
// transformers' strict float fields require.
void put_float(json& out, const char* key, double v) {
  auto it = out.find(key);
  if (it != out.end() && it->is_number_integer() && static_cast<double>(it->get<int64_t>()) == v)
    return;
  out[key] = v;
}

// Layer schedule. compress_ratios (release) lists main layers then MTP blocks; layer_types
// (transformers) lists main layers only, and MTP blocks are sliding there.
void parse_schedule(const Reader& r, bool release_layers, ModelConfig& c) {
  c.compress_ratios.clear();
  const int n = c.num_layers;
  const size_t n_size = static_cast<size_t>(std::max(n, 0));
  if (release_layers) {
    const json& ratios = r.array("compress_ratios");
    for (size_t i = 0; i < ratios.size(); ++i) {
      c.compress_ratios.push_back(r.element_int(ratios, "compress_ratios", i));
      if (c.compress_ratios.back() < 0) r.fail("compress_ratios", "[%zu] is negative", i);
    }
    // Both spellings present: transformers follows layer_types, we follow compress_ratios, so
    // they must describe the same schedule.
    if (r.has("layer_types")) {
      const json& types = r.array("layer_types");
      for (size_t i = 0; i < std::min({n_size, types.size(), c.compress_ratios.size()}); ++i) {
        const int ratio = c.compress_ratios[i];
        const char* expected = ratio == 0 ? kSliding : ratio == 4 ? kCsa : kHca;
        if (r.element_string(types, "layer_types", i) != expected)
          r.fail("layer_types", "[%zu] disagrees with compress_ratios[%zu] = %d (expected %s)", i,
                 i, ratio, expected);
      }
    }
  } else if (r.has("layer_types")) {
    const json& types = r.array("layer_types");
    int csa = 4, hca = 128;  // transformers' default_compress_rates
    if (auto rates = r.object("compress_rates")) {
      csa = rates->to_int_or(kCsa, csa);
      hca = rates->to_int_or(kHca, hca);
    }
    // Our kinds follow the ratio (4 = CSA with indexer, as in the reference and vLLM), so the
    // transformers type names must agree with it.
    if (csa != 4) r.fail("compress_rates", ".%s = %d, expected 4", kCsa, csa);
    if (hca <= 0 || hca == 4)
      r.fail("compress_rates", ".%s = %d, expected > 0 and != 4", kHca, hca);
    if (types.size() < n_size)
      r.fail("layer_types", "has %zu entries, fewer than num_hidden_layers = %d", types.size(), n);
    for (size_t i = 0; i < n_size; ++i) {  // transformers truncates longer lists the same way
      const std::string t = r.element_string(types, "layer_types", i);
      if (t != kSliding && t != kCsa && t != kHca)
        r.fail("layer_types", "[%zu] = \"%s\" is not one of %s, %s, %s", i, t.c_str(), kSliding,
               kCsa, kHca);
      c.compress_ratios.push_back(t == kSliding ? 0 : t == kCsa ? csa : hca);
    }
  } else {
    r.fail("compress_ratios",
           "(release) or \"layer_types\" (transformers) is required but missing");
  }
  // MTP blocks missing from the list are sliding (transformers never lists them). A list shorter
  // than num_layers is left alone for check() to report.
  if (c.compress_ratios.size() >= n_size)
    while (static_cast<int>(c.compress_ratios.size()) < n + c.num_nextn_predict_layers)
      c.compress_ratios.push_back(0);
}

// Hash-routed layers: num_hash_layers (release) or the leading "hash_moe" run of mlp_layer_types
// (transformers, whose default is 3). vLLM reads num_hash_layers directly, so the release
// spelling must carry it.
void parse_hash_layers(const Reader& r, bool release_layers, ModelConfig& c) {
  const int n = c.num_layers;
  int from_types = -1;
  if (r.has("mlp_layer_types")) {
    const json& types = r.array("mlp_layer_types");
    if (types.size() < static_cast<size_t>(std::max(n, 0)))
      r.fail("mlp_layer_types", "has %zu entries, fewer than num_hidden_layers = %d", types.size(),
             n);
    from_types = 0;
    for (int i = 0; i < n; ++i) {
      const std::string t = r.element_string(types, "mlp_layer_types", static_cast<size_t>(i));
      if (t == "hash_moe" && from_types != i)
        r.fail("mlp_layer_types", "[%d] = hash_moe follows a moe layer; hash layers come first", i);
      if (t != "hash_moe" && t != "moe")
        r.fail("mlp_layer_types", "[%d] = \"%s\" is not hash_moe or moe", i, t.c_str());
      from_types += t == "hash_moe";
    }
  }
  if (r.has("num_hash_layers")) {
    c.num_hash_layers = r.to_int("num_hash_layers");
    if (from_types >= 0 && from_types != c.num_hash_layers)
      r.fail("mlp_layer_types", "has %d hash_moe layers but num_hash_layers = %d", from_types,
             c.num_hash_layers);
  } else if (from_types >= 0) {
    c.num_hash_layers = from_types;
  } else if (release_layers) {
    r.require("num_hash_layers", "an integer");
  } else {
    c.num_hash_layers = std::min(3, n);
  }
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
  DSV4_CHECK_IN("config", j.is_object(), "%s: the config must be a JSON object, got %s",
                origin.c_str(), j.type_name());
  const Reader r(j, origin);
  ModelConfig c;  // defaults are the release values; only optional keys fall back to them
  c.source = j;
  c.origin = origin;

  const std::string model_type = r.string_or("model_type", "deepseek_v4");
  if (model_type != "deepseek_v4")
    r.fail("model_type", "= \"%s\", expected \"deepseek_v4\"", model_type.c_str());

  for (const auto& [key, field] : kRequiredInts) c.*field = r.to_int(key);
  for (const auto& [key, field] : kOptionalInts) c.*field = r.to_int_or(key, c.*field);
  for (const auto& [key, field] : kFloats) c.*field = r.number_or(key, c.*field);
  for (const auto& [key, field] : kStrings) c.*field = r.string_or(key, c.*field);
  for (const auto& [key, field] : kBools) c.*field = r.boolean_or(key, c.*field);
  c.max_position_embeddings = r.integer_or("max_position_embeddings", c.max_position_embeddings);
  if (r.has("eos_token_id") && j["eos_token_id"].is_array()) {  // transformers allows a list
    if (j["eos_token_id"].empty()) r.fail("eos_token_id", "is an empty list");
    c.eos_token_id = r.element_int(j["eos_token_id"], "eos_token_id", 0);
  } else {
    c.eos_token_id = r.to_int_or("eos_token_id", c.eos_token_id);
  }

  // Rope dims: release qk_rope_head_dim, transformers partial_rotary_factor (int() truncation as
  // in transformers); both present (transformers' own output) must agree.
  const bool has_rope_dim = r.has("qk_rope_head_dim");
  const bool has_factor = r.has("partial_rotary_factor");
  const bool release_layers = r.has("compress_ratios");
  if (has_rope_dim) c.rope_head_dim = r.to_int("qk_rope_head_dim");
  if (has_factor) {
    const int dims = static_cast<int>(c.head_dim * r.number_or("partial_rotary_factor", 0.0));
    if (has_rope_dim && dims != c.rope_head_dim)
      r.fail("partial_rotary_factor", "gives %d rope dims but qk_rope_head_dim = %d", dims,
             c.rope_head_dim);
    c.rope_head_dim = dims;
  }
  if (!has_rope_dim && !has_factor) {
    if (release_layers) r.require("qk_rope_head_dim", "an integer");
    c.rope_head_dim = c.head_dim / 8;  // transformers' default_partial_rotary_factor = 64 / 512
  }

  parse_schedule(r, release_layers, c);
  parse_hash_layers(r, release_layers, c);

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
      if (fmt != "e4m3") q->fail("fmt", "= \"%s\", expected e4m3", fmt.c_str());
      c.scale_fmt = q->string_or("scale_fmt", "");
      c.fp8_block = 128;
      if (q->has("weight_block_size")) {
        const json& block = q->array("weight_block_size");
        if (block.size() != 2)
          q->fail("weight_block_size", "= %s must have 2 entries", block.dump().c_str());
        const int rows = q->element_int(block, "weight_block_size", 0);
        if (q->element_int(block, "weight_block_size", 1) != rows)
          q->fail("weight_block_size", "= %s is not square", block.dump().c_str());
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
    DSV4_CHECK_IN("config", this->*field > 0, "%s: %s = %d must be positive", o, name,
                  this->*field);
  const std::pair<const char*, int64_t> positive[] = {
      {"num_key_value_heads", num_kv_heads},
      {"qk_rope_head_dim", rope_head_dim},
      {"hc_sinkhorn_iters", hc_sinkhorn_iters},
      {"weight_block_size", fp8_block},
      {"max_position_embeddings", max_position_embeddings}};
  for (const auto& [name, value] : positive)
    DSV4_CHECK_IN("config", value > 0, "%s: %s = %lld must be positive", o, name,
                  static_cast<long long>(value));
  const std::pair<const char*, int> non_negative[] = {
      {"n_shared_experts", n_shared_experts},
      {"num_hash_layers", num_hash_layers},
      {"num_nextn_predict_layers", num_nextn_predict_layers}};
  for (const auto& [name, value] : non_negative)
    DSV4_CHECK_IN("config", value >= 0, "%s: %s = %d must not be negative", o, name, value);
  DSV4_CHECK_IN("config", num_heads % o_groups == 0,
                "%s: num_attention_heads = %d is not divisible by o_groups = %d", o, num_heads,
                o_groups);
  DSV4_CHECK_IN("config", num_heads % num_kv_heads == 0,
                "%s: num_attention_heads = %d is not divisible by num_key_value_heads = %d", o,
                num_heads, num_kv_heads);
  DSV4_CHECK_IN("config", rope_head_dim <= head_dim && rope_head_dim % 2 == 0,
                "%s: qk_rope_head_dim = %d must be even and <= head_dim = %d", o, rope_head_dim,
                head_dim);
  DSV4_CHECK_IN(
      "config", rope_head_dim <= index_head_dim,
      "%s: qk_rope_head_dim = %d must be <= index_head_dim = %d (the indexer ropes the same dims)",
      o, rope_head_dim, index_head_dim);
  DSV4_CHECK_IN("config", num_experts_per_tok <= n_routed_experts,
                "%s: num_experts_per_tok = %d exceeds n_routed_experts = %d", o,
                num_experts_per_tok, n_routed_experts);
  DSV4_CHECK_IN("config", static_cast<int>(compress_ratios.size()) >= num_layers,
                "%s: compress_ratios has %zu entries, fewer than num_hidden_layers = %d", o,
                compress_ratios.size(), num_layers);
  for (size_t i = 0; i < compress_ratios.size(); ++i)
    DSV4_CHECK_IN("config", compress_ratios[i] >= 0, "%s: compress_ratios[%zu] = %d is negative", o,
                  i, compress_ratios[i]);
  DSV4_CHECK_IN("config", num_hash_layers <= num_layers,
                "%s: num_hash_layers = %d exceeds num_hidden_layers = %d", o, num_hash_layers,
                num_layers);
  DSV4_CHECK_IN(
      "config", !yarn.enabled || (yarn.factor > 0 && yarn.original_max_position_embeddings > 0),
      "%s: rope_scaling needs factor > 0 and original_max_position_embeddings > 0, got %g and %lld",
      o, yarn.factor, static_cast<long long>(yarn.original_max_position_embeddings));
  DSV4_CHECK_IN("config", rms_norm_eps > 0 && hc_eps > 0,
                "%s: rms_norm_eps = %g and hc_eps = %g must be positive", o, rms_norm_eps, hc_eps);
  DSV4_CHECK_IN("config", expert_dtype == "fp4" || expert_dtype == "fp8" || expert_dtype == "bf16",
                "%s: expert_dtype = \"%s\", expected fp4, fp8 or bf16", o, expert_dtype.c_str());
  DSV4_CHECK_IN(
      "config",
      scoring_func == "sqrtsoftplus" || scoring_func == "softmax" || scoring_func == "sigmoid",
      "%s: scoring_func = \"%s\", expected sqrtsoftplus, softmax or sigmoid", o,
      scoring_func.c_str());
  DSV4_CHECK_IN("config", hidden_act == "silu", "%s: hidden_act = \"%s\", expected silu", o,
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

// config_parse.cpp: ModelConfig from either spelling of config.json (release or transformers).
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
#include "model/config_fields.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>

#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"

namespace dsv4::model {
namespace {

using namespace config_fields;

using json = nlohmann::json;

// Typed, path-aware access to one JSON object. Null counts as absent (transformers writes
// `"pad_token_id": null`); errors name the origin, the dotted key and what was expected, and are
// user errors (the file is the user's to fix), printed without this file's location.
class Reader {
 public:
  Reader(const json& j, const std::string& origin, std::string prefix = "")
      : j_(j), origin_(origin), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return find(key) != nullptr; }
  std::string path(const char* key) const { return prefix_ + key; }

  const json& require(const char* key, const char* what) const {
    const json* v = find(key);
    if (v == nullptr)
      DSV4_USER_FAIL("config", "%s: required key \"%s\" is missing (expected %s)", origin_.c_str(),
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
      DSV4_USER_FAIL("config", "%s: \"%s\" must be an integer, got %s", origin_.c_str(), name.c_str(),
                json_excerpt(arr[i]).c_str());
    return narrow(arr[i].get<int64_t>(), name.c_str());
  }
  std::string element_string(const json& arr, const char* key, size_t i) const {
    if (!arr[i].is_string())
      DSV4_USER_FAIL("config", "%s: \"%s[%zu]\" must be a string, got %s", origin_.c_str(),
                path(key).c_str(), i, json_excerpt(arr[i]).c_str());
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
    DSV4_USER_FAIL("config", "%s: \"%s\" %s", origin_.c_str(), path(key).c_str(), message);
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
      DSV4_USER_FAIL("config", "%s: \"%s\" = %lld does not fit in a 32-bit int", origin_.c_str(),
                (prefix_ + name).c_str(), static_cast<long long>(v));
    return static_cast<int>(v);
  }
  [[noreturn]] void bad_type(const char* key, const char* what, const json& v) const {
    DSV4_USER_FAIL("config", "%s: \"%s\" must be %s, got %s", origin_.c_str(), path(key).c_str(), what,
              json_excerpt(v).c_str());
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
    j = json_parse(text, path);
  } catch (const json::parse_error& e) {
    DSV4_USER_FAIL("config", "%s: not valid JSON: %s", path.c_str(), json_error_text(e).c_str());
  }
  return from_json(j, path);
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& origin) {
  DSV4_USER_CHECK("config", j.is_object(), "%s: the config must be a JSON object, got %s",
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
  config_bounds_check(c);  // before the schedule below (or anything later) is sized by them
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
          q->fail("weight_block_size", "= %s must have 2 entries", json_excerpt(block).c_str());
        const int rows = q->element_int(block, "weight_block_size", 0);
        if (q->element_int(block, "weight_block_size", 1) != rows)
          q->fail("weight_block_size", "= %s is not square", json_excerpt(block).c_str());
        c.fp8_block = rows;
      }
    }
  }
  c.expert_dtype = r.string_or("expert_dtype", r.has("quantization_config") ? "fp4" : "bf16");

  c.check();
  return c;
}

}  // namespace dsv4::model

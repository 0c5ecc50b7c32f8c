// ct_rules.cpp: compressed-tensors 0.20.1's quantization_config validators as a table (see
// ct_rules.h). Stricter than pydantic's lax mode in one way only: JSON types must be the ones
// compressed-tensors writes (an integer, not the string "4"), which our writer always meets.
#include "calib/ct_rules.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>

namespace dsv4::calib {
namespace {

using nlohmann::json;

const char* const kArgs = "quantization/quant_args.py";
const char* const kScheme = "quantization/quant_scheme.py";
const char* const kConfig = "quantization/quant_config.py";

const std::vector<CtRule> kRules = {
    {"config.object", kConfig, "quantization_config is an object with config_groups"},
    {"config.config_groups", kConfig, "config_groups maps names to a QuantizationScheme or a preset's target list"},
    {"config.quantization_status", kConfig,
     "quantization_status is initialized, calibration, frozen, compressed or decompressed"},
    {"config.field_types", kConfig,
     "quant_method and format are strings, ignore a list of strings or null, global_compression_ratio a number "
     "or null"},
    {"scheme.extra_keys", kScheme, "a scheme has only targets, weights, input_activations, output_activations, format "
                                   "(extra=\"forbid\")"},
    {"scheme.targets", kScheme, "targets is a list of strings"},
    {"scheme.format", kScheme, "format is a CompressionFormat (config/base.py), never mixed-precision, or null"},
    {"scheme.input_strategy", kScheme, "input activations use token, tensor, group, tensor_group or attn_head"},
    {"scheme.activation_actorder", kScheme, "actorder is only for weights (input/output activations: null)"},
    {"args.extra_keys", kArgs, "QuantizationArgs has only its twelve fields (extra=\"forbid\")"},
    {"args.field_types", kArgs, "num_bits an integer, symmetric a bool, type int or float, observer a string or "
                                "null, observer_kwargs an object"},
    {"args.group_size", kArgs, "group_size is null or an integer >= -1 (validate_group)"},
    {"args.strategy", kArgs, "strategy is null or tensor, channel, group, block, token, tensor_group, attn_head"},
    {"args.block_structure", kArgs, "block_structure is null, [rows, cols] of positive ints or \"RxC\""},
    {"args.dynamic", kArgs, "dynamic is a bool or \"local\""},
    {"args.actorder", kArgs, "actorder is null, false, \"weight\" or its alias \"static\"; group, dynamic and true "
                             "were removed in 0.19 (validate_actorder)"},
    {"args.dtype", kArgs, "scale_dtype and zp_dtype are null or a torch dtype name, \"torch.NAME\" or \"NAME\" "
                          "(utils/type.py)"},
    {"args.strategy_inferred", kArgs, "without a strategy, group_size must be null, > 0 or -1"},
    {"args.token_dynamic", kArgs, "the token strategy must be dynamic"},
    {"args.group_needs_size", kArgs, "group and tensor_group need group_size > 0"},
    {"args.size_needs_group", kArgs, "group_size > 0 needs strategy group or tensor_group"},
    {"args.block", kArgs, "strategy block and block_structure come together"},
    {"args.dynamic_strategy", kArgs, "dynamic quantization uses token, tensor, tensor_group or group"},
    {"args.local", kArgs, "dynamic \"local\" needs strategy tensor_group"},
};

const std::vector<std::string> kArgsKeys = {"num_bits", "type",     "symmetric",   "group_size",
                                            "strategy", "block_structure", "dynamic", "actorder",
                                            "scale_dtype", "zp_dtype", "observer", "observer_kwargs"};
const std::vector<std::string> kSchemeKeys = {"targets", "weights", "input_activations", "output_activations", "format"};
const std::vector<std::string> kStrategies = {"tensor", "channel", "group", "block", "token", "tensor_group", "attn_head"};
const std::vector<std::string> kFormats = {
    "dense", "sparse-bitmask", "sparse-24-bitmask", "int-quantized", "float-quantized", "naive-quantized",
    "pack-quantized", "marlin-24", "nvfp4-pack-quantized", "mxfp4-pack-quantized", "mxfp6-pack-quantized",
    "mxfp8-quantized"};
const std::vector<std::string> kStatuses = {"initialized", "calibration", "frozen", "compressed", "decompressed"};
// The torch dtypes a quantization config can sensibly name (getattr(torch, NAME) is a dtype).
const std::vector<std::string> kTorchDtypes = {
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz",
    "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "uint8", "int8", "int16", "int32",
    "int64", "uint16", "uint32", "uint64", "bool"};

bool one_of(const std::string& v, const std::vector<std::string>& set) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class Checker {
 public:
  explicit Checker(std::vector<CtViolation>* out) : out_(out) {}
  void fail(const char* rule, const std::string& where, const std::string& message) {
    out_->push_back({rule, where, message});
  }
  void args(const json& a, const std::string& at);
  void scheme(const json& s, const std::string& at);

 private:
  // The strategy compressed-tensors ends with (written, or inferred from group_size); "" if none.
  std::string strategy_of(const json& a, const std::string& at);
  std::vector<CtViolation>* out_;
};

std::string Checker::strategy_of(const json& a, const std::string& at) {
  const json s = a.value("strategy", json());
  if (s.is_string()) {
    const std::string v = lower(s.get<std::string>());
    if (!one_of(v, kStrategies)) fail("args.strategy", at + ".strategy", "'" + s.get<std::string>() + "' is no QuantizationStrategy");
    return v;
  }
  if (!s.is_null()) fail("args.strategy", at + ".strategy", "expected a string or null, got " + s.dump());
  const json g = a.value("group_size", json());
  if (!g.is_number_integer()) return "tensor";
  const int64_t n = g.get<int64_t>();
  if (n > 0) return "group";
  if (n == -1) return "channel";
  fail("args.strategy_inferred", at + ".group_size", "group_size " + std::to_string(n) + " gives no strategy");
  return "";
}

void Checker::args(const json& a, const std::string& at) {
  if (!a.is_object()) return fail("args.field_types", at, "expected QuantizationArgs (an object), got " + a.dump());
  for (const auto& [k, v] : a.items()) {
    if (!one_of(k, kArgsKeys)) fail("args.extra_keys", at + "." + k, "extra inputs are not permitted");
  }
  if (a.contains("num_bits") && !a["num_bits"].is_number_integer()) fail("args.field_types", at + ".num_bits", "expected an integer");
  if (a.contains("symmetric") && !a["symmetric"].is_boolean()) fail("args.field_types", at + ".symmetric", "expected a bool");
  const json type = a.value("type", json("int"));
  if (!type.is_string() || !one_of(lower(type.get<std::string>()), {"int", "float"})) {
    fail("args.field_types", at + ".type", "expected int or float, got " + type.dump());
  }
  if (a.contains("observer") && !a["observer"].is_null() && !a["observer"].is_string()) fail("args.field_types", at + ".observer", "expected a string or null");
  if (a.contains("observer_kwargs") && !a["observer_kwargs"].is_object()) fail("args.field_types", at + ".observer_kwargs", "expected an object");
  const json g = a.value("group_size", json());
  if (!g.is_null() && (!g.is_number_integer() || g.get<int64_t>() < -1)) {
    fail("args.group_size", at + ".group_size", "expected null or an integer >= -1, got " + g.dump());
  }
  const json bs = a.value("block_structure", json());
  bool has_block = !bs.is_null();
  if (has_block) {
    bool ok = false;
    if (bs.is_array() && bs.size() == 2) {
      ok = std::all_of(bs.begin(), bs.end(), [](const json& x) { return x.is_number_integer() && x.get<int64_t>() > 0; });
    } else if (bs.is_string()) {
      int r = 0, c = 0;
      ok = std::sscanf(bs.get<std::string>().c_str(), "%dx%d", &r, &c) == 2 && r > 0 && c > 0;
    }
    if (!ok) fail("args.block_structure", at + ".block_structure", "expected [rows, cols] of positive ints, got " + bs.dump());
  }
  const json dyn = a.value("dynamic", json(false));
  const bool dyn_local = dyn.is_string() && lower(dyn.get<std::string>()) == "local";
  if (!dyn.is_boolean() && !dyn_local) fail("args.dynamic", at + ".dynamic", "expected a bool or \"local\", got " + dyn.dump());
  const bool dynamic = dyn_local || (dyn.is_boolean() && dyn.get<bool>());
  const json ao = a.value("actorder", json());
  if (!(ao.is_null() || (ao.is_boolean() && !ao.get<bool>()) ||
        (ao.is_string() && one_of(ao.get<std::string>(), {"weight", "static"})))) {
    fail("args.actorder", at + ".actorder",
         "actorder=" + ao.dump() + " is refused (group, dynamic and true were removed in compressed-tensors 0.19; "
         "use \"weight\" or null)");
  }
  for (const char* key : {"scale_dtype", "zp_dtype"}) {
    const json d = a.value(key, json());
    if (d.is_null()) continue;
    std::string name = d.is_string() ? d.get<std::string>() : "";
    if (name.starts_with("torch.")) name = name.substr(6);
    if (!one_of(name, kTorchDtypes)) fail("args.dtype", at + "." + key, "no such torch dtype " + d.dump());
  }
  const std::string strategy = strategy_of(a, at);
  const int64_t group = g.is_number_integer() ? g.get<int64_t>() : 0;
  const bool grouped = strategy == "group" || strategy == "tensor_group";
  if (strategy == "token" && !dynamic) fail("args.token_dynamic", at + ".dynamic", "static token quantization is refused");
  if (grouped && group <= 0) fail("args.group_needs_size", at + ".group_size", "strategy " + strategy + " needs group_size > 0");
  if (group > 0 && !grouped) fail("args.size_needs_group", at + ".strategy", "group_size needs strategy group, got " + strategy);
  if ((strategy == "block") != has_block) fail("args.block", at + ".block_structure", "strategy block and block_structure come together");
  if (dynamic && !one_of(strategy, {"token", "tensor", "tensor_group", "group"})) {
    fail("args.dynamic_strategy", at + ".strategy", "dynamic quantization cannot use strategy " + strategy);
  }
  if (dyn_local && strategy != "tensor_group") fail("args.local", at + ".dynamic", "local needs strategy tensor_group");
}

void Checker::scheme(const json& s, const std::string& at) {
  if (s.is_array()) {  // a preset's target list (QuantizationConfig.model_post_init)
    if (!std::all_of(s.begin(), s.end(), [](const json& t) { return t.is_string(); })) {
      fail("config.config_groups", at, "a preset's targets are strings");
    }
    return;
  }
  if (!s.is_object()) return fail("config.config_groups", at, "expected a QuantizationScheme or a list of targets");
  for (const auto& [k, v] : s.items()) {
    if (!one_of(k, kSchemeKeys)) fail("scheme.extra_keys", at + "." + k, "extra inputs are not permitted");
  }
  const json t = s.value("targets", json());
  if (!t.is_array() || !std::all_of(t.begin(), t.end(), [](const json& x) { return x.is_string(); })) {
    fail("scheme.targets", at + ".targets", "expected a list of strings");
  }
  const json f = s.value("format", json());
  if (!f.is_null() && (!f.is_string() || !one_of(f.get<std::string>(), kFormats))) {
    fail("scheme.format", at + ".format", f.dump() + " is not a scheme's CompressionFormat");
  }
  for (const char* key : {"weights", "input_activations", "output_activations"}) {
    const json a = s.value(key, json());
    if (a.is_null()) continue;
    const std::string where = at + "." + key;
    args(a, where);
    if (std::string(key) == "weights" || !a.is_object()) continue;
    if (!a.value("actorder", json()).is_null()) fail("scheme.activation_actorder", where + ".actorder", "actorder on activations");
    if (std::string(key) == "input_activations") {
      std::vector<CtViolation> ignored;
      const std::string st = Checker(&ignored).strategy_of(a, where);
      if (!st.empty() && one_of(st, kStrategies) && !one_of(st, {"token", "tensor", "group", "tensor_group", "attn_head"})) {
        fail("scheme.input_strategy", where + ".strategy", "strategy " + st + " is not supported for activations");
      }
    }
  }
}

}  // namespace

const std::vector<CtRule>& ct_rules() { return kRules; }

std::vector<CtViolation> ct_quantization_config_violations(const json& q) {
  std::vector<CtViolation> out;
  Checker c(&out);
  if (!q.is_object() || !q.contains("config_groups") || !q["config_groups"].is_object()) {
    c.fail("config.object", "quantization_config", "expected an object with config_groups (an object)");
    return out;
  }
  for (const auto& [name, g] : q["config_groups"].items()) c.scheme(g, "config_groups." + name);
  const json st = q.value("quantization_status", json("initialized"));
  if (!st.is_string() || !one_of(st.get<std::string>(), kStatuses)) {
    c.fail("config.quantization_status", "quantization_status", st.dump() + " is no QuantizationStatus");
  }
  for (const char* key : {"quant_method", "format"}) {
    if (q.contains(key) && !q[key].is_string()) c.fail("config.field_types", key, "expected a string");
  }
  const json ig = q.value("ignore", json::array());
  if (!ig.is_null() && (!ig.is_array() || !std::all_of(ig.begin(), ig.end(), [](const json& x) { return x.is_string(); }))) {
    c.fail("config.field_types", "ignore", "expected a list of strings or null");
  }
  const json r = q.value("global_compression_ratio", json());
  if (!r.is_null() && !r.is_number()) c.fail("config.field_types", "global_compression_ratio", "expected a number or null");
  const json kv = q.value("kv_cache_scheme", json());
  if (!kv.is_null()) c.args(kv, "kv_cache_scheme");
  return out;
}

}  // namespace dsv4::calib

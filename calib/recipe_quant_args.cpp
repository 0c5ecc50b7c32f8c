// recipe_quant_args.cpp: QuantizationArgs mappings -> quant:: args.
#include "calib/recipe_quant_args.h"

#include <string>

#include "common/check.h"
#include "common/log.h"

namespace dsv4::calib {
namespace {

const std::vector<std::string> kWeightKeys = {
    "num_bits", "type", "symmetric", "group_size", "strategy", "block_structure", "dynamic",
    "actorder", "scale_dtype", "zp_dtype", "observer", "observer_kwargs"};

quant::QuantType parse_type(YamlReader& r) {
  return r.get_enum("type", "int", {"int", "float"}) == "int" ? quant::QuantType::kInt
                                                              : quant::QuantType::kFloat;
}

// ActOrder spellings. compressed-tensors >= 0.19 takes "weight" (alias "static": act-order during
// the solve, groups in the original column order, no weight_g_idx) or null/false; it removed
// "group" (alias "dynamic", and `true`): groups formed in act-order with a weight_g_idx, which
// its QuantizationArgs.validate_actorder now refuses (quant_args.py, 0.19.0 and 0.20.1). So a
// recipe written for an older release still runs: those spellings are read as "weight", with a
// note, and the artifact is one compressed-tensors loads.
// What a written `actorder` value says; kUnset for null (and for false, which compressed-tensors'
// validator turns into null).
enum class ActOrderValue : uint8_t { kUnset, kNone, kWeight };

ActOrderValue parse_actorder_node(YamlReader& r, const std::string& key) {
  const YAML::Node n = r.take(key);
  if (!n.IsDefined() || n.IsNull()) return ActOrderValue::kUnset;
  if (!n.IsScalar()) r.fail(key, "expected weight, static or null");
  const std::string v = n.Scalar();
  if (v == "weight" || v == "static") return ActOrderValue::kWeight;
  if (v == "false" || v == "False" || v == "null") return ActOrderValue::kUnset;
  if (v == "none") return ActOrderValue::kNone;  // dsv4-calib's own spelling of null, before issue 27
  if (v == "group" || v == "dynamic" || v == "true" || v == "True") {
    log_warn("%s: %s: actorder '%s' is read as 'weight': compressed-tensors 0.19 removed group act-order "
             "(weight_g_idx), so the artifact is written with weight act-order and no weight_g_idx",
             r.file().c_str(), r.key_path(key).c_str(), v.c_str());
    return ActOrderValue::kWeight;
  }
  r.fail(key, "expected weight (alias static) or null, got '" + v + "'");
}

}  // namespace

void recipe_args_check(const YamlReader& r, const quant::ArgsProblem& problem) {
  if (problem) r.fail(problem.field, problem.expected + ", got " + problem.value);
}

std::optional<quant::ActOrder> recipe_actorder_parse(YamlReader& r, const std::string& key) {
  const YAML::Node& node = r.node();
  if (!node.IsMap() || !node[key].IsDefined()) return std::nullopt;
  // At the modifier, null (and false) is a value: GPTQModifier(actorder=None) solves without
  // act-order, unlike its default (Sentinel "static").
  return parse_actorder_node(r, key) == ActOrderValue::kWeight ? quant::ActOrder::kStatic : quant::ActOrder::kNone;
}

quant::QuantArgs recipe_weights_parse(YamlReader& r, std::optional<quant::ActOrder>* actorder) {
  quant::QuantArgs a;
  a.num_bits = static_cast<int>(r.get_int("num_bits", 8));
  a.type = parse_type(r);
  a.symmetric = r.get_bool("symmetric", true);
  const bool has_group = r.has("group_size");
  const int64_t group = r.get_int("group_size", 0);
  std::string strategy = r.get_enum("strategy", "", {"", "tensor", "channel", "group", "block",
                                                      "tensor_group", "token", "attn_head"});
  if (strategy.empty()) {  // compressed-tensors: none -> tensor, > 0 -> group, -1 -> channel
    strategy = !has_group ? "tensor" : group == -1 ? "channel" : group > 0 ? "group" : "";
    if (strategy.empty()) r.fail("group_size", "expected a positive size or -1 (channel), got " + std::to_string(group));
  }
  if (strategy == "token" || strategy == "attn_head") {
    r.fail("strategy", "'" + strategy + "' is an activation strategy; weights take tensor, channel, "
                       "group, block or tensor_group");
  }
  a.strategy = strategy == "tensor"    ? quant::Strategy::kTensor
               : strategy == "channel" ? quant::Strategy::kChannel
               : strategy == "group"   ? quant::Strategy::kGroup
               : strategy == "block"   ? quant::Strategy::kBlock
                                       : quant::Strategy::kTensorGroup;
  if (a.strategy == quant::Strategy::kGroup || a.strategy == quant::Strategy::kTensorGroup) {
    if (group <= 0) r.fail("group_size", "strategy " + strategy + " needs group_size > 0");
    a.group_size = static_cast<int>(group);
  } else if (has_group && group != -1) {
    r.fail("group_size", "strategy " + strategy + " takes no group_size (got " + std::to_string(group) + ")");
  }
  const YAML::Node bs = r.take("block_structure");
  if (bs.IsDefined() && !bs.IsNull()) {
    int rows = 0, cols = 0;
    if (bs.IsSequence() && bs.size() == 2) {
      rows = bs[0].as<int>(0);
      cols = bs[1].as<int>(0);
    } else if (bs.IsScalar()) {
      if (std::sscanf(bs.Scalar().c_str(), "%dx%d", &rows, &cols) != 2) rows = cols = 0;
    }
    if (rows <= 0 || cols <= 0) r.fail("block_structure", "expected [rows, cols] or \"RxC\" with positive sizes");
    a.block_structure = {rows, cols};
  }
  if (a.strategy == quant::Strategy::kBlock && a.block_structure[0] == 0) {
    r.fail("block_structure", "strategy block needs block_structure, e.g. [128, 128]");
  }
  if (a.strategy != quant::Strategy::kBlock && a.block_structure[0] != 0) {
    r.fail("block_structure", "only strategy block takes a block_structure");
  }
  const std::string dynamic = r.get_string("dynamic", "false");
  if (dynamic != "false" && dynamic != "False") {
    r.fail("dynamic", "weights are quantized once (dynamic: false), got '" + dynamic + "'");
  }
  // In a group, null (and false) leaves the modifier's value (llm-compressor's resolve_actorder).
  switch (parse_actorder_node(r, "actorder")) {
    case ActOrderValue::kUnset: *actorder = std::nullopt; break;
    case ActOrderValue::kNone: *actorder = quant::ActOrder::kNone; break;
    case ActOrderValue::kWeight: *actorder = quant::ActOrder::kStatic; break;
  }
  // Scale dtype: torch spellings; unset means the model dtype, except where the format fixes it.
  // "e8m0" is dsv4-calib's spelling before issue 27, kept as an alias of torch's float8_e8m0fnu.
  const std::string sd = r.get_enum("scale_dtype", "", {"", "torch.bfloat16", "bfloat16", "torch.float32",
                                                        "float32", "torch.float8_e4m3fn", "float8_e4m3fn",
                                                        "torch.float8_e8m0fnu", "float8_e8m0fnu",
                                                        "torch.uint8", "uint8", "e8m0"});
  if (sd.empty()) {
    const bool fp4 = a.type == quant::QuantType::kFloat && a.num_bits == 4;
    a.scale_dtype = fp4 && a.strategy == quant::Strategy::kTensorGroup ? quant::ScaleDType::kE4m3
                    : fp4                                               ? quant::ScaleDType::kE8m0
                                                                        : quant::ScaleDType::kModel;
  } else if (sd.find("bfloat16") != std::string::npos) {
    a.scale_dtype = quant::ScaleDType::kModel;
  } else if (sd.find("float32") != std::string::npos) {
    a.scale_dtype = quant::ScaleDType::kF32;
  } else if (sd.find("e4m3") != std::string::npos) {
    a.scale_dtype = quant::ScaleDType::kE4m3;
  } else {
    a.scale_dtype = quant::ScaleDType::kE8m0;
  }
  (void)r.get_string("zp_dtype", "");  // implied by the type and symmetry; accepted for compatibility
  const std::string obs = r.get_enum("observer", "minmax", {"minmax", "memoryless_minmax", "static_minmax",
                                                            "mse", "memoryless_mse"});
  a.observer = obs.find("mse") != std::string::npos ? quant::ObserverKind::kMse : quant::ObserverKind::kMinMax;
  YamlReader kw = r.child("observer_kwargs");
  a.mse.maxshrink = static_cast<float>(kw.get_double("maxshrink", a.mse.maxshrink));
  a.mse.grid = static_cast<int>(kw.get_int("grid", a.mse.grid));
  a.mse.norm = static_cast<float>(kw.get_double("norm", a.mse.norm));
  a.mse.patience = static_cast<int>(kw.get_int("patience", a.mse.patience));
  a.mse.expand = static_cast<float>(kw.get_double("expand", a.mse.expand));
  kw.finish({"maxshrink", "grid", "norm", "patience", "expand"});
  r.finish(kWeightKeys);
  recipe_args_check(r, a.problem());
  return a;
}

quant::ActivationArgs recipe_activations_parse(YamlReader& r) {
  quant::ActivationArgs a;
  a.num_bits = static_cast<int>(r.get_int("num_bits", 8));
  a.type = parse_type(r);
  a.symmetric = r.get_bool("symmetric", true);
  const int64_t group = r.get_int("group_size", 0);
  const std::string strategy =
      r.get_enum("strategy", group > 0 ? "group" : "tensor", {"tensor", "token", "group", "tensor_group"});
  a.strategy = strategy == "tensor"  ? quant::ActStrategy::kTensor
               : strategy == "token" ? quant::ActStrategy::kToken
               : strategy == "group" ? quant::ActStrategy::kGroup
                                     : quant::ActStrategy::kTensorGroup;
  a.group_size = group > 0 ? static_cast<int>(group) : 0;
  const std::string dyn = r.get_string("dynamic", "false");
  if (dyn == "true" || dyn == "True") {
    a.dynamic = quant::ActDynamic::kDynamic;
  } else if (dyn == "local") {
    a.dynamic = quant::ActDynamic::kLocal;
  } else if (dyn == "false" || dyn == "False") {
    a.dynamic = quant::ActDynamic::kStatic;
  } else {
    r.fail("dynamic", "expected true, false or local, got '" + dyn + "'");
  }
  (void)r.get_string("scale_dtype", "");
  (void)r.get_string("zp_dtype", "");
  (void)r.get_string("observer", "");
  (void)r.child("observer_kwargs");
  (void)r.take("actorder");
  (void)r.take("block_structure");
  r.finish({"num_bits", "type", "symmetric", "group_size", "strategy", "dynamic", "scale_dtype",
            "zp_dtype", "observer", "observer_kwargs", "actorder", "block_structure"});
  recipe_args_check(r, a.problem());
  return a;
}

}  // namespace dsv4::calib

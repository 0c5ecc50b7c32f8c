// scheme_json.cpp: QuantizationArgs dumps in compressed-tensors' key order and spellings.
#include "calib/scheme_json.h"

namespace dsv4::calib {
namespace {

using nlohmann::ordered_json;

const char* strategy_json(quant::Strategy s) {
  switch (s) {
    case quant::Strategy::kTensor: return "tensor";
    case quant::Strategy::kChannel: return "channel";
    case quant::Strategy::kGroup: return "group";
    case quant::Strategy::kBlock: return "block";
    case quant::Strategy::kTensorGroup: return "tensor_group";
  }
  return "tensor";
}

}  // namespace

ordered_json actorder_json(quant::ActOrder actorder) {
  return actorder == quant::ActOrder::kStatic  ? ordered_json("weight")
         : actorder == quant::ActOrder::kGroup ? ordered_json("group")
                                               : ordered_json(nullptr);
}

ordered_json quant_args_json(const quant::QuantArgs& a, quant::ActOrder actorder, ArgsSpelling spelling) {
  ordered_json j;
  j["num_bits"] = a.num_bits;
  j["type"] = a.type == quant::QuantType::kInt ? "int" : "float";
  j["symmetric"] = a.symmetric;
  j["group_size"] = a.group_size > 0 ? ordered_json(a.group_size) : ordered_json(nullptr);
  j["strategy"] = strategy_json(a.strategy);
  j["block_structure"] = a.strategy == quant::Strategy::kBlock
                             ? ordered_json::array({a.block_structure[0], a.block_structure[1]})
                             : ordered_json(nullptr);
  j["dynamic"] = false;
  // compressed-tensors >= 0.19 spells act-order "weight" (our kStatic) or null; "group" was removed
  // there (no recipe reaches kGroup any more: recipe_quant_args.cpp), so it is written only if
  // some caller plans it, and `verify` then fails on it (ct_rules.h).
  j["actorder"] = actorder_json(actorder);
  // compressed-tensors spells the scale dtype only where it is not the model dtype. config.json
  // says what is on disk (quant_args_scale_storage); the recipe says what the scale is, in torch's
  // spelling as llm-compressor reads it.
  switch (a.scale_dtype) {
    case quant::ScaleDType::kModel: j["scale_dtype"] = nullptr; break;
    case quant::ScaleDType::kF32: j["scale_dtype"] = "torch.float32"; break;
    case quant::ScaleDType::kE4m3: j["scale_dtype"] = "torch.float8_e4m3fn"; break;
    case quant::ScaleDType::kE8m0:
      j["scale_dtype"] = a.is_mx()                           ? ordered_json("torch.uint8")
                         : spelling == ArgsSpelling::kRecipe ? ordered_json("torch.float8_e8m0fnu")
                                                             : ordered_json("torch.float32");
      break;
  }
  const bool fp4 = a.type == quant::QuantType::kFloat && a.num_bits == 4;
  j["zp_dtype"] = a.symmetric ? ordered_json(nullptr) : ordered_json(fp4 ? "torch.float8_e4m3fn" : "torch.int8");
  j["observer"] = a.observer == quant::ObserverKind::kMse ? "memoryless_mse" : "memoryless_minmax";
  ordered_json kw = ordered_json::object();
  if (a.observer == quant::ObserverKind::kMse) {
    kw["maxshrink"] = a.mse.maxshrink;
    kw["grid"] = a.mse.grid;
    kw["norm"] = a.mse.norm;
    kw["patience"] = a.mse.patience;
  }
  j["observer_kwargs"] = kw;
  return j;
}

ordered_json activation_args_json(const quant::ActivationArgs& a) {
  ordered_json j;
  j["num_bits"] = a.num_bits;
  j["type"] = a.type == quant::QuantType::kInt ? "int" : "float";
  j["symmetric"] = a.symmetric;
  j["group_size"] = a.group_size > 0 ? ordered_json(a.group_size) : ordered_json(nullptr);
  j["strategy"] = std::string(quant::act_strategy_name(a.strategy));
  j["block_structure"] = nullptr;
  j["dynamic"] = a.dynamic == quant::ActDynamic::kDynamic ? ordered_json(true)
                 : a.dynamic == quant::ActDynamic::kLocal ? ordered_json("local")
                                                          : ordered_json(false);
  j["actorder"] = nullptr;
  const bool fp4 = a.type == quant::QuantType::kFloat && a.num_bits == 4;
  j["scale_dtype"] = fp4 && a.group_size == 16 ? ordered_json("torch.float8_e4m3fn")
                     : fp4                     ? ordered_json("torch.uint8")
                                               : ordered_json(nullptr);
  j["zp_dtype"] = nullptr;
  j["observer"] = a.dynamic == quant::ActDynamic::kDynamic ? ordered_json(nullptr)
                  : a.dynamic == quant::ActDynamic::kLocal ? ordered_json("minmax")
                                                           : ordered_json("static_minmax");
  j["observer_kwargs"] = ordered_json::object();
  return j;
}

ordered_json scheme_group_json(const RecipeGroup& g, const std::vector<std::string>& targets,
                               ArgsSpelling spelling) {
  ordered_json j;
  j["targets"] = targets;
  j["weights"] = quant_args_json(g.scheme.weights, g.actorder, spelling);
  j["input_activations"] = g.scheme.input_activations ? activation_args_json(*g.scheme.input_activations)
                                                      : ordered_json(nullptr);
  j["output_activations"] = nullptr;
  j["format"] = std::string(quant::pack_format_name(quant::quant_scheme_format(g.scheme)));
  return j;
}

}  // namespace dsv4::calib

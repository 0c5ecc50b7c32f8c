// ct_rules.h: the rules compressed-tensors enforces when it reads a `quantization_config`, as a
// table, so that `verify` fails closed on every config the consumer would reject (issue 27: a
// recipe with actorder group ran and verified OK, and its config.json failed compressed-tensors'
// validation).
//
//   std::vector<CtViolation> v = ct_quantization_config_violations(config["quantization_config"]);
//   for (const CtViolation& x : v) std::puts((x.where + ": " + x.message + " [" + x.rule + "]").c_str());
//
// The table is derived by reading the pydantic models of compressed-tensors 0.20.1 (the newest
// release at the time; 0.19.0, which llm-compressor 0.14.0.1 pins, has the same rules except where
// a rule says otherwise):
//   src/compressed_tensors/quantization/quant_config.py  QuantizationConfig (extra keys ignored)
//   src/compressed_tensors/quantization/quant_scheme.py  QuantizationScheme (extra="forbid",
//                                                         validate_model_after)
//   src/compressed_tensors/quantization/quant_args.py    QuantizationArgs (extra="forbid", the field
//                                                         validators and validate_model_after)
//   src/compressed_tensors/config/base.py                CompressionFormat
//   src/compressed_tensors/utils/type.py                 TorchDtype ("torch.NAME" or "NAME")
// Each rule has an id (`args.actorder`, `scheme.extra_keys`, ...) that the violation names. Only
// what can be decided from the JSON is checked: a torch dtype name must be one torch has, from a
// fixed list of the dtypes a quantization config can name.
// Tests: tests/calib/test_ct_rules.cpp (every rule with a config that violates it, and the
// configs the writer produces for every shipped recipe).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace dsv4::calib {

// The compressed-tensors release whose validators the table follows.
inline constexpr const char* kCtRulesVersion = "0.20.1";

struct CtViolation {
  std::string rule;     // the table's id, e.g. "args.actorder"
  std::string where;    // key path, e.g. "config_groups.group_0.weights.actorder"
  std::string message;  // what compressed-tensors refuses, in its terms
};

struct CtRule {
  const char* id;
  const char* source;  // file and validator in compressed-tensors 0.20.1
  const char* rule;    // the rule in one sentence
};

// The table, for docs and messages.
const std::vector<CtRule>& ct_rules();

// Every violation in a quantization_config (empty: compressed-tensors accepts it).
std::vector<CtViolation> ct_quantization_config_violations(const nlohmann::json& quantization_config);

}  // namespace dsv4::calib

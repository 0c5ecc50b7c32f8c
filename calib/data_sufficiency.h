// data_sufficiency.h: whether a recipe's calibration data is enough for its GPTQ modules, told
// before the run (`dsv4-calib plan`). GPTQ fits its Hessian's tokens; with few tokens per Hessian
// column it overfits them and its gain over round-to-nearest on unseen text shrinks. The measure is the
// fewest tokens per input column over the plan's GPTQ modules: samples·seq_len (an upper bound,
// as run_estimate's), less the held-out share, and for a routed expert outside all-experts mode
// its expected share (top-k / experts).
//
//   if (auto w = data_sufficiency_warning(recipe, plan, config, 4, 64)) log_warn("%s", w->c_str());
//
// The threshold kMinTokensPerColumn is measured (docs/QUALITY.md, "Thin data"): on the tiny model
// (w1/w3 read 256 columns) with w4a16_mtp, GPTQ's mean KL was 0.060-0.064 from 4 tokens per column
// up, and rose to 0.087 at 1 and 0.110 at 0.5 (RTN: 0.116), where held-out validation got 0.070-0.075.
// Tests: tests/calib/test_heldout.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "calib/module_plan.h"
#include "calib/recipe.h"
#include "model/config.h"

namespace dsv4::calib {

// Below this many calibration tokens per Hessian column, plan warns (docs/QUALITY.md, "Thin data").
inline constexpr double kMinTokensPerColumn = 4.0;

struct TokensPerColumn {
  double tokens_per_column = 0.0;
  int64_t tokens = 0;   // calibration tokens behind the module's Hessian (upper bound)
  int64_t cols = 0;     // its input columns
  std::string family;   // the module's family, e.g. layers.*.ffn.experts.*.w1
};

// The GPTQ module with the fewest tokens per column; nullopt without a GPTQ module.
std::optional<TokensPerColumn> tokens_per_column_min(const Recipe& recipe, const ModulePlan& plan,
                                                     const model::ModelConfig& config, int64_t samples, int64_t seq_len);
// The warning `plan` prints when that minimum is below kMinTokensPerColumn; nullopt otherwise.
std::optional<std::string> data_sufficiency_warning(const Recipe& recipe, const ModulePlan& plan,
                                                    const model::ModelConfig& config, int64_t samples, int64_t seq_len);

}  // namespace dsv4::calib

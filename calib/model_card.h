// model_card.h: the artifact's README.md, a model card in the Hugging Face convention (issue 25):
// YAML front matter (base_model, base_model_relation: quantized, library_name, tags), then the
// recipe, what was quantized and what was kept and why (the MTP block, the modules the recipe
// leaves in their source dtype), the calibration data and its sample hashes, the hardware and wall
// time, GPTQ vs RTN error, the `eval` numbers when OUT/eval.json holds them, and the vLLM serve
// command. Everything comes from the artifact's own records, so `dsv4-calib report OUT` can write
// it again (with eval numbers added since).
//
//   std::string card = model_card_markdown({.run = report_run, .recipe_yaml = yaml, .config = cfg});
//
// Tests: tests/calib/test_run_report.cpp, tests/e2e/cli_calibrate.sh.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "calib/run_report.h"

namespace dsv4::calib {

inline constexpr const char* kModelCardFile = "README.md";

struct ModelCardInputs {
  const ReportRun& run;             // the manifest, the progress events, eval.json
  const std::string& recipe_yaml;   // the artifact's recipe.yaml
  const nlohmann::ordered_json& config;  // the artifact's config.json (its quantization_config)
};

std::string model_card_markdown(const ModelCardInputs& inputs);

// The Hugging Face id of the base model: DeepSeek-V4-Flash's for a source of its shape (43
// layers of 256 routed experts), else the source directory's name (a synthetic or other model).
std::string model_card_base_model(const nlohmann::ordered_json& source_config);

// OUT/README.md written again from OUT's recipe.yaml, config.json and `run` (report_run_load).
void model_card_refresh(const std::string& out_dir, const ReportRun& run);

}  // namespace dsv4::calib

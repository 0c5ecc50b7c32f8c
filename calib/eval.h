// eval.h: what quantization cost, measured with the native forward: perplexity of a checkpoint
// (release or our artifact) on a text/chat dataset, and with a reference checkpoint the mean
// KL(reference || model) of the next-token distributions and their top-1 agreement.
//
//   EvalOptions o{.model = "out/", .reference = "release/", .dataset = {...}};
//   EvalResult r = eval_run(o);          // r.perplexity, r.kl_mean, r.top1_agreement
//   std::puts(eval_report(r).c_str());   // the `dsv4-calib eval` table; eval_json for --json
//
// Both checkpoints are read through checkpoint_config_load (artifact_decode.h), so a
// compressed-tensors artifact evaluates exactly like a release checkpoint. Tokens: the dataset's
// samples (data/calib_data.h) with the model directory's tokenizer (or options.tokenizer).
// Every position t < T-1 of every sample predicts token t+1; perplexity = exp(mean NLL).
// Tests: tests/calib/test_eval.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "data/calib_data.h"
#include "model/forward_context.h"

namespace dsv4::calib {

struct EvalOptions {
  std::string model;      // checkpoint directory to evaluate
  std::string reference;  // optional: source checkpoint for KL / top-1
  std::string tokenizer;  // directory with tokenizer.json; empty: the model directory
  data::DatasetOptions dataset;
  model::NumericMode mode = model::NumericMode::kFp32;
};

struct EvalSampleResult {
  int64_t tokens = 0;      // predicted positions (sample length - 1)
  double nll_sum = 0.0;    // Σ -log p_model(next token)
  double kl_sum = 0.0;     // Σ KL(p_ref || p_model), 0 without a reference
  int64_t top1_agree = 0;  // positions where argmax p_model == argmax p_ref
};

struct EvalResult {
  std::string model, reference;
  std::vector<EvalSampleResult> samples;
  int64_t tokens = 0;
  double perplexity = 0.0;
  double reference_perplexity = 0.0;  // 0 without a reference
  double kl_mean = 0.0;               // per predicted token
  double top1_agreement = 0.0;        // fraction of predicted tokens
  double seconds = 0.0;
  bool has_reference() const { return !reference.empty(); }
};

EvalResult eval_run(const EvalOptions& options);
std::string eval_report(const EvalResult& result);
nlohmann::ordered_json eval_json(const EvalResult& result);

}  // namespace dsv4::calib

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
// Log-softmax, NLL and KL are computed in double from the fp32 logits (max-subtracted, so no
// overflow). KL(p_ref || p_model) = Σ_v p_ref(v)·(log p_ref(v) − log p_model(v)) per position,
// so a model evaluated against itself gives exactly 0. Top-1 compares the first argmax of each.
// The reference must describe the same model: any value_diff outside the quantization fields
// (expert_dtype, source_fp8, fp8_block, scale_fmt) is an error listing the differences.
// Logs one line per sample (log_info). Non-finite logits stop with the sample and position.
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
  double reference_nll_sum = 0.0;  // Σ -log p_ref(next token), 0 without a reference
  double seconds = 0.0;            // both forwards of this sample
};

struct EvalResult {
  std::string model, reference;
  std::string mode;          // "fp32" or "bf16"
  uint64_t data_hash = 0;    // calib_data_hash of the samples: equal hashes, same token ids
  std::vector<EvalSampleResult> samples;
  int64_t tokens = 0;
  double perplexity = 0.0;
  double reference_perplexity = 0.0;  // 0 without a reference
  double kl_mean = 0.0;               // per predicted token
  double top1_agreement = 0.0;        // fraction of predicted tokens
  double seconds = 0.0;
  int64_t vocab_size = 0;  // of the model: a perplexity near it is chance (a uniform guess)
  bool has_reference() const { return !reference.empty(); }
};

// Throws dsv4::Error ("eval") for a reference that is another model, a tokenizer whose ids fall
// outside the model's vocabulary, no predicted position at all, or non-finite logits; dataset
// and checkpoint errors come from their modules and name the file.
EvalResult eval_run(const EvalOptions& options);
// The human table of `dsv4-calib eval`; reference rows show "-" without a reference.
std::string eval_report(const EvalResult& result);
// The same fields (reference ones null without a reference) plus per-sample arrays under
// "per_sample": tokens, nll, perplexity, kl_mean, top1_agreement, reference_perplexity, seconds.
nlohmann::ordered_json eval_json(const EvalResult& result);

// implementation details -------------------------------------------------------------------

// Adds the statistics of one sample's logits to `out`: model [T, vocab], reference [T, vocab] or
// empty, ids [T]. Positions 0..T-2 predict ids[1..T-1]. Exposed for tests.
void eval_sample_accumulate(const std::vector<float>& logits, const std::vector<float>& reference_logits,
                            const std::vector<int64_t>& ids, int64_t vocab, EvalSampleResult& out);

}  // namespace dsv4::calib

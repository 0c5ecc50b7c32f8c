// eval_compare.h: `dsv4-calib eval` with several --model checkpoints: each evaluated on the same
// samples (against --reference when given), and one comparison table a researcher reads: the
// source row (its perplexity), then per artifact its perplexity, mean KL(source || artifact) and
// top-1 agreement; or the same as one JSON object.
//
//   EvalComparison c = eval_compare_run(options, {"out_gptq", "out_rtn"});   // options.model unused
//   std::fputs(eval_compare_table(c).c_str(), stdout);
//   std::puts(eval_compare_json(c).dump().c_str());
//
// Each artifact is one eval_run (calib/eval.h), so the reference forward runs once per artifact.
// Every artifact must give the same samples (data hash): a different tokenizer in one of them is
// an error naming it. Tests: tests/calib/test_eval_compare.cpp, tests/e2e/cli_eval.sh.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "calib/eval.h"

namespace dsv4::calib {

struct EvalComparison {
  std::vector<EvalResult> rows;  // one per --model, in the order given
  std::string reference;         // empty without --reference
  double reference_perplexity = 0.0;
};

EvalComparison eval_compare_run(const EvalOptions& options, const std::vector<std::string>& models);
// "checkpoint | perplexity | mean KL | top-1" with the source first, then the chance-level note
// when it applies (as eval_report).
std::string eval_compare_table(const EvalComparison& c);
// {"reference", "mode", "samples", "data_hash", "tokens", "rows": [{"checkpoint", "role":
// "source"|"model", "perplexity", "kl_mean", "top1_agreement", "seconds"}]}; a source row's KL and
// top-1 and every row's without a reference are null.
nlohmann::ordered_json eval_compare_json(const EvalComparison& c);

}  // namespace dsv4::calib

// cmd_eval.cpp: `dsv4-calib eval`: what quantization cost, measured with the CPU reference
// forward (calib/eval.h): perplexity of a checkpoint (a release or our artifact) on a dataset,
// and with --reference the mean KL(reference || model) and top-1 agreement of the next-token
// distributions.
//
//   dsv4-calib eval --model /tmp/q --data calib.jsonl --reference /tmp/tiny
//   dsv4-calib eval --model /tmp/tiny --data a.jsonl --data b.txt --text --num-samples 4 --seq-len 64
//   dsv4-calib -v 0 eval --model /tmp/q --data calib.jsonl --reference /tmp/tiny --json   # JSON only
//   dsv4-calib eval --model /tmp/q_gptq --model /tmp/q_rtn --reference /tmp/tiny --data eval.jsonl
//
// With one --model the result is eval's own table (or JSON); with several, each is evaluated on
// the same samples and the result is one comparison table (source, then each model: perplexity,
// mean KL, top-1) or its JSON (calib/eval_compare.h).
//
// Samples are chosen as calibration chooses them (data/calib_data.h: seeded, truncated to
// --seq-len): {"messages": [...]} records are chat-encoded, {"text": ...} records and plain-text
// files get BOS + text; --text refuses chat records. Asking for more samples than the files hold
// is an error that says how many there are. Progress is one log line per sample; the result is
// a table, or with --json one JSON line (the last line of stdout; -v 0 leaves only it).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "calib/eval.h"
#include "calib/eval_compare.h"
#include "common/check.h"
#include "launch/commands.h"

namespace dsv4::launch {
namespace {

struct EvalArgs {
  std::vector<std::string> models;
  std::string reference, tokenizer;
  std::vector<std::string> data;
  int64_t num_samples = 16;
  int64_t seq_len = 256;
  uint64_t seed = 42;
  bool text = false;
  std::string mode = "fp32";
  bool json = false;
};

int run(const EvalArgs& a) {
  DSV4_USER_CHECK("eval", a.num_samples >= 0, "--num-samples %lld, expected >= 0 (0 = every record)",
                  static_cast<long long>(a.num_samples));
  DSV4_USER_CHECK("eval", a.seq_len == 0 || a.seq_len >= 2,
                  "--seq-len %lld, expected >= 2 (a sample needs a next token) or 0 (no cut)",
                  static_cast<long long>(a.seq_len));
  calib::EvalOptions o;
  o.model = a.models.front();
  o.reference = a.reference;
  o.tokenizer = a.tokenizer;
  o.dataset.files = a.data;
  o.dataset.num_samples = a.num_samples;
  o.dataset.seq_len = a.seq_len;
  o.dataset.seed = a.seed;
  o.dataset.min_len = 2;  // a one-token sample predicts nothing
  if (a.text) o.dataset.chat = std::nullopt;
  o.mode = a.mode == "bf16" ? model::NumericMode::kBf16 : model::NumericMode::kFp32;

  if (a.models.size() > 1) {
    const calib::EvalComparison c = calib::eval_compare_run(o, a.models);
    if (a.json) {
      std::printf("%s\n", calib::eval_compare_json(c).dump().c_str());
    } else {
      std::fputs(calib::eval_compare_table(c).c_str(), stdout);
    }
    return 0;
  }
  const calib::EvalResult r = calib::eval_run(o);
  if (a.json) {
    std::printf("%s\n", calib::eval_json(r).dump().c_str());
  } else {
    std::fputs(calib::eval_report(r).c_str(), stdout);
  }
  return 0;
}

}  // namespace

Command cmd_eval_register(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* sub = app.add_subcommand("eval", "perplexity of a checkpoint; KL and top-1 agreement against a reference");
  sub->add_option("--model", a->models,
                  "checkpoint directory to evaluate (release or dsv4-calib artifact); repeat it for a comparison table")
      ->required();
  sub->add_option("--data", a->data, "dataset file: JSONL ({\"messages\"} or {\"text\"}) or plain text; repeatable")
      ->required();
  sub->add_option("--reference", a->reference, "reference checkpoint (same model) for KL and top-1 agreement");
  sub->add_option("--tokenizer", a->tokenizer, "directory holding tokenizer.json (default: --model)");
  sub->add_option("--num-samples", a->num_samples, "samples to evaluate; 0 = every record")->capture_default_str();
  sub->add_option("--seq-len", a->seq_len, "tokens per sample (longer records are cut; 0 = no cut)")->capture_default_str();
  sub->add_option("--seed", a->seed, "sampling seed (as for calibration)")->capture_default_str();
  sub->add_flag("--text", a->text, "plain-text and {\"text\"} records only, no chat encoding");
  sub->add_option("--mode", a->mode, "numeric mode of the forward: fp32 or bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  sub->add_flag("--json", a->json,
                "print the result as one JSON line (one --model: with per-sample arrays; several: the table's rows)");
  return [a]() { return run(*a); };
}

}  // namespace dsv4::launch

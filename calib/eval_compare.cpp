// eval_compare.cpp: several checkpoints evaluated on the same samples, one table (see eval_compare.h).
#include "calib/eval_compare.h"

#include <algorithm>
#include <cinttypes>

#include "common/check.h"

namespace dsv4::calib {
namespace {

std::string hash_hex(uint64_t h) { return strfmt("%016" PRIx64, h); }

// Uniform guessing over V tokens has perplexity V (eval_report says the same for one model).
bool at_chance(const EvalComparison& c) {
  const double chance = static_cast<double>(c.rows.front().vocab_size);
  if (chance <= 0) return false;
  if (c.reference_perplexity > 0.5 * chance) return true;
  return std::any_of(c.rows.begin(), c.rows.end(), [&](const EvalResult& r) { return r.perplexity > 0.5 * chance; });
}

}  // namespace

EvalComparison eval_compare_run(const EvalOptions& options, const std::vector<std::string>& models) {
  DSV4_USER_CHECK("eval", !models.empty(), "no --model to evaluate");
  EvalComparison c;
  c.reference = options.reference;
  for (const std::string& m : models) {
    EvalOptions o = options;
    o.model = m;
    c.rows.push_back(eval_run(o));
    const EvalResult& first = c.rows.front();
    DSV4_USER_CHECK("eval", c.rows.back().data_hash == first.data_hash,
                    "--model %s gave other samples than --model %s (data hash %s vs %s): their tokenizers differ; "
                    "pass --tokenizer DIR to evaluate both on the same token ids",
                    m.c_str(), first.model.c_str(), hash_hex(c.rows.back().data_hash).c_str(),
                    hash_hex(first.data_hash).c_str());
  }
  if (!c.reference.empty()) c.reference_perplexity = c.rows.front().reference_perplexity;
  return c;
}

std::string eval_compare_table(const EvalComparison& c) {
  DSV4_CHECK_IN("eval", !c.rows.empty(), "an empty comparison");
  const EvalResult& first = c.rows.front();
  const bool ref = !c.reference.empty();
  size_t width = 10;  // "checkpoint"
  for (const EvalResult& r : c.rows) width = std::max(width, r.model.size());
  if (ref) width = std::max(width, c.reference.size() + 9);  // "(source) "
  std::string out = strfmt("eval: %zu samples (hash %s), %lld predicted tokens, %s forward\n", first.samples.size(),
                           hash_hex(first.data_hash).c_str(), static_cast<long long>(first.tokens), first.mode.c_str());
  const int w = static_cast<int>(width);
  out += strfmt("  %-*s  %12s  %12s  %8s\n", w, "checkpoint", "perplexity", "mean KL", "top-1");
  if (ref) out += strfmt("  %-*s  %12.4f  %12s  %8s\n", w, ("(source) " + c.reference).c_str(), c.reference_perplexity, "-", "-");
  for (const EvalResult& r : c.rows) {
    out += ref ? strfmt("  %-*s  %12.4f  %12.6f  %8.4f\n", w, r.model.c_str(), r.perplexity, r.kl_mean, r.top1_agreement)
               : strfmt("  %-*s  %12.4f  %12s  %8s\n", w, r.model.c_str(), r.perplexity, "-", "-");
  }
  if (ref) out += "  mean KL: KL(source || checkpoint) in nats per predicted token; top-1: argmax agreement with the source\n";
  if (at_chance(c)) {
    out += strfmt("  note: perplexity is at chance level (a uniform guess over %lld tokens scores %lld): perplexity\n"
                  "        differences are noise here; compare mean KL and top-1 agreement instead.\n",
                  static_cast<long long>(first.vocab_size), static_cast<long long>(first.vocab_size));
  }
  return out;
}

nlohmann::ordered_json eval_compare_json(const EvalComparison& c) {
  using nlohmann::ordered_json;
  DSV4_CHECK_IN("eval", !c.rows.empty(), "an empty comparison");
  const EvalResult& first = c.rows.front();
  const bool ref = !c.reference.empty();
  ordered_json j;
  j["reference"] = ref ? ordered_json(c.reference) : ordered_json();
  j["mode"] = first.mode;
  j["samples"] = first.samples.size();
  j["data_hash"] = hash_hex(first.data_hash);
  j["tokens"] = first.tokens;
  ordered_json rows = ordered_json::array();
  if (ref) {
    rows.push_back({{"checkpoint", c.reference}, {"role", "source"}, {"perplexity", c.reference_perplexity},
                    {"kl_mean", nullptr}, {"top1_agreement", nullptr}, {"seconds", nullptr}});
  }
  for (const EvalResult& r : c.rows) {
    rows.push_back({{"checkpoint", r.model},
                    {"role", "model"},
                    {"perplexity", r.perplexity},
                    {"kl_mean", ref ? ordered_json(r.kl_mean) : ordered_json()},
                    {"top1_agreement", ref ? ordered_json(r.top1_agreement) : ordered_json()},
                    {"seconds", r.seconds}});
  }
  j["rows"] = std::move(rows);
  return j;
}

}  // namespace dsv4::calib

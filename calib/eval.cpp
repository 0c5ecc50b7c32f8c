// eval.cpp: perplexity, KL and top-1 agreement with the native forward (see eval.h).
//
// Per sample: one model_forward of the model (and one of the reference) over the sample's ids,
// then eval_sample_accumulate over the [T, vocab] logits. Legend: T = sample length, V = vocab.
// Everything after the forward is double: a Flash vocabulary has 129280 entries, and a float sum
// of that many exp() terms loses ~1e-3 relative, which is the size of the KL we want to see.
#include "calib/eval.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "calib/artifact_decode.h"
#include "common/check.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "model/forward.h"

namespace dsv4::calib {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Fields that only say how the weights are stored: a quantized artifact and its source differ
// in them and are still the same model (value_diff spells each line "field: mine vs other").
bool config_diff_is_quantization(const std::string& line) {
  static const char* const kQuantFields[] = {"expert_dtype", "source_fp8", "fp8_block", "scale_fmt"};
  const std::string field = line.substr(0, line.find(':'));
  return std::any_of(std::begin(kQuantFields), std::end(kQuantFields),
                     [&](const char* f) { return field == f; });
}

void reference_config_check(const model::ModelConfig& model, const model::ModelConfig& reference,
                            const EvalOptions& o) {
  std::string listed;
  for (const std::string& line : model.value_diff(reference))
    if (!config_diff_is_quantization(line)) listed += "\n  " + line;
  DSV4_CHECK_IN("eval", listed.empty(),
                "--reference %s is not the same model as %s (config.json differs; model vs reference):%s",
                o.reference.c_str(), o.model.c_str(), listed.c_str());
}

// log-sum-exp of one row of V logits, max-subtracted so no exp() overflows.
double row_logsumexp(const float* row, int64_t vocab) {
  double max_v = row[0];
  for (int64_t v = 1; v < vocab; ++v) max_v = std::max(max_v, static_cast<double>(row[v]));
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max_v);
  return max_v + std::log(sum);
}

// First index of the maximum (ties: the lowest id, as torch.argmax does on CPU).
int64_t row_argmax(const float* row, int64_t vocab) {
  return std::max_element(row, row + vocab) - row;
}

std::vector<int64_t> ids_widen(const std::vector<int32_t>& ids) { return {ids.begin(), ids.end()}; }

double perplexity_of(double nll_sum, int64_t tokens) {
  return tokens > 0 ? std::exp(nll_sum / static_cast<double>(tokens)) : 0.0;
}

std::string hash_hex(uint64_t h) { return strfmt("%016" PRIx64, h); }

}  // namespace

void eval_sample_accumulate(const std::vector<float>& logits, const std::vector<float>& reference_logits,
                            const std::vector<int64_t>& ids, int64_t vocab, EvalSampleResult& out) {
  const int64_t t_len = static_cast<int64_t>(ids.size());
  const bool has_ref = !reference_logits.empty();
  DSV4_CHECK_IN("eval", static_cast<int64_t>(logits.size()) == t_len * vocab,
                "logits hold %zu values, expected T * vocab = %lld * %lld", logits.size(),
                static_cast<long long>(t_len), static_cast<long long>(vocab));
  DSV4_CHECK_IN("eval", !has_ref || reference_logits.size() == logits.size(),
                "reference logits hold %zu values, model logits %zu", reference_logits.size(), logits.size());
  for (int64_t t = 0; t + 1 < t_len; ++t) {
    const float* m = logits.data() + t * vocab;  // [V] model logits at position t
    const double lse_m = row_logsumexp(m, vocab);
    DSV4_CHECK_IN("eval", std::isfinite(lse_m), "model logits at position %lld are not finite",
                  static_cast<long long>(t));
    const int64_t next = ids[static_cast<size_t>(t + 1)];
    out.nll_sum += lse_m - static_cast<double>(m[next]);
    out.tokens += 1;
    if (!has_ref) continue;
    const float* r = reference_logits.data() + t * vocab;  // [V] reference logits at position t
    const double lse_r = row_logsumexp(r, vocab);
    DSV4_CHECK_IN("eval", std::isfinite(lse_r), "reference logits at position %lld are not finite",
                  static_cast<long long>(t));
    out.reference_nll_sum += lse_r - static_cast<double>(r[next]);
    // NOTE: each term is p_ref·((r - lse_r) - (m - lse_m)); with identical rows both brackets
    // are the same double, so a model against itself gives exactly 0, not rounding noise.
    double kl = 0.0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double log_p_ref = static_cast<double>(r[v]) - lse_r;
      const double log_p_model = static_cast<double>(m[v]) - lse_m;
      kl += std::exp(log_p_ref) * (log_p_ref - log_p_model);
    }
    out.kl_sum += kl;
    if (row_argmax(m, vocab) == row_argmax(r, vocab)) out.top1_agree += 1;
  }
}

EvalResult eval_run(const EvalOptions& o) {
  const Clock::time_point start = Clock::now();
  DSV4_CHECK_IN("eval", !o.model.empty(), "no model directory given");
  EvalResult result;
  result.model = o.model;
  result.reference = o.reference;
  result.mode = o.mode == model::NumericMode::kBf16 ? "bf16" : "fp32";

  // Configs first: a reference that is another model fails before any data is read.
  checkpoint_dir_check(o.model, "--model");
  if (result.has_reference()) checkpoint_dir_check(o.reference, "--reference");
  const model::ModelConfig config = checkpoint_config_load(o.model);
  result.vocab_size = config.vocab_size;
  model::ModelConfig ref_config;
  if (result.has_reference()) {
    ref_config = checkpoint_config_load(o.reference);
    reference_config_check(config, ref_config, o);
  }
  const Checkpoint ckpt = Checkpoint::open(o.model);
  std::optional<Checkpoint> ref_ckpt;
  if (result.has_reference()) ref_ckpt.emplace(Checkpoint::open(o.reference));

  const std::string tok_dir = o.tokenizer.empty() ? o.model : o.tokenizer;
  const data::Tokenizer tok = data::Tokenizer::load(tok_dir, o.tokenizer.empty() ? "--model" : "--tokenizer");
  const data::CalibData data = data::calib_data_build(tok, o.dataset);
  result.data_hash = data::calib_data_hash(data);
  // A tokenizer from another model shows up here, named, rather than as an embedding error.
  for (size_t i = 0; i < data.samples.size(); ++i)
    for (int32_t id : data.samples[i].ids)
      DSV4_CHECK_IN("eval", id >= 0 && id < config.vocab_size,
                    "sample %zu holds token id %d, outside the vocabulary [0, %d) of %s: is the tokenizer "
                    "(%s) this model's?", i, id, config.vocab_size, o.model.c_str(), tok_dir.c_str());
  log_info("eval %s%s%s | %zu samples | %lld tokens | mode %s", o.model.c_str(),
           result.has_reference() ? " vs " : "", o.reference.c_str(), data.samples.size(),
           static_cast<long long>(data.num_tokens()), result.mode.c_str());

  const model::ForwardOptions fwd{.mode = o.mode, .logits = true};
  double nll_total = 0.0;
  for (size_t i = 0; i < data.samples.size(); ++i) {
    const Clock::time_point sample_start = Clock::now();
    const std::vector<int64_t> ids = ids_widen(data.samples[i].ids);
    EvalSampleResult s;
    if (ids.size() >= 2) {  // a single token predicts nothing
      const model::ForwardResult m = model::model_forward(ckpt, config, ids, fwd);
      model::ForwardResult r;
      if (ref_ckpt) r = model::model_forward(*ref_ckpt, ref_config, ids, fwd);
      try {
        eval_sample_accumulate(m.logits, r.logits, ids, config.vocab_size, s);
      } catch (const Error& e) {
        DSV4_FAIL("eval", "sample index %zu (%zu tokens): %s", i, ids.size(), e.message().c_str());
      }
    }
    s.seconds = seconds_since(sample_start);
    result.samples.push_back(s);
    result.tokens += s.tokens;
    nll_total += s.nll_sum;
    log_info("sample %4zu/%zu | tok %5zu | ppl %10.4f | run ppl %10.4f | %7.2f s", i + 1, data.samples.size(),
             ids.size(), perplexity_of(s.nll_sum, s.tokens), perplexity_of(nll_total, result.tokens), s.seconds);
  }
  DSV4_CHECK_IN("eval", result.tokens > 0,
                "no predicted positions: %zu samples, none with 2 or more tokens", data.samples.size());

  double ref_nll = 0.0, kl = 0.0;
  int64_t agree = 0;
  for (const EvalSampleResult& s : result.samples) {
    ref_nll += s.reference_nll_sum;
    kl += s.kl_sum;
    agree += s.top1_agree;
  }
  const double n = static_cast<double>(result.tokens);
  result.perplexity = std::exp(nll_total / n);
  if (result.has_reference()) {
    result.reference_perplexity = std::exp(ref_nll / n);
    result.kl_mean = kl / n;
    result.top1_agreement = static_cast<double>(agree) / n;
  }
  result.seconds = seconds_since(start);
  return result;
}

std::string eval_report(const EvalResult& r) {
  const bool ref = r.has_reference();
  auto row = [](const char* name, const std::string& value) { return strfmt("  %-22s %s\n", name, value.c_str()); };
  std::string out = "eval\n";
  out += row("model", r.model);
  out += row("reference", ref ? r.reference : "-");
  out += row("mode", r.mode);
  out += row("samples", std::to_string(r.samples.size()) + "  (hash " + hash_hex(r.data_hash) + ")");
  out += row("tokens", std::to_string(r.tokens) + "  (predicted positions)");
  out += row("perplexity", strfmt("%.6f", r.perplexity));
  out += row("reference perplexity", ref ? strfmt("%.6f", r.reference_perplexity) : "-");
  out += row("mean KL (ref||model)", ref ? strfmt("%.6e nats/token", r.kl_mean) : "-");
  out += row("top-1 agreement", ref ? strfmt("%.4f", r.top1_agreement) : "-");
  out += row("seconds", strfmt("%.2f", r.seconds));
  // Uniform guessing over V tokens has perplexity V. A model near that predicts nothing: said
  // here, so that nobody reads a quantized model's lower perplexity on such a model as a gain.
  const double chance = static_cast<double>(r.vocab_size);
  if (chance > 0 && (r.perplexity > 0.5 * chance || (ref && r.reference_perplexity > 0.5 * chance))) {
    out += strfmt("  note: perplexity is at chance level (a uniform guess over %lld tokens scores %lld):\n"
                  "        this model predicts no better than chance, as a `make-model` checkpoint (random weights)\n"
                  "        does, so perplexity differences are noise; compare mean KL and top-1 agreement instead.\n",
                  static_cast<long long>(r.vocab_size), static_cast<long long>(r.vocab_size));
  }
  return out;
}

nlohmann::ordered_json eval_json(const EvalResult& r) {
  using nlohmann::ordered_json;
  const bool ref = r.has_reference();
  ordered_json j;
  j["model"] = r.model;
  j["reference"] = ref ? ordered_json(r.reference) : ordered_json();
  j["mode"] = r.mode;
  j["samples"] = r.samples.size();
  j["data_hash"] = hash_hex(r.data_hash);
  j["tokens"] = r.tokens;
  j["perplexity"] = r.perplexity;
  j["reference_perplexity"] = ref ? ordered_json(r.reference_perplexity) : ordered_json();
  j["kl_mean"] = ref ? ordered_json(r.kl_mean) : ordered_json();
  j["top1_agreement"] = ref ? ordered_json(r.top1_agreement) : ordered_json();
  j["seconds"] = r.seconds;
  // Per-sample columns (index = sample); per-token means, null where a sample predicts nothing.
  ordered_json tokens = ordered_json::array(), nll = ordered_json::array(), ppl = ordered_json::array();
  ordered_json kl = ordered_json::array(), top1 = ordered_json::array(), ref_ppl = ordered_json::array();
  ordered_json secs = ordered_json::array();
  for (const EvalSampleResult& s : r.samples) {
    const double n = static_cast<double>(s.tokens);
    const bool any = s.tokens > 0;
    tokens.push_back(s.tokens);
    nll.push_back(any ? ordered_json(s.nll_sum / n) : ordered_json());
    ppl.push_back(any ? ordered_json(perplexity_of(s.nll_sum, s.tokens)) : ordered_json());
    if (ref) {
      kl.push_back(any ? ordered_json(s.kl_sum / n) : ordered_json());
      top1.push_back(any ? ordered_json(static_cast<double>(s.top1_agree) / n) : ordered_json());
      ref_ppl.push_back(any ? ordered_json(perplexity_of(s.reference_nll_sum, s.tokens)) : ordered_json());
    }
    secs.push_back(s.seconds);
  }
  ordered_json per;
  per["tokens"] = tokens;
  per["nll"] = nll;
  per["perplexity"] = ppl;
  per["kl_mean"] = ref ? kl : ordered_json();
  per["top1_agreement"] = ref ? top1 : ordered_json();
  per["reference_perplexity"] = ref ? ref_ppl : ordered_json();
  per["seconds"] = secs;
  j["per_sample"] = per;
  return j;
}

}  // namespace dsv4::calib

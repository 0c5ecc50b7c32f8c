// test_eval.cpp: calib::eval_run / eval_sample_accumulate on tiny synthetic checkpoints
// (model::synth_checkpoint_write, tiny config, seeds 0 and 1, plus a 2-layer one):
//   - the statistics on hand-made logits (uniform rows, a 3-way KL written out by hand);
//   - a model against itself: KL exactly 0, top-1 exactly 1, perplexity == reference perplexity;
//   - perplexity == exp(mean NLL) recomputed here from model_forward's logits;
//   - another seed as reference: KL > 0, top-1 < 1, and its perplexity is the one it gets alone;
//   - text-only mode, JSON/report fields, and named errors (missing data file, another model).
// The tiny forward at 32 tokens takes milliseconds, so the whole suite runs in about a second.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "calib/eval.h"
#include "common/check.h"
#include "common/safetensors.h"
#include "data/calib_data.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/synth_model.h"
#include "tests/data/data_test_util.h"

namespace dsv4::calib {
namespace {

using data::testing::TempDir;

// Three checkpoints and two datasets, written once for the suite.
class EvalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("dsv4_test_eval");
    model::synth_checkpoint_write(model::ModelConfig::tiny(), {.out_dir = model_a(), .seed = 0, .threads = 2});
    model::synth_checkpoint_write(model::ModelConfig::tiny(), {.out_dir = model_b(), .seed = 1, .threads = 2});
    model::synth_checkpoint_write(model::synth_preset_config("tiny", 2),
                                  {.out_dir = model_2layer(), .seed = 0, .threads = 2});
    dir_->file("text.jsonl",
               "{\"text\": \"The quick brown fox jumps over the lazy dog, again and again.\"}\n"
               "{\"text\": \"Calibration data should look like the text the model will see.\"}\n"
               "{\"text\": \"A short one.\"}\n");
    dir_->file("chat.jsonl",
               "{\"messages\": [{\"role\": \"user\", \"content\": \"What is GPTQ?\"}, "
               "{\"role\": \"assistant\", \"content\": \"A one-shot weight quantization method.\"}]}\n"
               "{\"text\": \"Mixed files are fine in chat mode.\"}\n");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string model_a() { return dir_->path() + "/a"; }
  static std::string model_b() { return dir_->path() + "/b"; }
  static std::string model_2layer() { return dir_->path() + "/two"; }
  static std::string path(const std::string& name) { return dir_->path() + "/" + name; }

  // 3 samples of <= 32 tokens from both files (chat encoding on).
  static EvalOptions options(const std::string& reference = "") {
    EvalOptions o;
    o.model = model_a();
    o.reference = reference;
    o.dataset.files = {path("text.jsonl"), path("chat.jsonl")};
    o.dataset.num_samples = 3;
    o.dataset.seq_len = 32;
    o.dataset.min_len = 2;
    return o;
  }

  static TempDir* dir_;
};
TempDir* EvalTest::dir_ = nullptr;

// The message of the dsv4::Error that fn throws ("" and a test failure if none).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no dsv4::Error thrown";
  return "";
}

TEST(EvalSampleAccumulate, UniformRowsAndHandKl) {
  // Uniform model logits over V = 4: NLL log 4 at every position, whatever the target.
  const int64_t vocab = 4;
  const std::vector<int64_t> ids = {0, 3, 1};  // T = 3: two predicted positions
  const std::vector<float> uniform(3 * vocab, 0.5f);
  EvalSampleResult s;
  eval_sample_accumulate(uniform, {}, ids, vocab, s);
  EXPECT_EQ(s.tokens, 2);
  EXPECT_NEAR(s.nll_sum, 2 * std::log(4.0), 1e-15);
  EXPECT_EQ(s.kl_sum, 0.0);
  EXPECT_EQ(s.top1_agree, 0);

  // Reference logits log(p) with p = (0.5, 0.25, 0.125, 0.125) at both positions, model uniform:
  // KL(p || u) = Σ p log(p / 0.25) = 0.5 log 2 + 0 + 2 · 0.125 log 0.5 = 0.25 log 2 per position.
  // Reference argmax 0 == the model's first argmax 0 (uniform ties pick id 0).
  const float lp[4] = {std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.125f)};
  std::vector<float> ref;
  for (int t = 0; t < 3; ++t) ref.insert(ref.end(), lp, lp + 4);
  EvalSampleResult k;
  eval_sample_accumulate(uniform, ref, ids, vocab, k);
  EXPECT_NEAR(k.kl_sum, 2 * 0.25 * std::log(2.0), 1e-7) << "float log(p) inputs: ~1e-8 error";
  EXPECT_EQ(k.top1_agree, 2);
  // Reference NLL: targets 3 (p = 0.125) and 1 (p = 0.25).
  EXPECT_NEAR(k.reference_nll_sum, -std::log(0.125) - std::log(0.25), 1e-6);

  // Large logits must not overflow: a row of 1e4 and 1e4 - log 3 (softmax = 3/4, 1/4).
  const std::vector<float> big = {1e4f, 1e4f - std::log(3.0f), 1e4f, 1e4f - std::log(3.0f)};
  EvalSampleResult b;
  eval_sample_accumulate(big, {}, {0, 1}, 2, b);
  EXPECT_NEAR(b.nll_sum, std::log(4.0), 2e-3) << "1e4 in float has ulp 1e-3";
  EXPECT_TRUE(std::isfinite(b.nll_sum));

  const std::string err = error_of([&] { eval_sample_accumulate(uniform, {}, ids, 5, s); });
  EXPECT_NE(err.find("expected T * vocab"), std::string::npos) << err;
}

TEST_F(EvalTest, SelfReferenceIsExact) {
  const EvalResult r = eval_run(options(model_a()));
  ASSERT_EQ(r.samples.size(), 3u);
  ASSERT_GT(r.tokens, 10) << "the samples must predict something";
  EXPECT_GT(r.perplexity, 1.0);
  EXPECT_TRUE(std::isfinite(r.perplexity));
  // Same checkpoint, same ids, same deterministic forward: bit-identical logits, so each KL term
  // is exactly 0 (see eval_sample_accumulate) and every argmax agrees.
  EXPECT_EQ(r.kl_mean, 0.0);
  EXPECT_EQ(r.top1_agreement, 1.0);
  EXPECT_EQ(r.perplexity, r.reference_perplexity);
  int64_t tokens = 0;
  for (const EvalSampleResult& s : r.samples) {
    EXPECT_EQ(s.kl_sum, 0.0);
    EXPECT_EQ(s.top1_agree, s.tokens);
    EXPECT_EQ(s.nll_sum, s.reference_nll_sum);
    tokens += s.tokens;
  }
  EXPECT_EQ(tokens, r.tokens);
}

TEST_F(EvalTest, PerplexityMatchesIndependentNll) {
  EvalOptions o = options();
  o.dataset.num_samples = 1;
  const EvalResult r = eval_run(o);
  ASSERT_EQ(r.samples.size(), 1u);

  // The same sample, tokenized and run here, NLL summed with a plain log(Σ exp) in long double.
  const data::CalibData d = data::calib_data_build(data::Tokenizer::load(model_a()), o.dataset);
  ASSERT_EQ(d.samples.size(), 1u);
  const std::vector<int64_t> ids(d.samples[0].ids.begin(), d.samples[0].ids.end());
  const model::ModelConfig config = model::ModelConfig::from_file(model_a() + "/config.json");
  const model::ForwardResult f = model::model_forward(Checkpoint::open(model_a()), config, ids, {});
  const int64_t vocab = config.vocab_size;
  ASSERT_EQ(f.logits.size(), ids.size() * static_cast<size_t>(vocab));
  long double nll = 0;
  for (size_t t = 0; t + 1 < ids.size(); ++t) {
    long double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<long double>(f.logits[t * vocab + v]));
    nll += std::log(sum) - f.logits[t * vocab + ids[t + 1]];
  }
  const double expected = std::exp(static_cast<double>(nll / (ids.size() - 1)));
  EXPECT_EQ(r.tokens, static_cast<int64_t>(ids.size()) - 1);
  EXPECT_NEAR(r.perplexity, expected, 1e-12 * expected) << "T = " << ids.size() << ", vocab = " << vocab;
  EXPECT_GT(r.perplexity, 1.0);
  EXPECT_EQ(r.reference_perplexity, 0.0);
  EXPECT_FALSE(r.has_reference());
}

TEST_F(EvalTest, OtherSeedReferenceDiffers) {
  const EvalResult r = eval_run(options(model_b()));
  ASSERT_GT(r.tokens, 0);
  EXPECT_GT(r.kl_mean, 1e-6) << "two random models must disagree";
  EXPECT_LT(r.top1_agreement, 1.0);
  EXPECT_GE(r.top1_agreement, 0.0);
  EXPECT_NE(r.perplexity, r.reference_perplexity);
  for (const EvalSampleResult& s : r.samples) EXPECT_GE(s.kl_sum, 0.0) << "KL is non-negative";

  // The reference perplexity is the one model b gets on its own, bit for bit.
  EvalOptions alone = options();
  alone.model = model_b();
  EXPECT_EQ(eval_run(alone).perplexity, r.reference_perplexity);

  // Table and JSON carry the same numbers.
  const nlohmann::ordered_json j = eval_json(r);
  EXPECT_EQ(j["reference"], model_b());
  EXPECT_EQ(j["tokens"], r.tokens);
  EXPECT_EQ(j["kl_mean"].get<double>(), r.kl_mean);
  EXPECT_EQ(j["top1_agreement"].get<double>(), r.top1_agreement);
  EXPECT_EQ(j["reference_perplexity"].get<double>(), r.reference_perplexity);
  for (const char* key : {"tokens", "nll", "perplexity", "kl_mean", "top1_agreement", "reference_perplexity", "seconds"})
    EXPECT_EQ(j["per_sample"][key].size(), r.samples.size()) << key;
  const std::string table = eval_report(r);
  for (const char* row : {"perplexity", "reference perplexity", "mean KL", "top-1 agreement", "seconds"})
    EXPECT_NE(table.find(row), std::string::npos) << row << " missing from:\n" << table;
  EXPECT_NE(table.find(model_b()), std::string::npos) << table;
}

TEST_F(EvalTest, TextModeAndNoReferenceOutput) {
  EvalOptions o = options();
  o.dataset.files = {path("text.jsonl")};
  o.dataset.chat = std::nullopt;
  const EvalResult r = eval_run(o);
  EXPECT_EQ(r.samples.size(), 3u);
  const nlohmann::ordered_json j = eval_json(r);
  EXPECT_TRUE(j["reference"].is_null());
  EXPECT_TRUE(j["kl_mean"].is_null());
  EXPECT_TRUE(j["per_sample"]["kl_mean"].is_null());
  EXPECT_EQ(j["samples"], 3);
  EXPECT_NE(eval_report(r).find("reference              -"), std::string::npos) << eval_report(r);

  // Chat records are an error in text mode, named by file and line.
  o.dataset.files = {path("chat.jsonl")};
  o.dataset.num_samples = 1;
  const std::string err = error_of([&] { eval_run(o); });
  EXPECT_NE(err.find("chat.jsonl:1"), std::string::npos) << err;
}

TEST_F(EvalTest, ErrorsNameTheProblem) {
  EvalOptions missing = options();
  missing.dataset.files = {path("text.jsonl"), path("nowhere.jsonl")};
  std::string err = error_of([&] { eval_run(missing); });
  EXPECT_NE(err.find("nowhere.jsonl"), std::string::npos) << err;

  // A 2-layer reference for a 4-layer model: refused before any forward, listing the field.
  err = error_of([&] { eval_run(options(model_2layer())); });
  EXPECT_NE(err.find("not the same model"), std::string::npos) << err;
  EXPECT_NE(err.find("num_hidden_layers: 4 vs 2"), std::string::npos) << err;

  EvalOptions too_many = options();
  too_many.dataset.num_samples = 50;
  err = error_of([&] { eval_run(too_many); });
  EXPECT_FALSE(err.empty());

  EvalOptions no_model = options();
  no_model.model = path("absent");
  err = error_of([&] { eval_run(no_model); });
  EXPECT_NE(err.find("absent"), std::string::npos) << err;
}

}  // namespace
}  // namespace dsv4::calib

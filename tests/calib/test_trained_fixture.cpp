// test_trained_fixture.cpp: quality on a model that has learned something. The trained tiny
// DeepSeek-V4 (tests/fixtures/trained_tiny: trained with transformers' DeepseekV4ForCausalLM on the
// Python 3.11 documentation, written in the release layout by `make-model --weights`) is
// calibrated with w4a16_mtp on a few samples of its train text, once with GPTQ and once with the
// same scheme rounded to nearest; on held-out text GPTQ's artifact must be closer to the source
// (mean KL) than RTN's, and the source's perplexity far below chance. The fixture's tokenizer must
// also encode the held-out text exactly as Hugging Face `tokenizers` did.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "calib/calibrate.h"
#include "calib/eval.h"
#include "calib/recipe.h"
#include "common/fs.h"
#include "data/tokenizer.h"
#include "tests/scratch_dir.h"

namespace dsv4::calib {
namespace {

const std::string kFixture = std::string(DSV4_SOURCE_DIR) + "/tests/fixtures/trained_tiny";
const std::string kModel = kFixture + "/model";

// Samples: enough tokens per Hessian column that GPTQ's fit carries over to unseen text (issue 24
// saw GPTQ lose to RTN at 16 x 64 tokens on a random-weight model).
constexpr int64_t kCalibSamples = 32, kEvalSamples = 24, kSeqLen = 128;

EvalResult calibrate_and_eval(ModifierKind kind, const std::string& name) {
  const std::string out = dsv4::testing::scratch_path(name);
  Recipe r = recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/w4a16_mtp.yaml");
  recipe_apply_overrides(r, {.model = kModel, .dataset = kFixture + "/data/calib.jsonl", .out = out,
                             .num_samples = kCalibSamples, .seq_len = kSeqLen});
  if (kind == ModifierKind::kQuantization)  // RTN: the same scheme, data-free (bench_quality's twin)
    for (RecipeModifier& m : r.modifiers) m.kind = kind;
  calibrate_run(r, {.threads = 2, .progress = false});
  EvalOptions eo;
  eo.model = out;
  eo.reference = kModel;
  eo.dataset.files = {kFixture + "/data/heldout.jsonl"};
  eo.dataset.num_samples = kEvalSamples;
  eo.dataset.seq_len = kSeqLen;
  return eval_run(eo);
}

TEST(TrainedFixture, GptqBeatsRtnOnHeldOutTextW4a16Mtp) {
  const EvalResult gptq = calibrate_and_eval(ModifierKind::kGptq, "gptq");
  const EvalResult rtn = calibrate_and_eval(ModifierKind::kQuantization, "rtn");
  std::printf("source ppl %.3f | GPTQ ppl %.3f KL %.5f top-1 %.4f | RTN ppl %.3f KL %.5f top-1 %.4f | %lld tokens\n",
              gptq.reference_perplexity, gptq.perplexity, gptq.kl_mean, gptq.top1_agreement, rtn.perplexity,
              rtn.kl_mean, rtn.top1_agreement, static_cast<long long>(gptq.tokens));
  ASSERT_EQ(gptq.data_hash, rtn.data_hash) << "both artifacts must be evaluated on the same tokens";
  EXPECT_GT(gptq.tokens, 2000);
  // A model that learned: far below chance (a uniform guess scores the vocabulary size).
  EXPECT_LT(gptq.reference_perplexity, 0.05 * static_cast<double>(gptq.vocab_size));
  EXPECT_GT(rtn.kl_mean, 0.0) << "RTN left the model unchanged: nothing was quantized";
  EXPECT_LT(gptq.kl_mean, rtn.kl_mean);
  // Top-1 within 0.002 (6 of ~2900 positions): with the recipe's MSE scales (issue 24) RTN is
  // already close (KL 0.0416 vs 0.0439, top-1 0.8824 vs 0.8828 when recorded), and KL is the
  // contract; a GPTQ that broke the model would lose far more than that.
  EXPECT_GE(gptq.top1_agreement, rtn.top1_agreement - 0.002);
}

TEST(TrainedFixture, TokenizerEncodesHeldOutTextAsHuggingFaceDid) {
  const data::Tokenizer tok = data::Tokenizer::load(kModel + "/tokenizer.json");
  const nlohmann::json want = nlohmann::json::parse(read_file(kFixture + "/data/heldout_ids.json"));
  const std::string text = read_file(kFixture + "/data/heldout.txt");
  ASSERT_EQ(want["text_bytes"].get<size_t>(), text.size());
  const std::vector<int32_t> got = tok.encode(text);
  const auto ids = want["ids"].get<std::vector<int32_t>>();
  ASSERT_GT(ids.size(), 40000u);
  ASSERT_EQ(got.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(got[i], ids[i]) << "token " << i;
}

}  // namespace
}  // namespace dsv4::calib

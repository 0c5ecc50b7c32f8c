// test_heldout.cpp: held-out validation (calib/heldout.h, calib/heldout_solve.h): the split by
// sample index, the choice (least held-out error, ties to the first, RTN when it is least), a
// module solved under validation (RTN kept when the held-out Hessian says so, GPTQ when it fits
// the held-out tokens; its tensors decode to its weights), the recipe section (parsed, written
// only when enabled, errors naming the key), the layer report, and plan's thin-data warning.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "calib/artifact_decode.h"
#include "calib/data_sufficiency.h"
#include "calib/heldout.h"
#include "calib/heldout_solve.h"
#include "calib/layer_report.h"
#include "calib/module_plan.h"
#include "calib/recipe.h"
#include "common/check.h"
#include "common/rng.h"
#include "model/block_weights.h"
#include "model/synth_model.h"
#include "quant/hessian.h"
#include "quant/quantizer.h"
#include "tests/scratch_dir.h"
#include "tests/correlated_hessian.h"

namespace dsv4::calib {
namespace {

TEST(Heldout, SplitIsByGlobalSampleIndexAndEvenlySpread) {
  HeldoutOptions o;
  EXPECT_FALSE(heldout_sample(o, 3)) << "disabled by default";
  o.fraction = 0.25;
  std::vector<int64_t> held;
  for (int64_t i = 0; i < 16; ++i) {
    if (heldout_sample(o, i)) held.push_back(i);
  }
  EXPECT_EQ(held, (std::vector<int64_t>{3, 7, 11, 15}));
  EXPECT_EQ(heldout_count(o, 16), 4);
  EXPECT_EQ(heldout_count(o, 3), 0);
  o.fraction = 0.3;
  EXPECT_EQ(heldout_count(o, 100), 30);
  EXPECT_THROW(heldout_check_samples(o, 3, "r.yaml"), Error) << "0 of 3 held out";
  EXPECT_NO_THROW(heldout_check_samples(o, 10, "r.yaml"));
}

TEST(Heldout, ChoosesTheLeastErrorTiesToTheFirstAndRtnWhenLeast) {
  EXPECT_EQ(heldout_choose({3e-3, 2e-3, 4e-3, 1e-3}), 3) << "RTN (last) has the least held-out error";
  EXPECT_EQ(heldout_choose({3e-3, 2e-3, 4e-3, 5e-3}), 1);
  EXPECT_EQ(heldout_choose({2e-3, 2e-3, 2e-3}), 0) << "a tie keeps the first (smallest damping)";
  EXPECT_THROW(heldout_choose({}), Error);
  EXPECT_THROW(heldout_choose({1.0, std::nan("")}), Error);
}

quant::HessianResult identity_hessian(int64_t cols) {
  quant::HessianResult h{cols, cols, false, std::vector<float>(static_cast<size_t>(cols * cols), 0.0f)};
  for (int64_t i = 0; i < cols; ++i) h.h[static_cast<size_t>(i * cols + i)] = 1.0f;
  return h;
}

struct ExpertFixture {
  model::ModelConfig c = model::ModelConfig::tiny();
  std::string dir = dsv4::testing::scratch_path("heldout_tiny");
  Recipe r;
  ModulePlan plan;
  const PlannedModule* w1 = nullptr;
  std::vector<float> weight;
  ExpertFixture() {
    model::synth_checkpoint_write(c, {.out_dir = dir, .seed = 5, .calibration_records = 0});
    r = recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/w4a16_mtp.yaml");
    plan = module_plan_build(r, c, 1);
    for (const PlannedModule& m : plan.modules) {
      if (m.layer == 0 && m.expert == 0 && m.role == model::LinearRole::kExpertW1) w1 = &m;
    }
    const Checkpoint src = Checkpoint::open(dir);
    weight = model::linear_load(src, c, w1->names.release, w1->rows, w1->cols).w;
  }
};

TEST(Heldout, KeepsRtnWhenTheHeldOutHessianSaysSo) {
  ExpertFixture f;
  ASSERT_NE(f.w1, nullptr);
  const Checkpoint src = Checkpoint::open(f.dir);
  const int64_t cols = f.w1->cols;
  // Calibration H from a few correlated tokens; held-out H = I, under which nearest rounding on
  // GPTQ's own grid (upfront qparams) is optimal: every GPTQ candidate moves codes and loses.
  const quant::HessianResult h = correlated_hessian(cols, cols / 2, 7), ho = identity_hessian(cols);
  ModuleSolveInput in{f.w1, f.weight.data(), {&h}, 0.0f, 0.0f};
  HeldoutOptions o;
  o.fraction = 0.25;
  const SolvedModule s = heldout_solve(in, {&ho}, o, src);
  ASSERT_TRUE(s.heldout.validated());
  ASSERT_EQ(s.heldout.errors.size(), o.dampings.size() + 1);
  EXPECT_TRUE(s.heldout.chose_rtn()) << heldout_choice_json(s.heldout).dump();
  for (size_t i = 0; i + 1 < s.heldout.errors.size(); ++i) EXPECT_GT(s.heldout.errors[i], s.heldout.errors.back());
  EXPECT_EQ(s.method, SolveMethod::kRtn);
  const quant::RtnResult rtn = quant::quantizer_rtn(f.w1->scheme->scheme.weights, f.weight.data(), f.w1->rows, cols);
  EXPECT_EQ(s.codes, rtn.codes);
  const std::vector<float> decoded = encoded_linear_decode(s.tensors, f.w1->names.release, f.w1->rows, cols);
  ASSERT_EQ(decoded.size(), s.dequant.size());
  EXPECT_EQ(std::memcmp(decoded.data(), s.dequant.data(), decoded.size() * sizeof(float)), 0);
  EXPECT_EQ(heldout_choice_json(s.heldout)["chosen"], "rtn");
}

TEST(Heldout, KeepsGptqWhenItFitsTheHeldOutTokens) {
  ExpertFixture f;
  const Checkpoint src = Checkpoint::open(f.dir);
  const int64_t cols = f.w1->cols;
  // Held-out tokens from the same distribution, plenty of them: GPTQ's fit carries over.
  const quant::HessianResult h = correlated_hessian(cols, 8 * cols, 7), ho = correlated_hessian(cols, 8 * cols, 8);
  ModuleSolveInput in{f.w1, f.weight.data(), {&h}, 0.0f, 0.0f};
  HeldoutOptions o;
  o.fraction = 0.25;
  o.refit = false;
  const SolvedModule s = heldout_solve(in, {&ho}, o, src);
  ASSERT_TRUE(s.heldout.validated());
  EXPECT_FALSE(s.heldout.chose_rtn()) << heldout_choice_json(s.heldout).dump();
  EXPECT_EQ(s.method, SolveMethod::kGptq);
  EXPECT_EQ(s.heldout.tokens, 8 * cols);
  // Without refit the kept module is the chosen candidate itself: its held-out error is the one reported.
  EXPECT_DOUBLE_EQ(heldout_rel_error(f.weight.data(), s.dequant.data(), f.w1->rows, cols, {&ho}),
                   s.heldout.errors[static_cast<size_t>(s.heldout.chosen)]);
  // No held-out token: solved as without validation.
  quant::HessianAccumulator none(cols);
  const quant::HessianResult empty = none.finalize();
  EXPECT_FALSE(heldout_solve(in, {&empty}, o, src).heldout.validated());
}

TEST(Heldout, MergedHessianWeighsByTokens) {
  const quant::HessianResult a{1, 3, false, {2.0f}}, b{1, 1, false, {6.0f}};
  const quant::HessianResult m = heldout_hessian_merge(a, b);
  EXPECT_EQ(m.num_tokens, 4);
  EXPECT_FLOAT_EQ(m.h[0], 3.0f);  // (3·2 + 1·6)/4
}

TEST(Heldout, RecipeSectionParsedWrittenOnlyWhenEnabledAndChecked) {
  const std::string base = std::string(DSV4_SOURCE_DIR) + "/recipes/w4a16_mtp.yaml";
  const Recipe plain = recipe_load(base);
  EXPECT_FALSE(plain.calibration.heldout.enabled());
  EXPECT_EQ(recipe_to_yaml(plain).find("heldout"), std::string::npos) << "other recipes' text (and hash) unchanged";
  const std::string yaml = R"(
calibration:
  heldout: {fraction: 0.25, dampings: [0.01, 1.0], refit: false}
quant_stage:
  quant_modifiers:
    GPTQModifier: {scheme: W4A16, targets: [Linear]}
)";
  const Recipe r = recipe_parse(yaml, "r.yaml");
  EXPECT_DOUBLE_EQ(r.calibration.heldout.fraction, 0.25);
  EXPECT_EQ(r.calibration.heldout.dampings, (std::vector<double>{0.01, 1.0}));
  EXPECT_FALSE(r.calibration.heldout.refit);
  const Recipe back = recipe_parse(recipe_to_yaml(r), "back.yaml");
  EXPECT_DOUBLE_EQ(back.calibration.heldout.fraction, 0.25);
  EXPECT_EQ(back.calibration.heldout.dampings, r.calibration.heldout.dampings);
  EXPECT_FALSE(back.calibration.heldout.refit);
  const auto expect_error = [](const std::string& text, const std::string& needle) {
    try {
      recipe_parse(text, "r.yaml");
      ADD_FAILURE() << "no error; expected " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::string gptq = "quant_stage: {quant_modifiers: {GPTQModifier: {scheme: W4A16, targets: [Linear]}}}\n";
  expect_error("calibration: {heldout: {fraction: 1.5}}\n" + gptq, "calibration.heldout.fraction");
  expect_error("calibration: {heldout: {dampings: [0.01, -1]}}\n" + gptq, "calibration.heldout.dampings");
  expect_error("calibration: {heldout: {fraction: 0.2, split: 3}}\n" + gptq, "split");
  expect_error("calibration: {heldout: {fraction: 0.2}}\n"
               "quant_stage: {quant_modifiers: {QuantizationModifier: {scheme: W4A16, targets: [Linear]}}}\n",
               "calibration.heldout");
}

TEST(Heldout, LayerReportCarriesTheChoice) {
  LayerReport l;
  l.name = "layers.0";
  ModuleReport a{"layers.0.ffn.experts.0.w1", SolveMethod::kRtn};
  a.heldout = {{0.01, 0.1}, {3e-3, 2e-3, 1e-3}, 2, 64};
  ModuleReport b{"layers.0.ffn.experts.0.w2", SolveMethod::kGptq};
  b.heldout = {{0.01, 0.1}, {3e-3, 2e-3, 4e-3}, 1, 64};
  l.modules = {a, b, ModuleReport{"layers.0.attn.wq_a", SolveMethod::kFp8Reencode}};
  EXPECT_EQ(l.heldout_validated(), 2);
  EXPECT_EQ(l.heldout_rtn(), 1);
  const nlohmann::ordered_json j = layer_report_json(l);
  EXPECT_EQ(j["heldout"]["validated"], 2);
  EXPECT_EQ(j["heldout"]["chosen"]["rtn"], 1);
  EXPECT_EQ(j["heldout"]["chosen"]["0.1"], 1);
  EXPECT_EQ(j["modules"][0]["heldout"]["chosen"], "rtn");
  EXPECT_DOUBLE_EQ(j["modules"][1]["heldout"]["dampening_frac"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(j["modules"][1]["heldout"]["errors"]["0.01"].get<double>(), 3e-3);
  EXPECT_FALSE(j["modules"][2].contains("heldout"));
  EXPECT_NE(layer_report_line(l, 6).find("heldout rtn 1/2"), std::string::npos) << layer_report_line(l, 6);
}

TEST(Heldout, PlanWarnsWhenTokensPerHessianColumnAreFew) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  Recipe r = recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/w4a16_mtp.yaml");
  const ModulePlan plan = module_plan_build(r, c, 1);
  // The routed experts' w1/w3 read the hidden state: the widest GPTQ inputs of this recipe.
  const std::optional<TokensPerColumn> t = tokens_per_column_min(r, plan, c, 16, 64);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->cols, c.hidden_size);
  EXPECT_DOUBLE_EQ(t->tokens_per_column, 16.0 * 64 / c.hidden_size);
  // Threshold 4 tokens per column (hidden 256): 4 x 64 tokens give 1, warned; 16 x 64 give 4, not.
  const std::optional<std::string> w = data_sufficiency_warning(r, plan, c, 4, 64);
  ASSERT_TRUE(w.has_value());
  EXPECT_NE(w->find("4 samples x 64 tokens"), std::string::npos) << *w;
  EXPECT_NE(w->find("1.0 per Hessian column, below 4"), std::string::npos) << *w;
  EXPECT_FALSE(data_sufficiency_warning(r, plan, c, 16, 64).has_value());
  // A held-out share leaves fewer calibration tokens.
  r.calibration.heldout.fraction = 0.5;
  EXPECT_DOUBLE_EQ(tokens_per_column_min(r, plan, c, 16, 64)->tokens_per_column, 8.0 * 64 / c.hidden_size);
}

}  // namespace
}  // namespace dsv4::calib

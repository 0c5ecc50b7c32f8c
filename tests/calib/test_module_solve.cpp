// test_module_solve.cpp: every module a shipped recipe quantizes, solved the way the pipeline
// solves it (GPTQ with a correlated Hessian, one per output group for wo_a; data-free rounding;
// the exact FP8 re-encode and MXFP4 -> INT4 conversions), on a tiny release-format checkpoint:
// its encoded tensors decode (encoded_linear_decode) to its dequantized weight bit for bit. That
// is what lets ranks share, and the journal stage, only the encoded tensors: the receiver or the
// resumed run rebuilds exactly the weights pass B used.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <map>
#include <string>
#include <vector>

#include "calib/artifact_decode.h"
#include "calib/module_plan.h"
#include "calib/module_solve.h"
#include "calib/recipe.h"
#include "common/rng.h"
#include "model/synth_model.h"
#include "model/block_weights.h"
#include "quant/hessian.h"
#include "tests/correlated_hessian.h"
#include "tests/scratch_dir.h"

namespace dsv4::calib {
namespace {

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(ModuleSolve, EncodedTensorsDecodeToTheDequantForEveryShippedRecipe) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  const std::string dir = dsv4::testing::scratch_path("tiny");
  model::synth_checkpoint_write(c, {.out_dir = dir, .seed = 9, .calibration_records = 0});
  const Checkpoint src = Checkpoint::open(dir);
  int checked = 0;
  std::map<SolveMethod, int> methods;
  for (const char* file : {"w4a16_mtp.yaml", "w4a16_fp8.yaml", "w3a16.yaml", "int4_int8.yaml", "nvfp4_fp8_mtp.yaml",
                           "appmana_int4_int8.yaml", "appmana_int4_int8_gptq.yaml"}) {
    SCOPED_TRACE(file);
    const Recipe r = recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/" + file);
    const ModulePlan plan = module_plan_build(r, c, 1);
    int in_recipe = 0;
    for (const PlannedModule& m : plan.modules) {
      // Layer 0 has every attention and FFN linear; experts 0 and 1 stand for the rest.
      if (!m.quantized() || m.layer != 0 || m.expert > 1) continue;
      SCOPED_TRACE(m.names.release);
      std::vector<quant::HessianResult> hs;
      if (m.scheme->gptq_solved()) {
        const int groups = m.role == model::LinearRole::kAttnWoA ? c.o_groups : 1;
        for (int gi = 0; gi < groups; ++gi) hs.push_back(correlated_hessian(m.cols, 2 * m.cols, 100 + gi));
      }
      ModuleSolveInput in{&m, nullptr, {}, 0.0f, 3.5f};
      for (const quant::HessianResult& h : hs) in.hessians.push_back(&h);
      std::vector<float> weight;
      if (module_solve_needs_weight(in, src)) {
        weight = model::linear_load(src, c, m.names.release, m.rows, m.cols).w;
        in.weight = weight.data();
      }
      const SolvedModule s = module_solve(in, src);
      ASSERT_EQ(s.dequant.size(), static_cast<size_t>(m.rows * m.cols));
      EXPECT_TRUE(bitwise_equal(encoded_linear_decode(s.tensors, m.names.release, m.rows, m.cols), s.dequant))
          << solve_method_name(s.method);
      ++methods[s.method];
      ++in_recipe;
    }
    EXPECT_GT(in_recipe, 0);
    checked += in_recipe;
  }
  for (const SolveMethod m : kSolveMethods) EXPECT_GT(methods[m], 0) << solve_method_name(m) << " never ran";
  std::printf("%d modules checked:", checked);
  for (const auto& [m, n] : methods) std::printf(" %s=%d", std::string(solve_method_name(m)).c_str(), n);
  std::printf("\n");
}

// The rounding options past classic GPTQ (issue 24) go from the recipe's calibration.gptq through
// the plan into the solve: on an expert of w4a16_mtp with a correlated Hessian, refine_passes
// lowers the Hessian-weighted error of classic GPTQ, scale_search: hessian changes the scales, and
// the defaults written out solve bit for bit as the shipped recipe; only classic GPTQ is eligible
// for the CUDA executor's GPU sweep (the options solve on the host there).
TEST(ModuleSolve, RoundingOptionsReachTheSolver) {
  const model::ModelConfig c = model::ModelConfig::tiny();
  const std::string dir = dsv4::testing::scratch_path("tiny");
  model::synth_checkpoint_write(c, {.out_dir = dir, .seed = 9, .calibration_records = 0});
  const Checkpoint src = Checkpoint::open(dir);
  std::ifstream f(std::string(DSV4_SOURCE_DIR) + "/recipes/w4a16_mtp.yaml");
  std::stringstream text;
  text << f.rdbuf();
  const std::string shipped = text.str();
  ASSERT_NE(shipped.find("\ncalibration:\n"), std::string::npos);
  const auto solve_with = [&](const std::string& gptq_keys, bool gpu_sweep) {
    std::string y = shipped;
    if (!gptq_keys.empty()) y.replace(y.find("\ncalibration:\n"), 14, "\ncalibration:\n  gptq: {" + gptq_keys + "}\n");
    const Recipe r = recipe_parse(y, "w4a16_mtp.yaml");
    const ModulePlan plan = module_plan_build(r, c, 1);
    for (const PlannedModule& m : plan.modules) {
      if (m.names.release != "layers.0.ffn.experts.0.w1") continue;
      const quant::HessianResult h = correlated_hessian(m.cols, 2 * m.cols, 100);
      ModuleSolveInput in{&m, nullptr, {&h}, 0.0f, 3.5f};
      const std::vector<float> weight = model::linear_load(src, c, m.names.release, m.rows, m.cols).w;
      in.weight = weight.data();
      // The CUDA executor's GPU sweep takes classic GPTQ only; these options solve on the host.
      EXPECT_EQ(module_solve_gpu_eligible(in), gpu_sweep) << gptq_keys;
      return std::make_pair(module_solve(in, src), m.scheme->gptq);
    }
    ADD_FAILURE() << "layers.0.ffn.experts.0.w1 not planned";
    return std::make_pair(SolvedModule{}, quant::GptqOptions{});
  };
  const auto [classic, classic_opts] = solve_with("", true);
  const auto [defaults, defaults_opts] = solve_with("scale_search: observer, refine_passes: 0", true);
  const auto [refined, refined_opts] = solve_with("refine_passes: 2", false);
  const auto [hessian, hessian_opts] = solve_with("scale_search: hessian", false);
  EXPECT_EQ(refined_opts.refine_passes, 2);
  EXPECT_EQ(hessian_opts.scale_search, quant::ScaleSearch::kHessian);
  ASSERT_EQ(classic.method, SolveMethod::kGptq);
  ASSERT_GT(classic.rel_error, 0.0);
  EXPECT_TRUE(bitwise_equal(defaults.dequant, classic.dequant));
  EXPECT_LT(refined.rel_error, classic.rel_error);
  EXPECT_NE(hessian.qparams.scale, classic.qparams.scale);
  std::printf("expert w1 rel. error: classic %.5g, refine_passes 2 %.5g, scale_search hessian %.5g (RTN %.5g)\n",
              classic.rel_error, refined.rel_error, hessian.rel_error, classic.rtn_rel_error);
}

}  // namespace
}  // namespace dsv4::calib

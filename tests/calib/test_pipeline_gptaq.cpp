// test_pipeline_gptaq.cpp: GPTAQ (calibration.gptq.asymmetric) through the whole CPU pipeline on
// the tiny synthetic checkpoint. Layer 0's input is the embeddings on both streams (nothing
// upstream is quantized), so its ΔX·Xᵀ is exactly zero and its artifact tensors must be classic
// GPTQ's bit for bit (gptq_solve_asymmetric with C = 0 is gptq_solve); from layer 1 on the
// full-precision stream differs and so must the codes of some GPTQ module. The resolved recipe
// keeps the key. World-size independence and kill/resume are tests/e2e/gptaq_e2e.sh's.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "calib/calibrate.h"
#include "common/safetensors.h"
#include "model/synth_model.h"
#include "tests/scratch_dir.h"

namespace dsv4::calib {
namespace {

const std::string& tiny_source() {
  static const std::string dir = [] {
    const std::string d = dsv4::testing::scratch_path("gptaq_source");
    model::synth_checkpoint_write(model::ModelConfig::tiny(), {.out_dir = d, .seed = 3});
    return d;
  }();
  return dir;
}

Recipe tiny_w4a16_mtp(const std::string& out, bool gptaq) {
  Recipe r = recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/w4a16_mtp.yaml");
  recipe_apply_overrides(r, {.model = tiny_source(), .dataset = tiny_source() + "/calib.jsonl", .out = out,
                             .num_samples = 4, .seq_len = 32});
  for (RecipeModifier& m : r.modifiers) m.gptq.asymmetric = gptaq;
  return r;
}

std::vector<std::byte> bytes_of(const Checkpoint& c, const std::string& name) {
  const auto b = c.bytes(name);
  return {b.begin(), b.end()};
}

TEST(PipelineGptaq, FirstLayerIsClassicGptqExactlyLaterLayersDiffer) {
  const std::string classic_dir = dsv4::testing::scratch_path("classic"), gptaq_dir = dsv4::testing::scratch_path("gptaq");
  const CalibrateResult classic = calibrate_run(tiny_w4a16_mtp(classic_dir, false), {.threads = 2, .progress = false});
  const Recipe g = tiny_w4a16_mtp(gptaq_dir, true);
  ASSERT_TRUE(g.gptaq());
  const CalibrateResult gptaq = calibrate_run(g, {.threads = 2, .progress = false});
  EXPECT_EQ(gptaq.manifest["totals"]["gptq"], classic.manifest["totals"]["gptq"]);
  const Checkpoint a = Checkpoint::open(classic_dir), b = Checkpoint::open(gptaq_dir);
  int layer0 = 0, later_gptq = 0, later_differ = 0;
  for (const std::string& name : a.names()) {
    if (name.starts_with("layers.0.")) {
      ++layer0;
      EXPECT_EQ(bytes_of(a, name), bytes_of(b, name)) << name << ": layer 0 has X̃ = X, so GPTAQ is classic GPTQ";
    } else if (name.starts_with("layers.") && name.ends_with(".weight_packed")) {
      ++later_gptq;
      later_differ += bytes_of(a, name) != bytes_of(b, name);
    }
  }
  EXPECT_GT(layer0, 20);  // not vacuous: layer 0's experts, attention and norms
  ASSERT_GT(later_gptq, 0);
  EXPECT_GT(later_differ, later_gptq / 2) << later_differ << " of " << later_gptq
                                          << " later GPTQ modules differ from classic GPTQ";
}

}  // namespace
}  // namespace dsv4::calib

// test_state_finite.cpp: the non-finite scan of the HC states (calib/state_finite.h, issue 26):
// the count over samples, the user error naming layer, pass and count, and the CPU executor
// running it: states that hold a NaN are refused as they are loaded, and a block whose finite
// weights overflow (a norm weight near bf16's largest value) is refused after its forward, naming
// the layer, before anything reads its output. Pass A's refusal (at the first linear input its taps
// see) runs through the binary (tests/e2e/cli_hostile_inputs.sh §9); the CUDA executor's count,
// tests/common/test_finite_scan_cuda.cu and tests/e2e/cli_nonfinite_cuda.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include "calib/layer_executor.h"
#include "calib/state_finite.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "model/forward.h"
#include "model/synth_model.h"
#include "tests/scratch_dir.h"
#include "tests/user_error.h"

namespace dsv4::calib {
namespace {

TEST(StateFinite, CountsOverSamples) {
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  const StateCount c = states_non_finite({{1.0f, nan, 2.0f}, {}, {inf, -inf, 3e38f, 0.0f}});
  EXPECT_EQ(c.non_finite, 3);
  EXPECT_EQ(c.values, 7);
  EXPECT_EQ(states_non_finite({{1.0f}, {2.0f}}).non_finite, 0);
}

TEST(StateFinite, ANonFiniteCountIsAUserErrorNamingLayerPassAndCount) {
  EXPECT_NO_THROW(states_require_finite("layers.3", StatePass::kPassA, 0, 100));
  expect_user_error([] { states_require_finite("layers.3", StatePass::kPassA, 12, 4096); },
                    {"layers.3, pass A", "12 NaN or infinite value(s) of 4096", "nothing is solved from it"});
  expect_user_error([] { states_require_finite("layers.7", StatePass::kPassB, 1, 64); },
                    {"layers.7, pass B (the next layer's input)", "1 NaN or infinite value(s) of 64", "quantized"});
  expect_user_error([] { states_require_finite("", StatePass::kLoaded, 2, 8); },
                    {"the HC states the run starts from", "2 NaN or infinite value(s) of 8", "--restart"});
  EXPECT_NO_THROW(tap_input_require_finite("layers.3.attn.wq_a", 0, 0, 100));
  expect_user_error([] { tap_input_require_finite("layers.3.ffn.experts.0.w1", 1, 5, 512); },
                    {"layers.3.ffn.experts.0.w1, pass A", "its input (and 1 other module(s) reading it) holds 5 NaN "
                     "or infinite value(s) of 512"});
}

// A tiny checkpoint whose layers.0.attn_norm.weight is all 0x7f70 (bf16 3.19e38: finite, and
// read as such by every scan of the weights, but any product with it overflows).
std::string overflowing_checkpoint() {
  const std::string dir = testing::scratch_path("state_finite_tiny");
  model::synth_checkpoint_write(model::ModelConfig::tiny(), {.out_dir = dir, .seed = 3, .calibration_records = 0});
  const std::string name = "layers.0.attn_norm.weight";
  std::string file;
  uint64_t begin = 0, end = 0;
  {
    const Checkpoint c = Checkpoint::open(dir);  // unmapped before the file changes
    file = dir + "/" + c.file_of(name);
    begin = c.info(name).data_begin, end = c.info(name).data_end;
  }
  std::string bytes = read_file(file);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  for (uint64_t k = begin; k < end; k += 2) bytes[8 + header + k] = 0x70, bytes[8 + header + k + 1] = 0x7f;
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return dir;
}

TEST(StateFinite, CpuExecutorRefusesNonFiniteStatesAndAnOverflowingBlock) {
  const std::string dir = overflowing_checkpoint();
  const model::ModelConfig config = model::ModelConfig::from_file(dir + "/config.json");
  const Checkpoint source = Checkpoint::open(dir);
  const std::vector<std::vector<int64_t>> samples = {{1, 2, 3, 4, 5, 6, 7, 8}, {9, 10, 11, 12}};
  LayerExecutorSetup setup;
  setup.config = &config;
  setup.source = &source;
  setup.samples = &samples;
  setup.threads = 1;
  std::unique_ptr<LayerExecutor> x = layer_executor_cpu_create(setup);
  std::vector<std::vector<float>> states;
  for (const auto& ids : samples) states.push_back(model::model_embed_state(source, config, ids));

  std::vector<std::vector<float>> damaged = states;
  damaged[1][5] = std::nanf("");
  expect_user_error([&] { x->load_states(damaged); }, {"the HC states the run starts from", "1 NaN"});

  x->load_states(states);
  x->decode(1);  // a finite block: its output passes
  EXPECT_NO_THROW(x->pass_b(false));
  x->load_states(states);
  x->decode(0);  // the overflowing norm
  expect_user_error([&] { x->pass_b(false); }, {"layers.0, pass B", "NaN or infinite value(s) of " +
                                                   std::to_string(12 * config.hc_dim())});
}

}  // namespace
}  // namespace dsv4::calib

// test_forward.cpp: the whole CPU forward (fp32 mode) against transformers 5.17.0's
// DeepseekV4ForCausalLM on the tiny seed-1 checkpoint (tests/golden/tiny_forward_seed1.safetensors,
// see tests/golden/README.md): every block's HC state within 1e-4 relative and the logits within
// 1e-3 absolute, at the stored token positions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include <unistd.h>

#include "common/safetensors.h"
#include "model/forward.h"
#include "model/synth_model.h"

namespace dsv4::model {
namespace {

std::vector<float> f32_of(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  std::vector<float> v(static_cast<size_t>(t->numel()));
  std::memcpy(v.data(), f.bytes(*t).data(), v.size() * 4);
  return v;
}

std::vector<int64_t> i64_of(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  std::vector<int64_t> v(static_cast<size_t>(t->numel()));
  std::memcpy(v.data(), f.bytes(*t).data(), v.size() * 8);
  return v;
}

struct Comparison {
  double max_abs = 0, ref_max = 0;
  size_t worst = 0;
};

// ours: [T, row] full rows; ref: [kept, row] rows at positions `kept`.
Comparison compare_rows(const std::vector<float>& ours, const std::vector<float>& ref,
                        const std::vector<int64_t>& kept, int64_t row) {
  Comparison c;
  for (size_t k = 0; k < kept.size(); ++k)
    for (int64_t i = 0; i < row; ++i) {
      const double a = ours[static_cast<size_t>(kept[k] * row + i)];
      const double b = ref[static_cast<size_t>(static_cast<int64_t>(k) * row + i)];
      c.ref_max = std::max(c.ref_max, std::fabs(b));
      if (std::fabs(a - b) > c.max_abs) c.max_abs = std::fabs(a - b), c.worst = k * row + i;
    }
  return c;
}

TEST(ForwardGolden, TinySeed1MatchesTransformersFp32) {
  const auto fx = SafetensorsFile::open(std::string(DSV4_SOURCE_DIR) + "/tests/golden/tiny_forward_seed1.safetensors");
  const std::vector<int64_t> ids = i64_of(*fx, "input_ids");
  const std::vector<int64_t> kept = i64_of(*fx, "token_index");
  const std::string dir = ::testing::TempDir() + "dsv4_fwd_golden_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  const ModelConfig c = ModelConfig::tiny();
  synth_checkpoint_write(c, {.out_dir = dir, .seed = 1});
  const Checkpoint ckpt = Checkpoint::open(dir);

  const ForwardResult r = model_forward(ckpt, c, ids, {.keep_hidden = true});
  ASSERT_EQ(r.hidden.size(), static_cast<size_t>(c.num_layers));
  const int64_t state_row = c.hc_mult * c.hidden_size;
  for (int l = 0; l < c.num_layers; ++l) {
    const Comparison cmp = compare_rows(r.hidden[l], f32_of(*fx, "layer_" + std::to_string(l) + ".hc_state"), kept, state_row);
    // 1e-4 of the state's magnitude: fp32 with different summation orders (BLAS vs torch) and a
    // 20-step Sinkhorn; an indexer top-k flip would show as a far larger error.
    EXPECT_LE(cmp.max_abs, 1e-4 * cmp.ref_max)
        << "layer " << l << ": max |ours - transformers| = " << cmp.max_abs << " at kept row "
        << cmp.worst / state_row << " element " << cmp.worst % state_row << ", max |ref| = " << cmp.ref_max;
    EXPECT_GT(cmp.ref_max, 0.0);
  }
  const Comparison fh = compare_rows(r.final_hidden, f32_of(*fx, "final_hidden"), kept, c.hidden_size);
  EXPECT_LE(fh.max_abs, 1e-4 * fh.ref_max) << "final hidden";
  const Comparison lg = compare_rows(r.logits, f32_of(*fx, "logits"), kept, c.vocab_size);
  EXPECT_LE(lg.max_abs, 1e-3) << "logits: max abs error " << lg.max_abs << ", max |ref| " << lg.ref_max;
  EXPECT_GT(lg.ref_max, 0.1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsv4::model

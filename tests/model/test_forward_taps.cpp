// test_forward_taps.cpp: calibration taps of the CPU forward. (1) The activations delivered for
// the attention and shared-expert linears equal the inputs transformers 5.17.0 feeds the same
// modules (`tap.*` tensors of the golden fixtures, captured with forward pre-hooks); (2) routed
// expert taps: rows, token positions and counts agree with the routing, in normal and
// all-experts mode, and all-experts mode leaves the output unchanged; (3) MTP taps and shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <map>

#include <unistd.h>

#include "common/safetensors.h"
#include "common/codec.h"
#include "model/block.h"
#include "model/block_weights.h"
#include "model/forward.h"
#include "model/hc.h"
#include "model/ops.h"
#include "model/rope.h"
#include "model/synth_model.h"

namespace dsv4::model {
namespace {

// Stores every tap event's activation by module name (first module of the event; wo_a per group).
struct RecordingSink : TapSink {
  std::map<std::string, std::vector<float>> by_module;  // [rows, cols]
  std::map<std::string, int64_t> cols;
  std::map<std::string, int64_t> expert_tokens;         // "prefix#e" -> count
  std::map<std::string, int64_t> expert_rows;           // routed w1 rows per "module"
  void on_tap(const TapEvent& e) override {
    for (const auto& m : e.modules) {
      const std::string key = e.group >= 0 ? m + "#" + std::to_string(e.group) : m;
      by_module[key].assign(e.x, e.x + e.rows * e.cols);
      cols[key] = e.cols;
      if (e.expert >= 0) expert_rows[key] = e.rows;
    }
  }
  void on_expert_tokens(const std::string& prefix, int expert, int64_t count) override {
    expert_tokens[prefix + "#" + std::to_string(expert)] += count;
  }
};

class ForwardTaps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = ::testing::TempDir() + "dsv4_fwd_taps_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = dir_, .seed = 1});
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  static std::string dir_;
};
std::string ForwardTaps::dir_;

std::vector<int64_t> test_ids(int64_t n, int vocab) {
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = 3 + (i * 37 + 11) % (vocab - 3);
  return ids;
}

TEST_F(ForwardTaps, RoutedExpertTapsFollowTheRoutingAndAllExpertsModeKeepsTheOutput) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(dir_);
  const std::vector<int64_t> ids = test_ids(40, c.vocab_size);
  RecordingSink normal, all;
  const ForwardResult a = model_forward(ckpt, c, ids, {.taps = &normal});
  const ForwardResult b = model_forward(ckpt, c, ids, {.taps = &all, .all_experts = true});
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t i = 0; i < a.logits.size(); ++i) ASSERT_EQ(a.logits[i], b.logits[i]) << "all-experts changed logit " << i;
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    int64_t routed = 0;
    for (int e = 0; e < c.n_routed_experts; ++e) {
      const std::string key = p + "#" + std::to_string(e);
      routed += normal.expert_tokens[key];
      EXPECT_EQ(normal.expert_tokens[key], all.expert_tokens[key]) << key;
      const std::string w1 = p + "ffn.experts." + std::to_string(e) + ".w1";
      if (normal.expert_tokens[key] > 0) {
        EXPECT_EQ(normal.expert_rows[w1], normal.expert_tokens[key]) << w1;
      }
      EXPECT_EQ(all.expert_rows[w1], static_cast<int64_t>(ids.size())) << w1 << " in all-experts mode";
    }
    EXPECT_EQ(routed, static_cast<int64_t>(ids.size()) * c.num_experts_per_tok) << p;
    for (const char* m : {"attn.wq_a", "attn.wkv", "attn.wq_b", "attn.wo_b", "ffn.shared_experts.w1",
                          "ffn.shared_experts.w3", "ffn.shared_experts.w2"}) {
      EXPECT_TRUE(normal.by_module.count(p + m)) << p + m;
    }
    for (int g = 0; g < c.o_groups; ++g) {
      const std::string key = p + "attn.wo_a#" + std::to_string(g);
      ASSERT_TRUE(normal.by_module.count(key)) << key;
      EXPECT_EQ(normal.cols[key], c.o_group_in()) << key;
    }
  }
}

TEST_F(ForwardTaps, MtpStageRunsAndTapsItsProjections) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(dir_);
  const std::vector<int64_t> ids = test_ids(24, c.vocab_size);
  RecordingSink sink;
  const ForwardResult r = model_forward(ckpt, c, ids, {});
  const MtpResult m = mtp_forward(ckpt, c, ids, r.last_state, {.taps = &sink});
  ASSERT_EQ(m.logits.size(), 1u);
  ASSERT_EQ(m.logits[0].size(), static_cast<size_t>((ids.size() - 1) * c.vocab_size));
  double sum_sq = 0;
  for (float v : m.logits[0]) {
    ASSERT_TRUE(std::isfinite(v));
    sum_sq += static_cast<double>(v) * v;
  }
  EXPECT_GT(sum_sq, 0.0);
  EXPECT_EQ(sink.by_module["mtp.0.e_proj"].size(), (ids.size() - 1) * c.hidden_size);
  EXPECT_EQ(sink.by_module["mtp.0.h_proj"].size(), (ids.size() - 1) * c.hc_mult * c.hidden_size);
  EXPECT_TRUE(sink.by_module.count("mtp.0.attn.wq_a"));
  // Causality of the MTP stage: position t sees tokens up to t+1 only. Changing the last token
  // changes only the last MTP row. Earlier rows may move by float noise: routed-expert GEMMs run
  // over the rows routed to each expert, and OpenBLAS's result for a row depends on how many rows
  // share the call (seen up to ~1e-6 here), so "unchanged" means within 1e-5 of the logit scale.
  std::vector<int64_t> ids2 = ids;
  ids2.back() = (ids2.back() + 1) % c.vocab_size;
  const ForwardResult r2 = model_forward(ckpt, c, ids2, {});
  const MtpResult m2 = mtp_forward(ckpt, c, ids2, r2.last_state, {});
  const size_t v = static_cast<size_t>(c.vocab_size);
  const double scale = std::sqrt(sum_sq / static_cast<double>(m.logits[0].size()));
  for (size_t i = 0; i < (ids.size() - 2) * v; ++i)
    ASSERT_NEAR(m.logits[0][i], m2.logits[0][i], 1e-5 * scale) << "row " << i / v;
  double last_change = 0;
  for (size_t i = (ids.size() - 2) * v; i < m.logits[0].size(); ++i)
    last_change = std::max(last_change, static_cast<double>(std::fabs(m.logits[0][i] - m2.logits[0][i])));
  EXPECT_GT(last_change, 1e-2 * scale) << "the last MTP row ignores the token it is fed";
}

// The MTP stage against a direct composition of the tested pieces on the spec's convention (§4):
// position t combines the main model's final state at t with embed[ids[t+1]];
// X = h_proj(RMSNorm(H[t][j]; hnorm)) + e_proj(RMSNorm(e; enorm)) for every stream j; one
// sliding-window block; logits = head · RMSNorm(HCHead(X; mtp.0.hc_head_*); mtp.0.norm).
TEST_F(ForwardTaps, MtpEqualsTheComposedPieces) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(dir_);
  const std::vector<int64_t> ids = test_ids(20, c.vocab_size);
  const ForwardResult r = model_forward(ckpt, c, ids, {});
  const MtpResult m = mtp_forward(ckpt, c, ids, r.last_state, {});

  const int64_t T = static_cast<int64_t>(ids.size()) - 1, D = c.hidden_size, n = c.hc_mult;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const std::vector<float> embed = weight_load_f32(ckpt, "embed.weight", {c.vocab_size, D});
  std::vector<float> e(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t)
    std::copy_n(&embed[static_cast<size_t>(ids[static_cast<size_t>(t + 1)] * D)], D, &e[static_cast<size_t>(t * D)]);
  rmsnorm_forward(e.data(), T, D, weight_load_f32(ckpt, "mtp.0.enorm.weight", {D}).data(), eps, e.data());
  std::vector<float> h(r.last_state.begin(), r.last_state.begin() + T * n * D);
  rmsnorm_forward(h.data(), T * n, D, weight_load_f32(ckpt, "mtp.0.hnorm.weight", {D}).data(), eps, h.data());
  const DenseLinear e_proj = linear_load(ckpt, c, "mtp.0.e_proj", D, D);
  const DenseLinear h_proj = linear_load(ckpt, c, "mtp.0.h_proj", D, D);
  std::vector<float> ep(static_cast<size_t>(T * D)), x(static_cast<size_t>(T * n * D));
  linear_forward(e.data(), T, D, e_proj.w.data(), D, ep.data());
  linear_forward(h.data(), T * n, D, h_proj.w.data(), D, x.data());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < D; ++k) x[static_cast<size_t>((t * n + j) * D + k)] += ep[static_cast<size_t>(t * D + k)];
  const BlockWeights w = block_weights_load(ckpt, c, "mtp.0.", c.num_layers);
  ASSERT_EQ(w.spec.attention, AttentionKind::kSliding);
  std::vector<float> out(x.size());
  block_forward(w, c, rope_table_build(c, false, T), x.data(), ids.data() + 1, T, out.data(), ForwardContext{});
  const HcWeights head{weight_load_f32(ckpt, "mtp.0.hc_head_fn", {n, c.hc_dim()}),
                       weight_load_f32(ckpt, "mtp.0.hc_head_base", {n}), weight_load_f32(ckpt, "mtp.0.hc_head_scale", {1})};
  std::vector<float> y(static_cast<size_t>(T * D)), logits(static_cast<size_t>(T * c.vocab_size));
  hc_head(head, c, out.data(), T, y.data());
  rmsnorm_forward(y.data(), T, D, weight_load_f32(ckpt, "mtp.0.norm.weight", {D}).data(), eps, y.data());
  linear_forward(y.data(), T, D, weight_load_f32(ckpt, "head.weight", {c.vocab_size, D}).data(), c.vocab_size, logits.data());

  ASSERT_EQ(m.logits[0].size(), logits.size());
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    max_ref = std::max(max_ref, static_cast<double>(std::fabs(logits[i])));
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(logits[i] - m.logits[0][i])));
  }
  EXPECT_GT(max_ref, 0.1);
  // Same operations in the same order: equal up to BLAS row-count effects.
  EXPECT_LE(max_diff, 1e-5 * max_ref) << "max |mtp_forward - composition| = " << max_diff;
}

// bf16 mode: the reference's storage points rounded; close to fp32 but not equal, and the
// stored HC states are bf16 values.
TEST_F(ForwardTaps, Bf16ModeStaysCloseToFp32AndStoresBf16States) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(dir_);
  const std::vector<int64_t> ids = test_ids(48, c.vocab_size);
  const ForwardResult f = model_forward(ckpt, c, ids, {.keep_hidden = true});
  const ForwardResult b = model_forward(ckpt, c, ids, {.mode = NumericMode::kBf16, .keep_hidden = true});
  for (const auto& state : b.hidden)
    for (float v : state) ASSERT_EQ(v, bf16_decode(bf16_encode(v))) << "a stored state value is not bf16";
  auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += static_cast<double>(a[i]) * a[i];
    return std::sqrt(num / den);
  };
  for (size_t l = 0; l < f.hidden.size(); ++l) std::printf("bf16 vs fp32: block %zu state relative %.3e\n", l, rel(f.hidden[l], b.hidden[l]));
  std::printf("bf16 vs fp32: logits relative %.3e\n", rel(f.logits, b.logits));
  // Block 0 (sliding window, hash routing) makes no discrete choice that rounding could flip, so
  // its state moves only by accumulated bf16 rounding (2^-9 relative per storage point).
  EXPECT_GT(rel(f.hidden[0], b.hidden[0]), 0.0) << "bf16 mode rounded nothing";
  EXPECT_LT(rel(f.hidden[0], b.hidden[0]), 0.02);
  // Later blocks route by top-k and select compressed entries by top-k: a rounding that flips a
  // choice moves that token a lot, so only a loose bound holds for the logits.
  EXPECT_LT(rel(f.logits, b.logits), 0.5);
}

}  // namespace
}  // namespace dsv4::model

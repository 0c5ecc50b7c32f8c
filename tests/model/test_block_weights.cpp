// test_block_weights.cpp: ModelConfig::linear_decoder is asked first by every linear of the
// forward (linear_load, the lazily decoded routed experts, the whole-model forward), and a decoder
// that declines leaves the release decoders in charge.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>


#include "common/safetensors.h"
#include "model/block_weights.h"
#include "model/forward.h"
#include "model/synth_model.h"
#include "model/weight_decode.h"
#include "tests/scratch_dir.h"

namespace dsv4::model {
namespace {

// One tiny checkpoint for the whole file, in the process scratch directory.
const std::string& tiny_dir() {
  static const std::string dir = [] {
    const std::string d = dsv4::testing::scratch_path("tiny");
    synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = d, .seed = 5, .calibration_records = 0});
    return d;
  }();
  return dir;
}

// Decodes the modules whose name contains `match` to the constant `value` (plus the element index
// scaled tiny, so a transposed or truncated copy would show), declines the rest; records every
// module it was asked about. Thread-safe: experts decode in parallel.
class FakeDecoder : public LinearDecoder {
 public:
  FakeDecoder(std::string match, float value) : match_(std::move(match)), value_(value) {}
  bool decode(const Checkpoint&, const std::string& module, int64_t out, int64_t in,
              std::vector<float>* w) const override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      asked_.insert(module);
    }
    if (match_.empty() || module.find(match_) == std::string::npos) return false;
    w->resize(static_cast<size_t>(out * in));
    for (size_t i = 0; i < w->size(); ++i) (*w)[i] = value_ + 1e-6f * static_cast<float>(i);
    return true;
  }
  std::set<std::string> asked() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return asked_;
  }
  std::vector<float> expected(int64_t out, int64_t in) const {
    std::vector<float> w(static_cast<size_t>(out * in));
    for (size_t i = 0; i < w.size(); ++i) w[i] = value_ + 1e-6f * static_cast<float>(i);
    return w;
  }

 private:
  std::string match_;
  float value_;
  mutable std::mutex mutex_;
  mutable std::set<std::string> asked_;
};

TEST(LinearDecoderHook, LinearLoadAsksTheDecoderFirstAndFallsBackWhenItDeclines) {
  const Checkpoint ckpt = Checkpoint::open(tiny_dir());
  ModelConfig c = ModelConfig::tiny();
  const int64_t q = c.q_lora_rank, d = c.hidden_size;
  const DenseLinear release = linear_load(ckpt, c, "layers.0.attn.wq_a", q, d);

  auto fake = std::make_shared<FakeDecoder>("attn.wq_a", 0.25f);
  c.linear_decoder = fake;
  const DenseLinear decoded = linear_load(ckpt, c, "layers.0.attn.wq_a", q, d);
  EXPECT_EQ(decoded.w, fake->expected(q, d)) << "[" << q << ", " << d << "]";
  EXPECT_NE(decoded.w, release.w);
  // Declined: the release FP8 decode, bit for bit.
  const DenseLinear wkv = linear_load(ckpt, c, "layers.0.attn.wkv", c.head_dim, d);
  ModelConfig plain = ModelConfig::tiny();
  EXPECT_EQ(wkv.w, linear_load(ckpt, plain, "layers.0.attn.wkv", c.head_dim, d).w);
  EXPECT_EQ(fake->asked(), (std::set<std::string>{"layers.0.attn.wq_a", "layers.0.attn.wkv"}));
}

TEST(LinearDecoderHook, RoutedExpertsDecodedLazilyUseTheDecoder) {
  const Checkpoint ckpt = Checkpoint::open(tiny_dir());
  ModelConfig c = ModelConfig::tiny();
  auto fake = std::make_shared<FakeDecoder>("layers.1.ffn.experts.2.w2", -0.5f);
  c.linear_decoder = fake;
  BlockWeights b = block_weights_load(ckpt, c, "layers.1.", 1);
  // Moving the source (BlockWeights is built by value) must keep the decoder.
  ExpertSource moved = std::move(b.ffn.experts);
  const auto e2 = moved.get(2);
  const int64_t d = c.hidden_size, inter = c.moe_intermediate_size;
  EXPECT_EQ(e2->w2.w, fake->expected(d, inter)) << "[" << d << ", " << inter << "]";
  // w1 of the same expert was declined: the release MXFP4 decode.
  const BlockWeights plain = block_weights_load(ckpt, ModelConfig::tiny(), "layers.1.", 1);
  EXPECT_EQ(e2->w1.w, plain.ffn.experts.get(2)->w1.w);
  EXPECT_NE(e2->w2.w, plain.ffn.experts.get(2)->w2.w);
  const auto asked = fake->asked();
  for (const char* m : {"layers.1.ffn.experts.2.w1", "layers.1.ffn.experts.2.w3", "layers.1.ffn.experts.2.w2",
                        "layers.1.attn.wq_a", "layers.1.ffn.gate", "layers.1.ffn.shared_experts.w1"}) {
    EXPECT_TRUE(asked.count(m)) << m << " was not offered to the decoder";
  }
}

TEST(LinearDecoderHook, ForwardOffersEveryLinearAndADecliningDecoderChangesNothing) {
  const Checkpoint ckpt = Checkpoint::open(tiny_dir());
  const ModelConfig plain = ModelConfig::tiny();
  const std::vector<int64_t> ids = {0, 5, 17, 42, 99, 3};
  const ForwardResult ref = model_forward(ckpt, plain, ids, {});
  ASSERT_FALSE(ref.logits.empty());

  ModelConfig c = plain;
  auto declining = std::make_shared<FakeDecoder>("", 0.0f);
  c.linear_decoder = declining;
  const ForwardResult same = model_forward(ckpt, c, ids, {});
  EXPECT_EQ(same.logits, ref.logits);
  const auto asked = declining->asked();
  int experts = 0;
  for (const auto& m : asked) experts += m.find(".ffn.experts.") != std::string::npos;
  EXPECT_GT(experts, 0) << "no routed expert was offered to the decoder (" << asked.size() << " modules asked)";
  EXPECT_TRUE(asked.count("layers.0.attn.wo_b"));

  // Decoding one routed-expert projection of layer 0 differently changes the logits.
  c.linear_decoder = std::make_shared<FakeDecoder>("layers.0.ffn.experts.", 0.01f);
  const ForwardResult changed = model_forward(ckpt, c, ids, {});
  EXPECT_NE(changed.logits, ref.logits);
}

}  // namespace
}  // namespace dsv4::model

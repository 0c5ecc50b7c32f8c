// test_synth.cpp: make-model's tiny checkpoint is in the release layout, passes the inventory
// audit, decodes to realistic magnitudes, is deterministic per seed and independent of the
// thread count, and never overwrites an existing directory.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>


#include "common/check.h"
#include "common/codec.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "model/checkpoint_audit.h"
#include "model/inventory.h"
#include "model/synth_model.h"
#include "model/synth_text.h"
#include "model/synth_tokenizer.h"
#include "model/weight_decode.h"
#include "tests/scratch_dir.h"

namespace dsv4::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string fresh_dir(const std::string& name) { return dsv4::testing::scratch_path(name); }

// One tiny checkpoint shared by the read-only tests (writing takes ~0.2 s).
const std::string& tiny_dir() {
  static const std::string dir = [] {
    const std::string d = fresh_dir("shared");
    synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = d, .seed = 1, .max_shard_bytes = 1u << 20});
    return d;
  }();
  return dir;
}

double rms(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s / v.size());
}

TEST(Synth, TinyPassesTheInventoryAuditAndMatchesThePlan) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(tiny_dir());
  const AuditReport r = checkpoint_audit(ckpt, ModelConfig::from_file(tiny_dir() + "/config.json"));
  EXPECT_TRUE(r.ok()) << (r.missing.empty() ? "" : r.missing[0]) << (r.mismatched.empty() ? "" : r.mismatched[0]);
  EXPECT_EQ(r.mtp_stages, 1);
  const SynthSummary plan = synth_plan(c, {.max_shard_bytes = 1u << 20});
  EXPECT_EQ(r.tensors, plan.tensors);
  EXPECT_EQ(r.bytes, plan.bytes);
  EXPECT_EQ(r.shards, plan.shards);
  EXPECT_GT(r.shards, 1) << "tiny should exercise the sharded index";
  EXPECT_EQ(ckpt.index_total_size(), plan.bytes);
  EXPECT_TRUE(fs::exists(tiny_dir() + "/tokenizer.json"));
  EXPECT_TRUE(fs::exists(tiny_dir() + "/tokenizer_config.json"));
}

TEST(Synth, ConfigJsonIsTheReleaseSpellingAndRoundTrips) {
  const nlohmann::json j = nlohmann::json::parse(read_file(tiny_dir() + "/config.json"));
  for (const char* key : {"compress_ratios", "num_hash_layers", "qk_rope_head_dim", "rope_scaling",
                          "expert_dtype", "quantization_config", "hc_mult", "index_topk"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  const ModelConfig back = ModelConfig::from_file(tiny_dir() + "/config.json");
  const ModelConfig tiny = ModelConfig::tiny();
  EXPECT_EQ(back.compress_ratios, tiny.compress_ratios);
  EXPECT_EQ(back.hidden_size, tiny.hidden_size);
  EXPECT_EQ(back.n_routed_experts, tiny.n_routed_experts);
  EXPECT_EQ(back.num_hash_layers, tiny.num_hash_layers);
}

TEST(Synth, DecodedLinearsHaveRealisticMagnitudesAndVariedScales) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(tiny_dir());
  for (const std::string stem : {"layers.1.attn.wq_a", "layers.1.attn.wo_b", "layers.2.ffn.experts.3.w1",
                                 "layers.2.ffn.experts.5.w2", "mtp.0.e_proj"}) {
    const TensorInfo& w = ckpt.info(stem + ".weight");
    const double fan_in = static_cast<double>(w.dtype == DType::kI8 ? w.shape[1] * 2 : w.shape[1]);
    const std::vector<float> v = weight_decode_linear(ckpt, stem, c.fp8_block);
    for (float x : v) ASSERT_TRUE(std::isfinite(x)) << stem;
    // Row/column factors exp(0.35 z) widen the spread a little; the RMS stays within 2x.
    const double r = rms(v) * std::sqrt(fan_in);
    EXPECT_GT(r, 0.5) << stem;
    EXPECT_LT(r, 2.0) << stem;
    std::set<uint8_t> scale_bytes;
    for (std::byte b : ckpt.bytes(stem + ".scale")) scale_bytes.insert(static_cast<uint8_t>(b));
    EXPECT_EQ(scale_bytes.count(255), 0u) << stem << ": NaN scale";
    if (w.dtype == DType::kI8) {
      EXPECT_GE(scale_bytes.size(), 3u) << stem << ": scales should vary";
    }
  }
}

TEST(Synth, PlainTensorsAreNonTrivial) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(tiny_dir());
  auto f32 = [&](const std::string& name) {
    const auto b = ckpt.bytes(name);
    std::vector<float> v(b.size() / 4);
    std::memcpy(v.data(), b.data(), b.size());
    return v;
  };
  auto spread = [](const std::vector<float>& v) {
    float lo = v[0], hi = v[0];
    for (float x : v) lo = std::min(lo, x), hi = std::max(hi, x);
    return hi - lo;
  };
  for (const char* name : {"layers.0.hc_attn_fn", "layers.0.hc_attn_base", "layers.0.hc_attn_scale",
                           "layers.1.attn.attn_sink", "layers.1.attn.compressor.ape", "layers.2.ffn.gate.bias",
                           "hc_head_base", "mtp.0.hc_head_fn"}) {
    EXPECT_GT(spread(f32(name)), 0.01f) << name;
  }
  // Norm weights sit around 1 (bf16).
  const auto norm = ckpt.bytes("layers.0.attn_norm.weight");
  double mean = 0;
  for (size_t i = 0; i < norm.size() / 2; ++i) {
    uint16_t b;
    std::memcpy(&b, norm.data() + 2 * i, 2);
    mean += bf16_decode(b);
  }
  EXPECT_NEAR(mean / (norm.size() / 2), 1.0, 0.05);
  // tid2eid: distinct, valid expert ids per token.
  const auto ids = ckpt.bytes("layers.0.ffn.gate.tid2eid");
  const size_t k = static_cast<size_t>(c.num_experts_per_tok);
  std::set<int64_t> all;
  for (size_t r = 0; r < ids.size() / 8 / k; ++r) {
    std::set<int64_t> row;
    for (size_t j = 0; j < k; ++j) {
      int64_t e;
      std::memcpy(&e, ids.data() + (r * k + j) * 8, 8);
      ASSERT_GE(e, 0);
      ASSERT_LT(e, c.n_routed_experts);
      row.insert(e);
      all.insert(e);
    }
    ASSERT_EQ(row.size(), k) << "token " << r;
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(c.n_routed_experts));
}

std::string shard_bytes(const std::string& dir) {
  std::string all;
  for (const auto& f : Checkpoint::open(dir).shard_files()) all += read_file(dir + "/" + f);
  return all;
}

TEST(Synth, DeterministicPerSeedAndIndependentOfThreads) {
  const ModelConfig c = ModelConfig::tiny();
  const std::string a = fresh_dir("t1"), b = fresh_dir("t3"), d = fresh_dir("seed2");
  synth_checkpoint_write(c, {.out_dir = a, .seed = 1, .max_shard_bytes = 1u << 20, .threads = 1});
  synth_checkpoint_write(c, {.out_dir = b, .seed = 1, .max_shard_bytes = 1u << 20, .threads = 3});
  synth_checkpoint_write(c, {.out_dir = d, .seed = 2, .max_shard_bytes = 1u << 20, .threads = 2});
  EXPECT_TRUE(shard_bytes(a) == shard_bytes(tiny_dir())) << "threads=1 differs from the default";
  EXPECT_TRUE(shard_bytes(a) == shard_bytes(b)) << "threads=1 and threads=3 differ";
  EXPECT_FALSE(shard_bytes(a) == shard_bytes(d)) << "seed is ignored";
  EXPECT_EQ(read_file(a + "/model.safetensors.index.json"), read_file(d + "/model.safetensors.index.json"));
}

TEST(Synth, RefusesANonEmptyDirectoryAndLeavesItUntouched) {
  const std::string dir = fresh_dir("occupied");
  make_directories(dir);
  write_file_atomic(dir + "/precious.txt", "keep me");
  try {
    synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = dir});
    FAIL() << "wrote into a non-empty directory";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir));
    EXPECT_THAT(e.what(), HasSubstr("not empty"));
  }
  EXPECT_EQ(read_file(dir + "/precious.txt"), "keep me");
  EXPECT_FALSE(fs::exists(dir + "/config.json"));
}

// A disk too small for the checkpoint is refused before anything is written, naming the directory
// and the bytes needed; exactly enough space is accepted.
TEST(Synth, RefusesUpFrontWhenTheDiskIsTooSmall) {
  const std::string dir = fresh_dir("small_disk");
  const SynthSummary plan = synth_plan(ModelConfig::tiny(), {.out_dir = dir, .max_shard_bytes = 1u << 20});
  const int64_t need = static_cast<int64_t>(plan.bytes + (64ull << 20));
  try {
    synth_checkpoint_write(ModelConfig::tiny(),
                           {.out_dir = dir, .max_shard_bytes = 1u << 20, .available_bytes = need - 1});
    FAIL() << "wrote with too little space";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir));
    EXPECT_THAT(e.what(), HasSubstr(std::to_string(need) + " bytes"));
    EXPECT_THAT(e.what(), HasSubstr("available"));
  }
  EXPECT_FALSE(fs::exists(dir));
  synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = dir, .max_shard_bytes = 1u << 20, .available_bytes = need});
  EXPECT_TRUE(fs::exists(dir + "/config.json"));
}

TEST(Synth, CopiesAGivenTokenizerAndRejectsADirectoryWithoutOne) {
  const std::string tok = fresh_dir("tok_src");
  make_directories(tok);
  write_file_atomic(tok + "/tokenizer.json", "{\"version\": \"1.0\"}");
  const std::string out = fresh_dir("tok_out");
  synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = out, .tokenizer_dir = tok});
  EXPECT_EQ(read_file(out + "/tokenizer.json"), "{\"version\": \"1.0\"}");
  EXPECT_FALSE(fs::exists(out + "/tokenizer_config.json"));
  const std::string empty = fresh_dir("tok_empty");
  make_directories(empty);
  EXPECT_THROW(synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = fresh_dir("tok_out2"), .tokenizer_dir = empty}),
               Error);
}

}  // namespace
}  // namespace dsv4::model

namespace dsv4::model {
namespace {

TEST(SynthTokenizer, AddedTokenIdsAreTheOnesHfTokenizersAssigns) {
  // HF `tokenizers` keeps an added token's id only if the model vocab holds that token; all
  // others are numbered from the vocab size in list order. Checked against tokenizers 0.2x on the
  // generated file: BOS 0, EOS 1, pad 2, <｜User｜> 301, <｜Assistant｜> 302, <think> 303, </think> 304.
  const nlohmann::json t = synth_tokenizer_json(512);
  const auto& vocab = t["model"]["vocab"];
  int next = static_cast<int>(vocab.size());
  std::map<std::string, int> ids;
  for (const auto& a : t["added_tokens"]) {
    const std::string content = a["content"];
    if (vocab.contains(content)) {
      EXPECT_EQ(vocab[content].get<int>(), a["id"].get<int>()) << content;
    } else {
      EXPECT_EQ(a["id"].get<int>(), next) << content;
      ++next;
    }
    ids[content] = a["id"];
  }
  EXPECT_EQ(ids.at(kTokenBos), 0);
  EXPECT_EQ(ids.at(kTokenEos), 1);
  EXPECT_EQ(ids.at(kTokenUser), 301);
  EXPECT_EQ(ids.at(kTokenThinkClose), 304);
  EXPECT_EQ(vocab.size(), 3u + 256u + t["model"]["merges"].size());
  EXPECT_THROW(synth_tokenizer_json(300), Error);  // does not fit the vocab
}

}  // namespace
}  // namespace dsv4::model

namespace dsv4::model {
namespace {

// The calibration records: chat JSONL, deterministic per seed; a fixed sentence count gives every
// answer exactly that many sentences (the long records of the full-length pipeline bench).
TEST(SynthText, CalibrationRecordsAreChatJsonWithTheAskedSentenceCount) {
  EXPECT_EQ(synth_calibration_jsonl(5, 7), synth_calibration_jsonl(5, 7));
  EXPECT_NE(synth_calibration_jsonl(5, 7), synth_calibration_jsonl(5, 8));
  for (const int sentences : {0, 40}) {
    std::istringstream in(synth_calibration_jsonl(6, 3, sentences));
    std::string line;
    int records = 0;
    while (std::getline(in, line)) {
      const nlohmann::json j = nlohmann::json::parse(line);
      ASSERT_EQ(j.at("messages").size(), 2u);
      EXPECT_EQ(j["messages"][0]["role"], "user");
      const std::string answer = j["messages"][1]["content"].get<std::string>();
      const auto ends = std::count_if(answer.begin(), answer.end(), [](char c) { return c == '.' || c == '!' || c == '?'; });
      if (sentences > 0) {
        EXPECT_EQ(ends, sentences) << answer;
      } else {
        EXPECT_GE(ends, 3);
        EXPECT_LE(ends, 8);
      }
      ++records;
    }
    EXPECT_EQ(records, 6);
  }
  EXPECT_THROW(synth_calibration_jsonl(1, 0, -1), Error);
}

}  // namespace
}  // namespace dsv4::model

// test_inventory.cpp: the expected tensor inventory reproduces the real release exactly
// (69,187 tensors, 159,609,485,896 bytes) and has the per-layer structure of the spec §2.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <map>
#include <set>

#include "common/check.h"
#include "model/inventory.h"

namespace dsv4::model {
namespace {

using ::testing::HasSubstr;

std::map<int, int> count_per_layer(const std::vector<ExpectedTensor>& tensors) {
  std::map<int, int> counts;
  for (const auto& t : tensors) counts[t.layer]++;
  return counts;
}

const ExpectedTensor& find(const std::vector<ExpectedTensor>& tensors, const std::string& name) {
  for (const auto& t : tensors)
    if (t.name == name) return t;
  throw std::runtime_error("not in inventory: " + name);
}

TEST(Inventory, FullFlashMatchesTheReleaseTotalsExactly) {
  const auto tensors = inventory_expected(ModelConfig::flash(43, 256), 1);
  const InventoryTotals totals = inventory_totals(tensors);
  EXPECT_EQ(totals.tensors, 69187u);
  EXPECT_EQ(totals.bytes, 159609485896ull);
  std::set<std::string> names;
  for (const auto& t : tensors) EXPECT_TRUE(names.insert(t.name).second) << "duplicate " << t.name;
}

TEST(Inventory, PerLayerCountsFollowTheSchedule) {
  const ModelConfig c = ModelConfig::flash(43, 256);
  const auto counts = count_per_layer(inventory_expected(c, 1));
  EXPECT_EQ(counts.at(-1), 6);  // embed, head, norm, hc_head x3
  for (int l = 0; l < 43; ++l) {
    const int expected = l < 2 ? 1565 : (l % 2 == 1 ? 1569 : 1576);  // SWA / HCA / CSA
    EXPECT_EQ(counts.at(l), expected) << "layer " << l;
  }
  EXPECT_EQ(counts.at(43), 1575);  // MTP stage 0
}

TEST(Inventory, ShapesAndDtypesOfTheSpecTable) {
  const auto t = inventory_expected(ModelConfig::flash(5, 256), 1);
  struct Row {
    const char* name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Row> rows = {
      {"embed.weight", DType::kBF16, {129280, 4096}},
      {"hc_head_fn", DType::kF32, {4, 16384}},
      {"layers.0.hc_attn_fn", DType::kF32, {24, 16384}},
      {"layers.0.hc_ffn_scale", DType::kF32, {3}},
      {"layers.0.attn.wq_a.weight", DType::kF8E4M3, {1024, 4096}},
      {"layers.0.attn.wq_a.scale", DType::kF8E8M0, {8, 32}},
      {"layers.0.attn.wq_b.scale", DType::kF8E8M0, {256, 8}},
      {"layers.0.attn.wkv.weight", DType::kF8E4M3, {512, 4096}},
      {"layers.0.attn.wo_a.weight", DType::kF8E4M3, {8192, 4096}},
      {"layers.0.attn.wo_b.scale", DType::kF8E8M0, {32, 64}},
      {"layers.0.attn.attn_sink", DType::kF32, {64}},
      {"layers.0.ffn.gate.tid2eid", DType::kI64, {129280, 6}},
      {"layers.0.ffn.shared_experts.w2.scale", DType::kF8E8M0, {32, 16}},
      {"layers.0.ffn.experts.255.w1.weight", DType::kI8, {2048, 2048}},
      {"layers.0.ffn.experts.255.w1.scale", DType::kF8E8M0, {2048, 128}},
      {"layers.0.ffn.experts.0.w2.weight", DType::kI8, {4096, 1024}},
      {"layers.0.ffn.experts.0.w2.scale", DType::kF8E8M0, {4096, 64}},
      {"layers.2.attn.compressor.wkv.weight", DType::kBF16, {1024, 4096}},
      {"layers.2.attn.compressor.ape", DType::kF32, {4, 1024}},
      {"layers.2.attn.indexer.wq_b.scale", DType::kF8E8M0, {64, 8}},
      {"layers.2.attn.indexer.weights_proj.weight", DType::kBF16, {64, 4096}},
      {"layers.2.attn.indexer.compressor.wkv.weight", DType::kBF16, {256, 4096}},
      {"layers.2.attn.indexer.compressor.ape", DType::kF32, {4, 256}},
      {"layers.2.attn.indexer.compressor.norm.weight", DType::kBF16, {128}},
      {"layers.3.attn.compressor.ape", DType::kF32, {128, 512}},
      {"layers.3.attn.compressor.wgate.weight", DType::kBF16, {512, 4096}},
      {"layers.3.ffn.gate.bias", DType::kF32, {256}},
      {"mtp.0.e_proj.scale", DType::kF8E8M0, {32, 32}},
      {"mtp.0.hc_head_base", DType::kF32, {4}},
      {"mtp.0.ffn.gate.bias", DType::kF32, {256}},
  };
  for (const auto& r : rows) {
    const ExpectedTensor& e = find(t, r.name);
    EXPECT_EQ(e.dtype, r.dtype) << r.name;
    EXPECT_EQ(e.shape, r.shape) << r.name;
  }
  EXPECT_EQ(find(t, "layers.0.ffn.experts.3.w1.weight").logical_shape,
            (std::vector<int64_t>{2048, 4096}));
  EXPECT_EQ(find(t, "layers.0.ffn.experts.3.w1.weight").encoding, TensorEncoding::kMxfp4);
  EXPECT_EQ(find(t, "layers.0.ffn.experts.3.w1.weight").expert, 3);
  EXPECT_EQ(find(t, "mtp.0.attn.wkv.weight").layer, 5);
  // Hash layers have tid2eid and no bias; MTP never has the hash table or a compressor.
  for (const auto& e : t) {
    if (e.name.find("tid2eid") != std::string::npos) {
      EXPECT_LT(e.layer, 3) << e.name;
    }
    if (e.name.rfind("mtp.", 0) == 0) {
      EXPECT_EQ(e.name.find("compressor"), std::string::npos) << e.name;
      EXPECT_EQ(e.name.find("tid2eid"), std::string::npos) << e.name;
    }
  }
}

TEST(Inventory, TinyCoversEveryLayerKindAndStaysSmall) {
  const ModelConfig c = ModelConfig::tiny();
  std::set<AttentionKind> kinds;
  bool hash = false, learned = false;
  for (int l = 0; l < c.num_layers; ++l) {
    kinds.insert(c.layer(l).attention);
    hash |= c.layer(l).routing == RoutingKind::kHash;
    learned |= c.layer(l).routing == RoutingKind::kLearned;
  }
  EXPECT_EQ(kinds.size(), 3u);
  EXPECT_TRUE(hash && learned);
  const InventoryTotals totals = inventory_totals(inventory_expected(c, 1));
  EXPECT_GT(totals.tensors, 100u);
  EXPECT_LT(totals.bytes, 16ull << 20) << "tiny must stay a few MB";
  // Every quantizable linear input is a multiple of 128, so group-128 recipes apply unchanged.
  for (const auto& e : inventory_expected(c, 1)) {
    if (e.encoding == TensorEncoding::kFp8Block || e.encoding == TensorEncoding::kMxfp4) {
      EXPECT_EQ(e.logical_shape[1] % 128, 0) << e.name;
    }
  }
}

TEST(Inventory, Fp8ExpertsWhenTheConfigSaysSo) {
  ModelConfig c = ModelConfig::tiny();
  c.expert_dtype = "fp8";
  const auto t = inventory_expected(c, 1);
  const ExpectedTensor& w = find(t, "layers.1.ffn.experts.0.w2.weight");
  EXPECT_EQ(w.dtype, DType::kF8E4M3);
  EXPECT_EQ(w.encoding, TensorEncoding::kFp8Block);
  EXPECT_EQ(find(t, "layers.1.ffn.experts.0.w2.scale").shape,
            (std::vector<int64_t>{(c.hidden_size + 127) / 128, (c.moe_intermediate_size + 127) / 128}));
}

TEST(Inventory, MtpStagesComeFromPrefixes) {
  EXPECT_EQ(inventory_mtp_stages({"embed.weight", "layers.0.attn_norm.weight"}), 0);
  EXPECT_EQ(inventory_mtp_stages({"mtp.0.e_proj.weight", "mtp.0.norm.weight"}), 1);
  EXPECT_EQ(inventory_mtp_stages({"mtp.1.x", "mtp.0.x", "mtp.2.y"}), 3);
  try {
    inventory_mtp_stages({"mtp.0.x", "mtp.2.x"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("mtp.2."));
    EXPECT_THAT(e.what(), HasSubstr("no mtp.1."));
  }
  EXPECT_THROW(inventory_mtp_stages({"mtp.x.weight"}), Error);
  const auto two = inventory_totals(inventory_expected(ModelConfig::tiny(), 2));
  const auto one = inventory_totals(inventory_expected(ModelConfig::tiny(), 1));
  const auto none = inventory_totals(inventory_expected(ModelConfig::tiny(), 0));
  EXPECT_EQ(two.tensors - one.tensors, one.tensors - none.tensors);
}

TEST(Inventory, TensorFamily) {
  EXPECT_EQ(tensor_family("layers.7.ffn.experts.31.w1.scale"), "layers.*.ffn.experts.*.w1.scale");
  EXPECT_EQ(tensor_family("mtp.0.ffn.experts.255.w2.weight"), "mtp.*.ffn.experts.*.w2.weight");
  EXPECT_EQ(tensor_family("embed.weight"), "embed.weight");
  EXPECT_EQ(tensor_family("layers.42.hc_attn_fn"), "layers.*.hc_attn_fn");
  EXPECT_EQ(tensor_family("mylayers.3.x"), "mylayers.3.x");  // only whole segments
}

}  // namespace
}  // namespace dsv4::model

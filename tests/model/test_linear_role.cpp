// test_linear_role.cpp: linear_role_parse (model/linear_role.h) on every Linear of the tiny
// inventory and on names that are no Linear.
#include <gtest/gtest.h>

#include <map>

#include "model/config.h"
#include "model/inventory.h"
#include "model/linear_role.h"

namespace dsv4::model {
namespace {

TEST(LinearRole, ParsesEveryReleaseLinear) {
  EXPECT_EQ(linear_role_parse("layers.3.attn.wq_a"), LinearRole::kAttnWqA);
  EXPECT_EQ(linear_role_parse("layers.3.attn.wo_a"), LinearRole::kAttnWoA);
  EXPECT_EQ(linear_role_parse("layers.2.attn.compressor.wkv"), LinearRole::kCompressorWkv);
  EXPECT_EQ(linear_role_parse("layers.2.attn.indexer.compressor.wkv"), LinearRole::kIndexerCompressorWkv);
  EXPECT_EQ(linear_role_parse("layers.2.attn.indexer.weights_proj"), LinearRole::kIndexerWeightsProj);
  EXPECT_EQ(linear_role_parse("layers.0.ffn.shared_experts.w2"), LinearRole::kSharedW2);
  EXPECT_EQ(linear_role_parse("layers.42.ffn.experts.255.w3"), LinearRole::kExpertW3);
  EXPECT_EQ(linear_role_parse("mtp.0.ffn.experts.7.w1"), LinearRole::kExpertW1);
  EXPECT_EQ(linear_role_parse("mtp.0.e_proj"), LinearRole::kMtpEProj);
  EXPECT_EQ(linear_role_parse("head"), LinearRole::kHead);
}

TEST(LinearRole, RejectsWhatIsNoLinear) {
  for (const char* name : {"layers.3.ffn.gate", "layers.3.attn_norm", "embed", "layers.x.attn.wq_a",
                           "layers.3.ffn.experts.x.w1", "layers.3.ffn.experts.7.w4", "mtp.0.head", "attn.wq_a",
                           "layers.3.attn.wq_a.weight", ""}) {
    EXPECT_FALSE(linear_role_parse(name).has_value()) << name;
  }
}

// Every Linear weight of the tiny inventory parses, and its leaf names it back.
TEST(LinearRole, CoversTheTinyInventory) {
  const ModelConfig c = ModelConfig::tiny();
  std::map<LinearRole, int> seen;
  for (const ExpectedTensor& t : inventory_expected(c, 1)) {
    if (!t.name.ends_with(".weight")) continue;
    const std::string module = t.name.substr(0, t.name.size() - 7);
    const auto role = linear_role_parse(module);
    if (!role) continue;
    ++seen[*role];
    std::string leaf(linear_role_leaf(*role));
    if (const size_t e = leaf.find(".E."); e != std::string::npos) leaf.replace(e + 1, 1, std::to_string(t.expert));
    EXPECT_TRUE(module.ends_with(leaf)) << module << " vs " << leaf;
  }
  for (LinearRole r : {LinearRole::kAttnWqA, LinearRole::kAttnWoB, LinearRole::kCompressorWgate,
                       LinearRole::kIndexerWqB, LinearRole::kExpertW2, LinearRole::kSharedW1, LinearRole::kHead,
                       LinearRole::kMtpHProj}) {
    EXPECT_GT(seen[r], 0) << linear_role_leaf(r);
  }
}

}  // namespace
}  // namespace dsv4::model

// test_names.cpp: the release <-> transformers 5.17 <-> vLLM 0.33 name table. The expected names
// were produced by replaying transformers' conversion_mapping.py ("deepseek_v4") and vLLM's
// deepseek_v4 nvidia/model.py + mtp.py loaders on the release names (see model/names.h);
// multi-digit layer and expert numbers (42, 255) check that placeholders capture whole numbers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "model/names.h"

namespace dsv4::model {
namespace {

using ::testing::ElementsAre;

struct TensorRow {
  const char* release;
  const char* hf;  // "" = no transformers name
  const char* vllm;
  int vllm_shard;
};

// Every row of reference §2.6 (plus the MTP head), one tensor per leaf.
const TensorRow kTensorRows[] = {
    {"embed.weight", "model.embed_tokens.weight", "model.embed_tokens.weight", -1},
    {"head.weight", "lm_head.weight", "lm_head.weight", -1},
    {"norm.weight", "model.norm.weight", "model.norm.weight", -1},
    {"hc_head_fn", "model.hc_head.hc_fn", "model.hc_head_fn", -1},
    {"hc_head_base", "model.hc_head.hc_base", "model.hc_head_base", -1},
    {"hc_head_scale", "model.hc_head.hc_scale", "model.hc_head_scale", -1},
    {"layers.42.attn_norm.weight", "model.layers.42.input_layernorm.weight",
     "model.layers.42.attn_norm.weight", -1},
    {"layers.42.ffn_norm.weight", "model.layers.42.post_attention_layernorm.weight",
     "model.layers.42.ffn_norm.weight", -1},
    {"layers.42.hc_attn_fn", "model.layers.42.attn_hc.fn", "model.layers.42.hc_attn_fn", -1},
    {"layers.42.hc_attn_base", "model.layers.42.attn_hc.base", "model.layers.42.hc_attn_base", -1},
    {"layers.42.hc_attn_scale", "model.layers.42.attn_hc.scale", "model.layers.42.hc_attn_scale",
     -1},
    {"layers.42.hc_ffn_fn", "model.layers.42.ffn_hc.fn", "model.layers.42.hc_ffn_fn", -1},
    {"layers.42.hc_ffn_base", "model.layers.42.ffn_hc.base", "model.layers.42.hc_ffn_base", -1},
    {"layers.42.hc_ffn_scale", "model.layers.42.ffn_hc.scale", "model.layers.42.hc_ffn_scale", -1},
    {"layers.42.attn.wq_a.weight", "model.layers.42.self_attn.q_a_proj.weight",
     "model.layers.42.attn.fused_wqa_wkv.weight", 0},
    {"layers.42.attn.wq_a.scale", "model.layers.42.self_attn.q_a_proj.weight_scale_inv",
     "model.layers.42.attn.fused_wqa_wkv.weight_scale_inv", 0},
    {"layers.42.attn.q_norm.weight", "model.layers.42.self_attn.q_a_norm.weight",
     "model.layers.42.attn.q_norm.weight", -1},
    {"layers.42.attn.wq_b.weight", "model.layers.42.self_attn.q_b_proj.weight",
     "model.layers.42.attn.wq_b.weight", -1},
    {"layers.42.attn.wq_b.scale", "model.layers.42.self_attn.q_b_proj.weight_scale_inv",
     "model.layers.42.attn.wq_b.weight_scale_inv", -1},
    {"layers.42.attn.wkv.weight", "model.layers.42.self_attn.kv_proj.weight",
     "model.layers.42.attn.fused_wqa_wkv.weight", 1},
    {"layers.42.attn.wkv.scale", "model.layers.42.self_attn.kv_proj.weight_scale_inv",
     "model.layers.42.attn.fused_wqa_wkv.weight_scale_inv", 1},
    {"layers.42.attn.kv_norm.weight", "model.layers.42.self_attn.kv_norm.weight",
     "model.layers.42.attn.kv_norm.weight", -1},
    {"layers.42.attn.wo_a.weight", "model.layers.42.self_attn.o_a_proj.weight",
     "model.layers.42.attn.wo_a.weight", -1},
    {"layers.42.attn.wo_a.scale", "model.layers.42.self_attn.o_a_proj.weight_scale_inv",
     "model.layers.42.attn.wo_a.weight_scale_inv", -1},
    {"layers.42.attn.wo_b.weight", "model.layers.42.self_attn.o_b_proj.weight",
     "model.layers.42.attn.wo_b.weight", -1},
    {"layers.42.attn.wo_b.scale", "model.layers.42.self_attn.o_b_proj.weight_scale_inv",
     "model.layers.42.attn.wo_b.weight_scale_inv", -1},
    {"layers.42.attn.attn_sink", "model.layers.42.self_attn.sinks",
     "model.layers.42.attn.attn_sink", -1},
    {"layers.42.attn.compressor.wkv.weight", "model.layers.42.self_attn.compressor.kv_proj.weight",
     "model.layers.42.attn.compressor.fused_wkv_wgate.weight", 0},
    {"layers.42.attn.compressor.wgate.weight",
     "model.layers.42.self_attn.compressor.gate_proj.weight",
     "model.layers.42.attn.compressor.fused_wkv_wgate.weight", 1},
    {"layers.42.attn.compressor.ape", "model.layers.42.self_attn.compressor.position_bias",
     "model.layers.42.attn.compressor.ape", -1},
    {"layers.42.attn.compressor.norm.weight", "model.layers.42.self_attn.compressor.kv_norm.weight",
     "model.layers.42.attn.compressor.norm.weight", -1},
    {"layers.42.attn.indexer.wq_b.weight",
     "model.layers.42.self_attn.compressor.indexer.q_b_proj.weight",
     "model.layers.42.attn.indexer.wq_b.weight", -1},
    {"layers.42.attn.indexer.wq_b.scale",
     "model.layers.42.self_attn.compressor.indexer.q_b_proj.weight_scale_inv",
     "model.layers.42.attn.indexer.wq_b.weight_scale_inv", -1},
    {"layers.42.attn.indexer.weights_proj.weight",
     "model.layers.42.self_attn.compressor.indexer.scorer.weights_proj.weight",
     "model.layers.42.attn.indexer.weights_proj.weight", -1},
    {"layers.42.attn.indexer.compressor.wkv.weight",
     "model.layers.42.self_attn.compressor.indexer.kv_proj.weight",
     "model.layers.42.attn.indexer.compressor.fused_wkv_wgate.weight", 0},
    {"layers.42.attn.indexer.compressor.wgate.weight",
     "model.layers.42.self_attn.compressor.indexer.gate_proj.weight",
     "model.layers.42.attn.indexer.compressor.fused_wkv_wgate.weight", 1},
    {"layers.42.attn.indexer.compressor.ape",
     "model.layers.42.self_attn.compressor.indexer.position_bias",
     "model.layers.42.attn.indexer.compressor.ape", -1},
    {"layers.42.attn.indexer.compressor.norm.weight",
     "model.layers.42.self_attn.compressor.indexer.kv_norm.weight",
     "model.layers.42.attn.indexer.compressor.norm.weight", -1},
    {"layers.42.ffn.gate.weight", "model.layers.42.mlp.gate.weight",
     "model.layers.42.ffn.gate.weight", -1},
    {"layers.42.ffn.gate.bias", "model.layers.42.mlp.gate.e_score_correction_bias",
     "model.layers.42.ffn.gate.e_score_correction_bias", -1},
    {"layers.2.ffn.gate.tid2eid", "model.layers.2.mlp.gate.tid2eid",
     "model.layers.2.ffn.gate.tid2eid", -1},
    {"layers.42.ffn.shared_experts.w1.weight",
     "model.layers.42.mlp.shared_experts.gate_proj.weight",
     "model.layers.42.ffn.shared_experts.gate_up_proj.weight", 0},
    {"layers.42.ffn.shared_experts.w1.scale",
     "model.layers.42.mlp.shared_experts.gate_proj.weight_scale_inv",
     "model.layers.42.ffn.shared_experts.gate_up_proj.weight_scale_inv", 0},
    {"layers.42.ffn.shared_experts.w3.weight", "model.layers.42.mlp.shared_experts.up_proj.weight",
     "model.layers.42.ffn.shared_experts.gate_up_proj.weight", 1},
    {"layers.42.ffn.shared_experts.w2.weight",
     "model.layers.42.mlp.shared_experts.down_proj.weight",
     "model.layers.42.ffn.shared_experts.down_proj.weight", -1},
    {"layers.42.ffn.shared_experts.w2.scale",
     "model.layers.42.mlp.shared_experts.down_proj.weight_scale_inv",
     "model.layers.42.ffn.shared_experts.down_proj.weight_scale_inv", -1},
    // MTP: no transformers name; vLLM numbers the block after the main layers.
    {"mtp.0.e_proj.weight", "", "model.layers.43.e_proj.weight", -1},
    {"mtp.0.e_proj.scale", "", "model.layers.43.e_proj.weight_scale_inv", -1},
    {"mtp.0.h_proj.weight", "", "model.layers.43.h_proj.weight", -1},
    {"mtp.0.enorm.weight", "", "model.layers.43.enorm.weight", -1},
    {"mtp.0.hnorm.weight", "", "model.layers.43.hnorm.weight", -1},
    {"mtp.0.norm.weight", "", "model.layers.43.shared_head.norm.weight", -1},
    {"mtp.0.hc_head_fn", "", "model.layers.43.hc_head_fn", -1},
    {"mtp.0.hc_head_scale", "", "model.layers.43.hc_head_scale", -1},
    {"mtp.0.attn_norm.weight", "", "model.layers.43.mtp_block.attn_norm.weight", -1},
    {"mtp.0.hc_ffn_base", "", "model.layers.43.mtp_block.hc_ffn_base", -1},
    {"mtp.0.attn.wq_a.scale", "", "model.layers.43.mtp_block.attn.fused_wqa_wkv.weight_scale_inv",
     0},
    {"mtp.0.attn.wkv.weight", "", "model.layers.43.mtp_block.attn.fused_wqa_wkv.weight", 1},
    {"mtp.0.attn.attn_sink", "", "model.layers.43.mtp_block.attn.attn_sink", -1},
    {"mtp.0.ffn.gate.bias", "", "model.layers.43.mtp_block.ffn.gate.e_score_correction_bias", -1},
    {"mtp.0.ffn.shared_experts.w2.weight", "",
     "model.layers.43.mtp_block.ffn.shared_experts.down_proj.weight", -1},
};

struct ModuleRow {
  const char* release;
  const char* hf;  // "" = none
  const char* vllm;
  int shard, expert;
};

const ModuleRow kModuleRows[] = {
    {"embed", "model.embed_tokens", "model.embed_tokens", -1, -1},
    {"head", "lm_head", "lm_head", -1, -1},
    {"layers.3.attn.wq_a", "model.layers.3.self_attn.q_a_proj", "model.layers.3.attn.fused_wqa_wkv",
     0, -1},
    {"layers.3.attn.wkv", "model.layers.3.self_attn.kv_proj", "model.layers.3.attn.fused_wqa_wkv",
     1, -1},
    {"layers.3.attn.wq_b", "model.layers.3.self_attn.q_b_proj", "model.layers.3.attn.wq_b", -1, -1},
    {"layers.3.attn.wo_a", "model.layers.3.self_attn.o_a_proj", "model.layers.3.attn.wo_a", -1, -1},
    {"layers.3.attn.wo_b", "model.layers.3.self_attn.o_b_proj", "model.layers.3.attn.wo_b", -1, -1},
    {"layers.3.attn.compressor.wgate", "model.layers.3.self_attn.compressor.gate_proj",
     "model.layers.3.attn.compressor.fused_wkv_wgate", 1, -1},
    {"layers.4.attn.indexer.wq_b", "model.layers.4.self_attn.compressor.indexer.q_b_proj",
     "model.layers.4.attn.indexer.wq_b", -1, -1},
    {"layers.4.attn.indexer.compressor.wkv", "model.layers.4.self_attn.compressor.indexer.kv_proj",
     "model.layers.4.attn.indexer.compressor.fused_wkv_wgate", 0, -1},
    {"layers.3.ffn.gate", "model.layers.3.mlp.gate", "model.layers.3.ffn.gate", -1, -1},
    {"layers.3.ffn.shared_experts.w1", "model.layers.3.mlp.shared_experts.gate_proj",
     "model.layers.3.ffn.shared_experts.gate_up_proj", 0, -1},
    {"layers.3.ffn.shared_experts.w3", "model.layers.3.mlp.shared_experts.up_proj",
     "model.layers.3.ffn.shared_experts.gate_up_proj", 1, -1},
    {"layers.3.ffn.shared_experts.w2", "model.layers.3.mlp.shared_experts.down_proj",
     "model.layers.3.ffn.shared_experts.down_proj", -1, -1},
    {"layers.42.ffn.experts.255.w1", "model.layers.42.mlp.experts.255.gate_proj",
     "model.layers.42.ffn.experts", 0, 255},
    {"layers.42.ffn.experts.255.w3", "model.layers.42.mlp.experts.255.up_proj",
     "model.layers.42.ffn.experts", 1, 255},
    {"layers.10.ffn.experts.17.w2", "model.layers.10.mlp.experts.17.down_proj",
     "model.layers.10.ffn.experts", -1, 17},
    {"mtp.0.e_proj", "", "model.layers.43.e_proj", -1, -1},
    {"mtp.0.attn.wq_a", "", "model.layers.43.mtp_block.attn.fused_wqa_wkv", 0, -1},
    {"mtp.0.ffn.experts.5.w3", "", "model.layers.43.mtp_block.ffn.experts", 1, 5},
};

class NameMapTest : public ::testing::Test {
 protected:
  NameMap names_{ModelConfig::flash(43, 256)};
};

TEST_F(NameMapTest, TensorsInEveryNaming) {
  for (const TensorRow& r : kTensorRows) {
    const auto hf = names_.hf_tensor(r.release);
    if (*r.hf == '\0') {
      EXPECT_FALSE(hf.has_value()) << r.release << " -> " << hf->name;
    } else {
      ASSERT_TRUE(hf.has_value()) << r.release;
      EXPECT_EQ(hf->name, r.hf) << r.release;
      EXPECT_EQ(hf->expert, -1) << r.release;
      EXPECT_EQ(names_.release_tensor_from_hf(r.hf), r.release) << r.hf;
    }
    const auto vllm = names_.vllm_tensor(r.release);
    ASSERT_TRUE(vllm.has_value()) << r.release;
    EXPECT_EQ(vllm->name, r.vllm) << r.release;
    EXPECT_EQ(vllm->shard, r.vllm_shard) << r.release;
    EXPECT_EQ(vllm->expert, -1) << r.release;
  }
}

TEST_F(NameMapTest, ModulesInEveryNaming) {
  for (const ModuleRow& r : kModuleRows) {
    const auto hf = names_.hf_module(r.release);
    if (*r.hf == '\0') {
      EXPECT_FALSE(hf.has_value()) << r.release;
    } else {
      EXPECT_EQ(hf, r.hf) << r.release;
      EXPECT_EQ(names_.release_module_from_hf(r.hf), r.release) << r.hf;
    }
    const auto vllm = names_.vllm_module(r.release);
    ASSERT_TRUE(vllm.has_value()) << r.release;
    EXPECT_EQ(vllm->name, r.vllm) << r.release;
    EXPECT_EQ(vllm->shard, r.shard) << r.release;
    EXPECT_EQ(vllm->expert, r.expert) << r.release;
    EXPECT_EQ(vllm->row_begin, -1) << "modules carry no row range: " << r.release;
    const auto back = names_.release_modules_from_vllm(r.vllm);
    EXPECT_NE(std::find(back.begin(), back.end(), r.release), back.end()) << r.vllm;
  }
}

// llm-compressor recipes name transformers modules, with experts linearized per expert.
TEST_F(NameMapTest, LlmCompressorTargetsResolveToReleaseModules) {
  EXPECT_EQ(names_.release_module_from_hf("model.layers.3.mlp.experts.7.gate_proj"),
            "layers.3.ffn.experts.7.w1");
  EXPECT_EQ(names_.release_module_from_hf("model.layers.3.mlp.experts.7.up_proj"),
            "layers.3.ffn.experts.7.w3");
  EXPECT_EQ(names_.release_module_from_hf("model.layers.3.mlp.experts.7.down_proj"),
            "layers.3.ffn.experts.7.w2");
  EXPECT_EQ(names_.release_module_from_hf("model.layers.3.self_attn.q_a_proj"),
            "layers.3.attn.wq_a");
  EXPECT_EQ(names_.release_module_from_hf(
                "model.layers.3.self_attn.compressor.indexer.scorer.weights_proj"),
            "layers.3.attn.indexer.weights_proj");
  EXPECT_EQ(names_.release_module_from_hf("lm_head"), "head");
  EXPECT_EQ(names_.release_module_from_hf("model.layers.3.mlp.experts"), std::nullopt)
      << "fused container";
}

TEST_F(NameMapTest, ExpertsFuseWithSliceInfo) {
  const auto w1 = names_.hf_tensor("layers.42.ffn.experts.255.w1.weight");
  ASSERT_TRUE(w1.has_value());
  EXPECT_EQ(w1->name, "model.layers.42.mlp.experts.gate_up_proj");
  EXPECT_EQ(w1->expert, 255);
  EXPECT_EQ(w1->shard, 0);
  EXPECT_EQ(w1->row_begin, 0);
  EXPECT_EQ(w1->row_end, 2048);
  const auto w3 = names_.hf_tensor("layers.42.ffn.experts.255.w3.weight");
  ASSERT_TRUE(w3.has_value());
  EXPECT_EQ(w3->name, "model.layers.42.mlp.experts.gate_up_proj");
  EXPECT_EQ(w3->shard, 1);
  EXPECT_EQ(w3->row_begin, 2048);
  EXPECT_EQ(w3->row_end, 4096);
  const auto w2 = names_.hf_tensor("layers.0.ffn.experts.10.w2.weight");
  ASSERT_TRUE(w2.has_value());
  EXPECT_EQ(w2->name, "model.layers.0.mlp.experts.down_proj");
  EXPECT_EQ(w2->expert, 10);
  EXPECT_EQ(w2->shard, -1);
  EXPECT_EQ(w2->row_begin, -1);
  EXPECT_EQ(names_.hf_tensor("layers.0.ffn.experts.10.w3.scale")->name,
            "model.layers.0.mlp.experts.gate_up_proj_scale_inv");
  EXPECT_EQ(names_.release_tensor_from_hf("model.layers.42.mlp.experts.gate_up_proj"), std::nullopt)
      << "a fused tensor has no single release name";

  // vLLM with MXFP4 experts: w13/w2 weights, `weight_scale`, per-row scales.
  const auto v3s = names_.vllm_tensor("layers.42.ffn.experts.255.w3.scale");
  ASSERT_TRUE(v3s.has_value());
  EXPECT_EQ(v3s->name, "model.layers.42.ffn.experts.w13_weight_scale");
  EXPECT_EQ(v3s->expert, 255);
  EXPECT_EQ(v3s->shard, 1);
  EXPECT_EQ(v3s->row_begin, 2048);
  EXPECT_EQ(v3s->row_end, 4096);
  EXPECT_EQ(names_.vllm_tensor("layers.1.ffn.experts.0.w2.weight")->name,
            "model.layers.1.ffn.experts.w2_weight");
  EXPECT_EQ(names_.vllm_tensor("mtp.0.ffn.experts.255.w1.scale")->name,
            "model.layers.43.mtp_block.ffn.experts.w13_weight_scale");

  // FP8 block experts (Flash-Base style): every scale is weight_scale_inv, rows in 128-blocks.
  ModelConfig fp8 = ModelConfig::flash();
  fp8.expert_dtype = "fp8";
  const NameMap names_fp8(fp8);
  const auto f = names_fp8.vllm_tensor("layers.5.ffn.experts.3.w3.scale");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->name, "model.layers.5.ffn.experts.w13_weight_scale_inv");
  EXPECT_EQ(f->row_begin, 16);
  EXPECT_EQ(f->row_end, 32);
}

TEST_F(NameMapTest, VllmFusedRowRanges) {
  struct Case {
    const char* release;
    int64_t begin, end;
  };
  const Case cases[] = {
      {"layers.0.attn.wq_a.weight", 0, 1024},
      {"layers.0.attn.wkv.weight", 1024, 1536},
      {"layers.0.attn.wq_a.scale", 0, 8},
      {"layers.0.attn.wkv.scale", 8, 12},
      {"layers.2.attn.compressor.wkv.weight", 0, 1024},  // CSA: two series of 512
      {"layers.2.attn.compressor.wgate.weight", 1024, 2048},
      {"layers.3.attn.compressor.wkv.weight", 0, 512},  // HCA: one series
      {"layers.3.attn.compressor.wgate.weight", 512, 1024},
      {"layers.2.attn.indexer.compressor.wgate.weight", 256, 512},
      {"layers.9.ffn.shared_experts.w3.weight", 2048, 4096},
      {"layers.9.ffn.shared_experts.w3.scale", 16, 32},
      {"layers.9.attn.wq_b.weight", -1, -1},
  };
  for (const Case& c : cases) {
    const auto a = names_.vllm_tensor(c.release);
    ASSERT_TRUE(a.has_value()) << c.release;
    EXPECT_EQ(a->row_begin, c.begin) << c.release;
    EXPECT_EQ(a->row_end, c.end) << c.release;
  }
  // Tiny: wkv (64 rows) after wq_a (128) still starts on a 128-row scale block; a q_lora_rank
  // of 192 would not, and the scale slice is then reported as unknown.
  EXPECT_EQ(NameMap(ModelConfig::tiny()).vllm_tensor("layers.1.attn.wkv.scale")->row_begin, 1);
  ModelConfig odd = ModelConfig::tiny();
  odd.q_lora_rank = 192;
  const auto a = NameMap(odd).vllm_tensor("layers.1.attn.wkv.scale");
  EXPECT_EQ(a->row_begin, -1);
  EXPECT_EQ(NameMap(odd).vllm_tensor("layers.1.attn.wkv.weight")->row_begin, 192);
}

TEST_F(NameMapTest, ReleaseModulesFromVllm) {
  EXPECT_THAT(names_.release_modules_from_vllm("model.layers.3.attn.fused_wqa_wkv"),
              ElementsAre("layers.3.attn.wq_a", "layers.3.attn.wkv"));
  EXPECT_THAT(
      names_.release_modules_from_vllm("model.layers.2.attn.indexer.compressor.fused_wkv_wgate"),
      ElementsAre("layers.2.attn.indexer.compressor.wkv",
                  "layers.2.attn.indexer.compressor.wgate"));
  EXPECT_THAT(
      names_.release_modules_from_vllm("model.layers.43.mtp_block.ffn.shared_experts.gate_up_proj"),
      ElementsAre("mtp.0.ffn.shared_experts.w1", "mtp.0.ffn.shared_experts.w3"));
  const auto experts = names_.release_modules_from_vllm("model.layers.7.ffn.experts");
  ASSERT_EQ(experts.size(), 3u * 256u);
  EXPECT_EQ(experts.front(), "layers.7.ffn.experts.0.w1");
  EXPECT_EQ(experts[255], "layers.7.ffn.experts.255.w1");
  EXPECT_EQ(experts[256], "layers.7.ffn.experts.0.w3");
  EXPECT_EQ(experts.back(), "layers.7.ffn.experts.255.w2");
  EXPECT_TRUE(names_.release_modules_from_vllm("model.layers.7.ffn.expert").empty());
}

TEST_F(NameMapTest, MtpHasNoTransformersName) {
  for (const char* n : {"mtp.0.attn.wq_a.weight", "mtp.0.ffn.experts.3.w1.weight",
                        "mtp.0.e_proj.scale", "mtp.0.hc_head_fn", "mtp.0.norm.weight"})
    EXPECT_EQ(names_.hf_tensor(n).has_value(), false) << n;
  EXPECT_EQ(names_.hf_module("mtp.0.ffn.experts.3.w1"), std::nullopt);
  EXPECT_EQ(names_.vllm_tensor("mtp.1.attn.wq_b.weight")->name,
            "model.layers.44.mtp_block.attn.wq_b.weight");
}

TEST_F(NameMapTest, ReleaseModuleOf) {
  EXPECT_EQ(names_.release_module_of("layers.3.attn.wq_a.scale"), "layers.3.attn.wq_a");
  EXPECT_EQ(names_.release_module_of("layers.12.ffn.experts.200.w2.weight"),
            "layers.12.ffn.experts.200.w2");
  EXPECT_EQ(names_.release_module_of("embed.weight"), "embed");
  EXPECT_EQ(names_.release_module_of("layers.3.hc_attn_fn"), std::nullopt);
  EXPECT_EQ(names_.release_module_of("layers.3.attn.compressor.wkv.scale"), std::nullopt)
      << "BF16: no scale";
}

TEST_F(NameMapTest, UnknownNamesGiveNullopt) {
  for (const char* n :
       {"", "layers", "layers.3", "layers.3.", "layers.3.attn.foo.weight",
        "layers.x.attn.wq_a.weight", "layers.007.attn.wq_a.weight", "layers.-1.attn.wq_a.weight",
        "layers.43.attn.wq_a.weight", "layers.99999999999.attn.wq_a.weight",
        "layers.3.ffn.experts.256.w1.weight", "layers.3.ffn.experts.01.w1.weight",
        "layers.3.attn.wq_a.weight.extra", "layers.3.attn.wq_a",
        "model.layers.3.self_attn.q_a_proj.weight", "layers.3.ffn.experts.7.w4.weight",
        "layers.3.attn.attn_sink.weight", "mtp.x.e_proj.weight"}) {
    EXPECT_FALSE(names_.hf_tensor(n).has_value()) << n;
    EXPECT_FALSE(names_.vllm_tensor(n).has_value()) << n;
  }
  EXPECT_EQ(names_.hf_module("layers.3.attn.wq_a.weight"), std::nullopt)
      << "a tensor is not a module";
  EXPECT_EQ(names_.hf_module("layers.3.hc_attn_fn"), std::nullopt) << "a parameter is not a module";
  EXPECT_EQ(names_.release_module_from_hf("model.layers.43.self_attn.q_a_proj"), std::nullopt);
  EXPECT_EQ(names_.release_tensor_from_hf("model.layers.3.self_attn.q_a_proj.weight_scale"),
            std::nullopt);
  EXPECT_EQ(names_.vllm_module("layers.3.attn"), std::nullopt);
  EXPECT_TRUE(names_.release_modules_from_vllm("model.layers.3.mtp_block.attn.wq_b").empty())
      << "43 layers";
}

}  // namespace
}  // namespace dsv4::model

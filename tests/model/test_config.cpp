// test_config.cpp: ModelConfig from the release and transformers 5.17 spellings, the built-in
// shapes, the release writer, and every error path (each message must name the offending key).
// The transformers literals below are what transformers 5.17.0's DeepseekV4Config.save_pretrained
// wrote for the release config and for ModelConfig::tiny() (nested rope_parameters, "dtype").
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "common/check.h"
#include "model/config.h"
#include "tests/scratch_dir.h"

namespace dsv4::model {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

// reference §1.1, verbatim values, plus nothing else.
const char* kReleaseJson = R"json({
  "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4", "vocab_size": 129280,
  "hidden_size": 4096, "num_hidden_layers": 43, "num_attention_heads": 64, "num_key_value_heads": 1,
  "head_dim": 512, "qk_rope_head_dim": 64, "q_lora_rank": 1024, "o_groups": 8, "o_lora_rank": 1024,
  "sliding_window": 128,
  "compress_ratios": [0, 0, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128,
                      4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 128, 4, 0],
  "compress_rope_theta": 160000, "rope_theta": 10000,
  "rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 65536,
                   "beta_fast": 32, "beta_slow": 1},
  "max_position_embeddings": 1048576, "index_n_heads": 64, "index_head_dim": 128, "index_topk": 512,
  "n_routed_experts": 256, "num_experts_per_tok": 6, "n_shared_experts": 1, "moe_intermediate_size": 2048,
  "num_hash_layers": 3, "scoring_func": "sqrtsoftplus", "topk_method": "noaux_tc", "norm_topk_prob": true,
  "routed_scaling_factor": 1.5, "swiglu_limit": 10.0, "hidden_act": "silu", "hc_mult": 4,
  "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 1,
  "expert_dtype": "fp4",
  "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                          "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
  "torch_dtype": "bfloat16", "tie_word_embeddings": false, "bos_token_id": 0, "eos_token_id": 1,
  "attention_bias": false, "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": true,
  "transformers_version": "4.57.1"})json";

// transformers 5.17.0 save_pretrained of DeepseekV4Config(**release config).
const char* kReleaseAsTransformersJson = R"json({"architectures": ["DeepseekV4ForCausalLM"],
"attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 0, "compress_rates":
{"compressed_sparse_attention": 4, "heavily_compressed_attention": 128}, "compress_rope_theta": 160000,
"dtype": "bfloat16", "eos_token_id": 1, "expert_dtype": "fp4", "hc_eps": 1e-06, "hc_mult": 4,
"hc_sinkhorn_iters": 20, "head_dim": 512, "hidden_act": "silu", "hidden_size": 4096,
"index_head_dim": 128, "index_n_heads": 64, "index_topk": 512, "initializer_range": 0.02,
"layer_types": ["sliding_attention", "sliding_attention", "compressed_sparse_attention",
"heavily_compressed_attention", "compressed_sparse_attention", "heavily_compressed_attention",
"compressed_sparse_attention", "heavily_compressed_attention", "compressed_sparse_attention",
"heavily_compressed_attention", "compressed_sparse_attention", "heavily_compressed_attention",
"compressed_sparse_attention", "heavily_compressed_attention", "compressed_sparse_attention",
"heavily_compressed_attention", "compressed_sparse_attention", "heavily_compressed_attention",
"compressed_sparse_attention", "heavily_compressed_attention", "compressed_sparse_attention",
"heavily_compressed_attention", "compressed_sparse_attention", "heavily_compressed_attention",
"compressed_sparse_attention", "heavily_compressed_attention", "compressed_sparse_attention",
"heavily_compressed_attention", "compressed_sparse_attention", "heavily_compressed_attention",
"compressed_sparse_attention", "heavily_compressed_attention", "compressed_sparse_attention",
"heavily_compressed_attention", "compressed_sparse_attention", "heavily_compressed_attention",
"compressed_sparse_attention", "heavily_compressed_attention", "compressed_sparse_attention",
"heavily_compressed_attention", "compressed_sparse_attention", "heavily_compressed_attention",
"compressed_sparse_attention"], "max_position_embeddings": 1048576, "mlp_bias": false,
"mlp_layer_types": ["hash_moe", "hash_moe", "hash_moe", "moe", "moe", "moe", "moe", "moe",
"moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe",
"moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe",
"moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe", "moe"], "model_type": "deepseek_v4",
"moe_intermediate_size": 2048, "n_routed_experts": 256, "n_shared_experts": 1,
"norm_topk_prob": true, "num_attention_heads": 64, "num_experts_per_tok": 6,
"num_hidden_layers": 43, "num_key_value_heads": 1, "num_nextn_predict_layers": 1,
"o_groups": 8, "o_lora_rank": 1024, "output_router_logits": false, "pad_token_id": null,
"partial_rotary_factor": 0.125, "q_lora_rank": 1024, "qk_rope_head_dim": 64,
"quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
"scale_fmt": "ue8m0", "weight_block_size": [128, 128]}, "rms_norm_eps": 1e-06,
"rope_parameters": {"compress": {"attention_factor": 1.0, "beta_fast": 32, "beta_slow": 1,
"factor": 16, "original_max_position_embeddings": 65536, "partial_rotary_factor": 0.125,
"rope_theta": 160000, "rope_type": "yarn", "type": "yarn"},
"main": {"partial_rotary_factor": 0.125, "rope_theta": 10000, "rope_type": "default"}},
"rope_theta": 10000, "routed_scaling_factor": 1.5, "router_aux_loss_coef": 0.001,
"router_jitter_noise": 0.0, "scoring_func": "sqrtsoftplus", "sliding_window": 128,
"swiglu_limit": 10.0, "tie_word_embeddings": false, "topk_method": "noaux_tc",
"transformers_version": "5.17.0", "use_cache": true, "vocab_size": 129280})json";

// reference §6's tiny working set as DeepseekV4Config kwargs (flat rope_parameters, no
// qk_rope_head_dim), and the same model in the release spelling.
const char* kWorkingSetTransformersJson = R"json({"vocab_size": 256, "hidden_size": 64,
"num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32,
"partial_rotary_factor": 0.25, "q_lora_rank": 32, "o_groups": 2, "o_lora_rank": 16, "n_routed_experts": 8,
"num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 32, "index_n_heads": 2,
"index_head_dim": 16, "index_topk": 4, "sliding_window": 8, "hc_mult": 4, "hc_sinkhorn_iters": 20,
"layer_types": ["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention", "sliding_attention"],
"mlp_layer_types": ["hash_moe", "moe", "moe", "moe"],
"compress_rates": {"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
"rope_parameters": {"rope_type": "yarn", "factor": 16, "original_max_position_embeddings": 64,
                    "beta_fast": 32, "beta_slow": 1},
"max_position_embeddings": 512, "pad_token_id": null})json";
const char* kWorkingSetReleaseJson = R"json({"vocab_size": 256, "hidden_size": 64,
"num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32,
"qk_rope_head_dim": 8, "q_lora_rank": 32, "o_groups": 2, "o_lora_rank": 16, "n_routed_experts": 8,
"num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 32, "index_n_heads": 2,
"index_head_dim": 16, "index_topk": 4, "sliding_window": 8, "hc_mult": 4, "hc_sinkhorn_iters": 20,
"compress_ratios": [0, 4, 8, 0, 0], "num_hash_layers": 1, "rope_theta": 10000, "compress_rope_theta": 160000,
"rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 64, "beta_fast": 32,
                 "beta_slow": 1},
"max_position_embeddings": 512})json";

// transformers 5.17.0 save_pretrained of ModelConfig::tiny() in its spelling (HCA ratio 128), plus the two
// quantization keys transformers keeps as plain attributes.
const char* kTinyTransformersJson =
    R"json({"attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 0,
"compress_rates": {"compressed_sparse_attention": 4, "heavily_compressed_attention": 128}, "compress_rope_theta": 160000.0,
"eos_token_id": 1, "hc_eps": 1e-06, "hc_mult": 4, "hc_sinkhorn_iters": 20, "head_dim": 64, "hidden_act": "silu",
"hidden_size": 256, "index_head_dim": 64, "index_n_heads": 2, "index_topk": 4, "initializer_range": 0.02,
"layer_types": ["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
"compressed_sparse_attention"], "max_position_embeddings": 4096, "mlp_bias": false,
"mlp_layer_types": ["hash_moe", "moe", "moe", "moe"], "model_type": "deepseek_v4", "moe_intermediate_size": 128,
"n_routed_experts": 8, "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 4,
"num_experts_per_tok": 2, "num_hidden_layers": 4, "num_key_value_heads": 1, "num_nextn_predict_layers": 1,
"o_groups": 2, "o_lora_rank": 64, "output_router_logits": false, "pad_token_id": null, "partial_rotary_factor": 0.5,
"q_lora_rank": 128, "qk_rope_head_dim": 32, "rms_norm_eps": 1e-06, "rope_parameters": {"compress":
{"attention_factor": 1.0, "beta_fast": 32.0, "beta_slow": 1.0, "factor": 16.0, "original_max_position_embeddings": 64,
"partial_rotary_factor": 0.5, "rope_theta": 160000.0, "rope_type": "yarn"}, "main": {"partial_rotary_factor": 0.5,
"rope_theta": 10000.0, "rope_type": "default"}}, "rope_theta": 10000.0, "routed_scaling_factor": 1.5,
"router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0, "scoring_func": "sqrtsoftplus", "sliding_window": 16,
"swiglu_limit": 10.0, "tie_word_embeddings": false, "transformers_version": "5.17.0", "use_cache": true,
"vocab_size": 512, "expert_dtype": "fp4", "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
"scale_fmt": "ue8m0", "weight_block_size": [128, 128]}})json";

json release() { return json::parse(kReleaseJson); }

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out;
}

// The message of the dsv4::Error that `f` throws ("<no error>" if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}
std::string parse_error(const json& j) {
  return error_of([&] { ModelConfig::from_json(j, "test.json"); });
}

int count_kind(const ModelConfig& c, AttentionKind k, int begin, int end) {
  int n = 0;
  for (int i = begin; i < end; ++i) n += c.layer(i).attention == k;
  return n;
}

// Issue 26: a wrong type, a missing key or an inconsistent value in config.json is the user's to
// fix: a user error (printed without a source location) naming the file and the dotted key path.
TEST(ModelConfigTest, BadKeysAreUserErrorsNamingFileAndKeyPath) {
  auto user_error = [](const json& j) {
    try {
      ModelConfig::from_json(j, "test.json");
    } catch (const Error& e) {
      EXPECT_TRUE(e.user()) << e.what();
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  json j = release();
  j["hidden_size"] = "4096";
  EXPECT_EQ(user_error(j), "test.json: \"hidden_size\" must be an integer, got \"4096\"");
  j = release();
  j["rope_scaling"]["factor"] = "x";
  EXPECT_EQ(user_error(j), "test.json: \"rope_scaling.factor\" must be a number, got \"x\"");
  j = release();
  j.erase("hidden_size");
  EXPECT_THAT(user_error(j), HasSubstr("test.json: required key \"hidden_size\" is missing"));
  j = release();
  j["num_experts_per_tok"] = j["n_routed_experts"].get<int>() + 1;
  EXPECT_THAT(user_error(j), HasSubstr("test.json: num_experts_per_tok = "));
  EXPECT_THAT(user_error(json::array()), HasSubstr("test.json: the config must be a JSON object, got array"));
}

TEST(ModelConfigTest, ReleaseConfigParsesEveryField) {
  const ModelConfig c = ModelConfig::from_json(release(), "release.json");
  EXPECT_EQ(c.origin, "release.json");
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_layers, 43);
  EXPECT_EQ(c.num_heads, 64);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 512);
  EXPECT_EQ(c.rope_head_dim, 64);
  EXPECT_EQ(c.q_lora_rank, 1024);
  EXPECT_EQ(c.o_groups, 8);
  EXPECT_EQ(c.o_lora_rank, 1024);
  EXPECT_EQ(c.sliding_window, 128);
  EXPECT_EQ(c.compress_ratios.size(), 44u);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.compress_rope_theta, 160000.0);
  EXPECT_TRUE(c.yarn.enabled);
  EXPECT_EQ(c.yarn.factor, 16.0);
  EXPECT_EQ(c.yarn.original_max_position_embeddings, 65536);
  EXPECT_EQ(c.yarn.beta_fast, 32.0);
  EXPECT_EQ(c.yarn.beta_slow, 1.0);
  EXPECT_EQ(c.max_position_embeddings, 1048576);
  EXPECT_EQ(c.index_n_heads, 64);
  EXPECT_EQ(c.index_head_dim, 128);
  EXPECT_EQ(c.index_topk, 512);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.num_experts_per_tok, 6);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.num_hash_layers, 3);
  EXPECT_EQ(c.scoring_func, "sqrtsoftplus");
  EXPECT_EQ(c.topk_method, "noaux_tc");
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.routed_scaling_factor, 1.5);
  EXPECT_EQ(c.swiglu_limit, 10.0);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.hc_mult, 4);
  EXPECT_EQ(c.hc_sinkhorn_iters, 20);
  EXPECT_EQ(c.hc_eps, 1e-6);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.expert_dtype, "fp4");
  EXPECT_TRUE(c.source_fp8);
  EXPECT_EQ(c.fp8_block, 128);
  EXPECT_EQ(c.scale_fmt, "ue8m0");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_EQ(c.source, release()) << "source must be the parsed document";
  // Derived sizes of reference §1.3.
  EXPECT_EQ(c.hc_mix(), 24);
  EXPECT_EQ(c.hc_dim(), 16384);
  EXPECT_EQ(c.q_dim(), 32768);
  EXPECT_EQ(c.o_group_in(), 4096);
  EXPECT_EQ(c.o_dim(), 8192);
}

TEST(ModelConfigTest, ReleaseLayerScheduleHas44Kinds) {
  const ModelConfig c = ModelConfig::from_json(release(), "release.json");
  EXPECT_EQ(count_kind(c, AttentionKind::kSliding, 0, 43), 2);
  EXPECT_EQ(count_kind(c, AttentionKind::kCsa, 0, 43), 21);
  EXPECT_EQ(count_kind(c, AttentionKind::kHca, 0, 43), 20);
  for (int l = 0; l < 44; ++l) {
    const LayerSpec s = c.layer(l);
    const AttentionKind want = (l < 2 || l == 43)       ? AttentionKind::kSliding
                               : (l == 2 || l % 2 == 0) ? AttentionKind::kCsa
                                                        : AttentionKind::kHca;
    EXPECT_EQ(s.attention, want) << "layer " << l;
    EXPECT_EQ(s.compress_ratio, want == AttentionKind::kSliding ? 0
                                : want == AttentionKind::kCsa   ? 4
                                                                : 128)
        << l;
    EXPECT_EQ(s.routing, l < 3 ? RoutingKind::kHash : RoutingKind::kLearned) << "layer " << l;
    EXPECT_EQ(s.has_indexer(), want == AttentionKind::kCsa) << l;
    EXPECT_EQ(s.has_compressor(), want != AttentionKind::kSliding) << l;
    EXPECT_EQ(s.compressor_series(), want == AttentionKind::kCsa ? 2 : 1) << l;
  }
  EXPECT_EQ(c.mtp_layer(0).attention, AttentionKind::kSliding);
  EXPECT_EQ(c.mtp_layer(0).routing, RoutingKind::kLearned);
  // MTP stages beyond num_nextn_predict_layers (counted from mtp.S. prefixes) are sliding too.
  EXPECT_EQ(c.layer(45).attention, AttentionKind::kSliding);
  EXPECT_EQ(c.layer(45).routing, RoutingKind::kLearned);
  EXPECT_THAT(error_of([&] { c.layer(-1); }), HasSubstr("layer index -1 is negative"));
}

TEST(ModelConfigTest, TransformersSpellingOfReleaseGivesSameConfig) {
  const ModelConfig r = ModelConfig::from_json(release(), "release.json");
  const ModelConfig t = ModelConfig::from_json(json::parse(kReleaseAsTransformersJson), "hf.json");
  EXPECT_TRUE(t.value_diff(r).empty()) << joined(t.value_diff(r));
  EXPECT_EQ(t.compress_ratios.size(), 44u) << "the MTP entry is added back as sliding";
  EXPECT_EQ(t.compress_ratios.back(), 0);
}

TEST(ModelConfigTest, TinyWorkingSetSameInBothSpellings) {
  const ModelConfig t = ModelConfig::from_json(json::parse(kWorkingSetTransformersJson), "hf.json");
  const ModelConfig r = ModelConfig::from_json(json::parse(kWorkingSetReleaseJson), "release.json");
  EXPECT_TRUE(t.value_diff(r).empty()) << joined(t.value_diff(r));
  EXPECT_EQ(t.rope_head_dim, 8) << "partial_rotary_factor 0.25 of head_dim 32";
  EXPECT_EQ(t.compress_ratios, (std::vector<int>{0, 4, 8, 0, 0}));
  EXPECT_EQ(t.num_hash_layers, 1);
  EXPECT_TRUE(t.yarn.enabled);
  EXPECT_EQ(t.yarn.original_max_position_embeddings, 64);
  EXPECT_EQ(t.layer(2).attention, AttentionKind::kHca);
  // Neither spelling names a quantization: an unquantized (bf16) model.
  EXPECT_FALSE(t.source_fp8);
  EXPECT_EQ(t.expert_dtype, "bf16");
  EXPECT_FALSE(t.to_release_json().contains("expert_dtype")) << "vLLM accepts only fp4/fp8 there";
  EXPECT_FALSE(t.to_release_json().contains("quantization_config"));
}

TEST(ModelConfigTest, BuiltinTinyMatchesTransformersSpelling) {
  const ModelConfig tiny = ModelConfig::tiny();
  const ModelConfig t = ModelConfig::from_json(json::parse(kTinyTransformersJson), "hf.json");
  EXPECT_TRUE(t.value_diff(tiny).empty()) << joined(t.value_diff(tiny));
  EXPECT_EQ(tiny.compress_ratios, (std::vector<int>{0, 4, 128, 4, 0}));
  EXPECT_EQ(tiny.layer(0).routing, RoutingKind::kHash);
  EXPECT_EQ(tiny.layer(1).attention, AttentionKind::kCsa);
  EXPECT_EQ(tiny.layer(2).attention, AttentionKind::kHca);
  EXPECT_EQ(tiny.layer(3).attention, AttentionKind::kCsa);
  EXPECT_EQ(tiny.mtp_layer(0).attention, AttentionKind::kSliding);
  // Every quantized linear's input dim is a multiple of the 128 block.
  for (int dim : {tiny.hidden_size, tiny.q_lora_rank, tiny.o_group_in(), tiny.o_dim(),
                  tiny.moe_intermediate_size})
    EXPECT_EQ(dim % 128, 0) << dim;
}

TEST(ModelConfigTest, FlashMatchesReleaseConfig) {
  const ModelConfig f = ModelConfig::flash(43, 256);
  const ModelConfig r = ModelConfig::from_json(release(), "release.json");
  EXPECT_TRUE(f.value_diff(r).empty()) << joined(f.value_diff(r));
  std::vector<int> want = {0, 0};
  for (int i = 0; i < 20; ++i) want.insert(want.end(), {4, 128});
  want.insert(want.end(), {4, 0});
  EXPECT_EQ(f.compress_ratios, want);
}

TEST(ModelConfigTest, FlashSmallShapes) {
  const ModelConfig a = ModelConfig::flash(5, 16);
  EXPECT_EQ(a.compress_ratios, (std::vector<int>{0, 0, 4, 128, 4, 0}));
  EXPECT_EQ(a.num_hash_layers, 3);
  EXPECT_EQ(a.num_experts_per_tok, 6);
  EXPECT_EQ(a.n_routed_experts, 16);
  const ModelConfig b = ModelConfig::flash(2, 4);
  EXPECT_EQ(b.compress_ratios, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(b.num_hash_layers, 2);
  EXPECT_EQ(b.num_experts_per_tok, 4);
}

TEST(ModelConfigTest, ReleaseJsonRoundTripsAndHasReleaseKeys) {
  for (const ModelConfig& c :
       {ModelConfig::flash(43, 256), ModelConfig::tiny(), ModelConfig::flash(3, 8)}) {
    const json j = c.to_release_json();
    const ModelConfig back = ModelConfig::from_json(j, "roundtrip.json");
    EXPECT_TRUE(back.value_diff(c).empty()) << c.origin << joined(back.value_diff(c));
    std::set<std::string> want;
    const json reference = release();
    for (const auto& [key, value] : reference.items()) want.insert(key);
    want.erase("transformers_version");  // describes the tool that wrote it; not ours to invent
    for (const auto& key : want) EXPECT_TRUE(j.contains(key)) << c.origin << " lacks " << key;
    for (const char* key :
         {"layer_types", "mlp_layer_types", "compress_rates", "rope_parameters", "dtype"})
      EXPECT_FALSE(j.contains(key)) << key;
    // transformers' strict config rejects integers in float fields.
    for (const char* key : {"swiglu_limit", "routed_scaling_factor", "hc_eps", "rms_norm_eps"})
      EXPECT_TRUE(j[key].is_number_float()) << key << " = " << j[key];
  }
  const json j = ModelConfig::flash().to_release_json();
  EXPECT_EQ(j["compress_ratios"].size(), 44u);
  EXPECT_EQ(j["quantization_config"]["weight_block_size"], json::array({128, 128}));
  EXPECT_EQ(j["architectures"], json::array({"DeepseekV4ForCausalLM"}));
  EXPECT_EQ(j["rope_scaling"]["type"], "yarn");
}

TEST(ModelConfigTest, ReleaseSourceWritesItselfBack) {
  const json src = release();
  const json out = ModelConfig::from_json(src, "release.json").to_release_json();
  // Same keys and values; integer-typed floats of the source (rope_theta 10000) stay integers.
  EXPECT_EQ(out, src) << out.dump(1);
}

TEST(ModelConfigTest, TransformersSourceWritesCleanReleaseConfig) {
  const json hf = json::parse(kReleaseAsTransformersJson);
  const ModelConfig c = ModelConfig::from_json(hf, "hf.json");
  const json out = c.to_release_json();
  for (const char* key : {"layer_types", "mlp_layer_types", "compress_rates", "rope_parameters",
                          "partial_rotary_factor", "dtype"})
    EXPECT_FALSE(out.contains(key)) << key;
  EXPECT_EQ(out["compress_ratios"], release()["compress_ratios"]);
  EXPECT_EQ(out["num_hash_layers"], 3);
  EXPECT_EQ(out["qk_rope_head_dim"], 64);
  EXPECT_EQ(out["torch_dtype"], "bfloat16");
  EXPECT_EQ(out["rope_scaling"], release()["rope_scaling"]);
  EXPECT_EQ(out["router_aux_loss_coef"], 0.001) << "other transformers keys are left alone";
  EXPECT_TRUE(ModelConfig::from_json(out, "out.json").value_diff(c).empty());
}

TEST(ModelConfigTest, UnknownKeysSurvive) {
  json src = release();
  src["dspark_num_layers"] = 3;
  src["dspark_block"] = {{"size", 16}, {"names", {"a", "b"}}};
  src["quantization_config"]["extra"] = "kept";
  const json out = ModelConfig::from_json(src, "release.json").to_release_json();
  EXPECT_EQ(out["dspark_num_layers"], 3);
  EXPECT_EQ(out["dspark_block"], src["dspark_block"]);
  EXPECT_EQ(out["quantization_config"]["extra"], "kept");
}

TEST(ModelConfigTest, MissingMtpEntriesAreSliding) {
  json src = release();
  src["compress_ratios"].erase(src["compress_ratios"].size() - 1);  // 43 entries, no MTP entry
  src["num_nextn_predict_layers"] = 2;
  const ModelConfig c = ModelConfig::from_json(src, "release.json");
  ASSERT_EQ(c.compress_ratios.size(), 45u);
  EXPECT_EQ(c.compress_ratios[43], 0);
  EXPECT_EQ(c.compress_ratios[44], 0);
  EXPECT_EQ(c.mtp_layer(1).attention, AttentionKind::kSliding);
}

TEST(ModelConfigTest, FromFileReadsAndNamesThePath) {
  const std::string dir = dsv4::testing::process_scratch_root() + "/";
  const std::string good = dir + "dsv4_config_good.json", bad = dir + "dsv4_config_bad.json";
  std::ofstream(good) << kReleaseJson;
  std::ofstream(bad) << "{\"vocab_size\": 12,";
  EXPECT_EQ(ModelConfig::from_file(good).origin, good);
  EXPECT_THAT(error_of([&] { ModelConfig::from_file(bad); }), HasSubstr(bad));
  EXPECT_THAT(error_of([&] { ModelConfig::from_file(dir + "dsv4_missing.json"); }),
              HasSubstr("dsv4_missing.json"));
  std::filesystem::remove(good);
  std::filesystem::remove(bad);
}

// --- error paths: every message names the origin and the key ------------------------------

TEST(ModelConfigErrorTest, MissingRequiredKeys) {
  for (const char* key :
       {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim",
        "q_lora_rank", "o_groups", "o_lora_rank", "sliding_window", "index_n_heads",
        "index_head_dim", "index_topk", "n_routed_experts", "num_experts_per_tok",
        "moe_intermediate_size", "hc_mult", "num_hash_layers", "qk_rope_head_dim"}) {
    json j = release();
    j.erase(key);
    const std::string msg = parse_error(j);
    EXPECT_THAT(msg, HasSubstr("test.json")) << key;
    EXPECT_THAT(msg, HasSubstr(std::string("\"") + key + "\"")) << msg;
    EXPECT_THAT(msg, HasSubstr("missing")) << msg;
  }
  json j = release();
  j.erase("compress_ratios");
  EXPECT_THAT(parse_error(j), HasSubstr("\"compress_ratios\" (release) or \"layer_types\""));
  j = release();
  j["hidden_size"] = nullptr;  // null counts as missing
  EXPECT_THAT(parse_error(j), HasSubstr("\"hidden_size\" is missing"));
}

TEST(ModelConfigErrorTest, WrongTypes) {
  const std::pair<const char*, json> cases[] = {
      {"hidden_size", "4096"},  {"vocab_size", 512.0},     {"compress_ratios", 4},
      {"swiglu_limit", "10"},   {"norm_topk_prob", 1},     {"scoring_func", 3},
      {"rope_scaling", "yarn"}, {"quantization_config", 1}};
  for (const auto& [key, value] : cases) {
    json j = release();
    j[key] = value;
    EXPECT_THAT(parse_error(j), HasSubstr(std::string("\"") + key + "\" must be")) << key;
  }
  json j = release();
  j["compress_ratios"][5] = "x";
  EXPECT_THAT(parse_error(j), HasSubstr("\"compress_ratios[5]\" must be an integer"));
  j = release();
  j["rope_scaling"]["factor"] = "16";
  EXPECT_THAT(parse_error(j), HasSubstr("\"rope_scaling.factor\" must be a number"));
  j = release();
  j["rope_scaling"].erase("original_max_position_embeddings");
  EXPECT_THAT(parse_error(j),
              HasSubstr("\"rope_scaling.original_max_position_embeddings\" is missing"));
  j = release();
  j["hidden_size"] = 1LL << 40;
  EXPECT_THAT(parse_error(j), HasSubstr("\"hidden_size\" = 1099511627776 does not fit"));
  EXPECT_THAT(parse_error(json::array({1, 2})), HasSubstr("must be a JSON object"));
}

TEST(ModelConfigErrorTest, InconsistentValues) {
  const auto with = [](const char* key, json v) {
    json j = release();
    j[key] = std::move(v);
    return parse_error(j);
  };
  EXPECT_THAT(with("o_groups", 6),
              HasSubstr("num_attention_heads = 64 is not divisible by o_groups = 6"));
  EXPECT_THAT(with("qk_rope_head_dim", 63), HasSubstr("qk_rope_head_dim = 63 must be even"));
  EXPECT_THAT(with("qk_rope_head_dim", 1024), HasSubstr("head_dim = 512"));
  EXPECT_THAT(with("index_head_dim", 32), HasSubstr("index_head_dim = 32"));
  EXPECT_THAT(with("num_experts_per_tok", 300),
              HasSubstr("num_experts_per_tok = 300 exceeds n_routed_experts = 256"));
  EXPECT_THAT(with("num_hash_layers", 44),
              HasSubstr("num_hash_layers = 44 exceeds num_hidden_layers = 43"));
  EXPECT_THAT(with("compress_ratios", json::array({0, 0, 4})),
              HasSubstr("compress_ratios has 3 entries, fewer than num_hidden_layers = 43"));
  EXPECT_THAT(with("hidden_size", 0), HasSubstr("\"hidden_size\" = 0 is out of range: expected 1 to 65536"));
  EXPECT_THAT(with("n_shared_experts", -1),
              HasSubstr("\"n_shared_experts\" = -1 is out of range: expected 0 to 64"));
  EXPECT_THAT(with("expert_dtype", "int4"), HasSubstr("expert_dtype = \"int4\""));
  EXPECT_THAT(with("scoring_func", "relu"), HasSubstr("scoring_func = \"relu\""));
  EXPECT_THAT(with("hidden_act", "gelu"), HasSubstr("hidden_act = \"gelu\""));
  EXPECT_THAT(with("model_type", "deepseek_v3"), HasSubstr("\"model_type\" = \"deepseek_v3\""));
  json j = release();
  j["compress_ratios"][7] = -4;
  EXPECT_THAT(parse_error(j), HasSubstr("\"compress_ratios\" [7] is negative"));
  j = release();
  j["quantization_config"]["fmt"] = "e5m2";
  EXPECT_THAT(parse_error(j), HasSubstr("\"quantization_config.fmt\" = \"e5m2\""));
  j = release();
  j["quantization_config"]["weight_block_size"] = {128, 64};
  EXPECT_THAT(parse_error(j),
              HasSubstr("\"quantization_config.weight_block_size\" = [128,64] is not square"));
  j = release();
  j["quantization_config"].erase("quant_method");
  EXPECT_THAT(parse_error(j), HasSubstr("\"quantization_config.quant_method\" is missing"));
  j = release();
  j["rope_scaling"]["type"] = "longrope";
  EXPECT_THAT(parse_error(j),
              HasSubstr("\"rope_scaling.rope_type\" = \"longrope\" is not supported"));
  j = release();
  j["layer_types"] = json::array();
  for (int i = 0; i < 43; ++i) j["layer_types"].push_back("sliding_attention");
  EXPECT_THAT(parse_error(j),
              HasSubstr("\"layer_types\" [2] disagrees with compress_ratios[2] = 4"));
}

// Absurd sizes (issue 26) are refused by the parser before anything is sized by them: each names
// the key, the value and the range, as a user error, at once (1e9 experts or a 2^31-1 window used
// to end in std::bad_alloc after 40 s, naming nothing).
TEST(ModelConfigErrorTest, AbsurdSizesRefusedNamingKeyValueRange) {
  struct Case {
    const char* key;
    json value;
    const char* want;
  };
  const Case cases[] = {
      {"n_routed_experts", 1000000000, "\"n_routed_experts\" = 1000000000 is out of range: expected 1 to 2048"},
      {"sliding_window", 2147483647, "\"sliding_window\" = 2147483647 is out of range: expected 1 to 1048576"},
      {"hidden_size", 1 << 24, "\"hidden_size\" = 16777216 is out of range: expected 1 to 65536"},
      {"num_hidden_layers", 1000000, "\"num_hidden_layers\" = 1000000 is out of range: expected 1 to 256"},
      {"num_nextn_predict_layers", 2147483647, "\"num_nextn_predict_layers\" = 2147483647 is out of range"},
      {"hc_mult", 16, "\"hc_mult\" = 16 is out of range: expected 1 to 8"},
      {"index_topk", 1 << 30, "\"index_topk\" = 1073741824 is out of range"},
      {"vocab_size", 2147483647, "\"vocab_size\" = 2147483647 is out of range"},
      {"max_position_embeddings", 1LL << 40, "\"max_position_embeddings\" = 1099511627776 is out of range"},
  };
  for (const Case& c : cases) {
    json j = release();
    j[c.key] = c.value;
    const auto start = std::chrono::steady_clock::now();
    try {
      ModelConfig::from_json(j, "test.json");
      ADD_FAILURE() << c.key << " = " << c.value << " was accepted";
    } catch (const Error& e) {
      EXPECT_TRUE(e.user()) << e.what();
      EXPECT_THAT(e.what(), ::testing::AllOf(HasSubstr("test.json: "), HasSubstr(c.want))) << c.key;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1)) << c.key;
  }
  json j = release();
  j["compress_ratios"][5] = 1 << 20;  // the compressor's ape would have 2^20 rows
  EXPECT_THAT(parse_error(j), HasSubstr("\"compress_ratios\"[5] = 1048576 is out of range: expected 0 to 4096"));
  // The release's own values and the tiny model's stay inside every bound.
  EXPECT_NO_THROW(ModelConfig::from_json(release(), "release.json"));
  EXPECT_NO_THROW(ModelConfig::from_json(ModelConfig::tiny().to_release_json(), "tiny.json"));
}

TEST(ModelConfigErrorTest, TransformersSpellingErrors) {
  const json base = json::parse(kTinyTransformersJson);
  json j = base;
  j["layer_types"][1] = "full_attention";
  EXPECT_THAT(parse_error(j), HasSubstr("\"layer_types\" [1] = \"full_attention\" is not one of"));
  j = base;
  j["layer_types"].erase(3);
  EXPECT_THAT(parse_error(j),
              HasSubstr("\"layer_types\" has 3 entries, fewer than num_hidden_layers = 4"));
  j = base;
  j["mlp_layer_types"] = {"moe", "hash_moe", "moe", "moe"};
  EXPECT_THAT(parse_error(j), HasSubstr("\"mlp_layer_types\" [1] = hash_moe follows a moe layer"));
  j = base;
  j["mlp_layer_types"][2] = "dense";
  EXPECT_THAT(parse_error(j), HasSubstr("\"mlp_layer_types\" [2] = \"dense\""));
  j = base;
  j["compress_rates"]["compressed_sparse_attention"] = 8;
  EXPECT_THAT(parse_error(j),
              HasSubstr("\"compress_rates\" .compressed_sparse_attention = 8, expected 4"));
  j = base;
  j["rope_parameters"]["compress"]["attention_factor"] = 1.277;
  EXPECT_THAT(parse_error(j), HasSubstr("\"rope_parameters.compress.attention_factor\""));
  j = base;
  j["qk_rope_head_dim"] = 16;  // disagrees with partial_rotary_factor 0.5 of 64
  EXPECT_THAT(parse_error(j),
              HasSubstr("\"partial_rotary_factor\" gives 32 rope dims but qk_rope_head_dim = 16"));
  j = base;
  j["num_hash_layers"] = 2;
  EXPECT_THAT(parse_error(j),
              HasSubstr("\"mlp_layer_types\" has 1 hash_moe layers but num_hash_layers = 2"));
}

}  // namespace
}  // namespace dsv4::model

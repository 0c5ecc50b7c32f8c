// config.h: ModelConfig, the DeepSeek-V4 hyper-parameters, read from either spelling of
// config.json:
//   - the release's (legacy keys `compress_ratios`, `num_hash_layers`, `qk_rope_head_dim`,
//     top-level `rope_scaling`, `expert_dtype`, `quantization_config`), and
//   - transformers 5.17's (`layer_types`, `mlp_layer_types`, `compress_rates`,
//     `rope_parameters`, `partial_rotary_factor`).
//
//   ModelConfig c = ModelConfig::from_file("/models/DeepSeek-V4-Flash/config.json");
//   for (int l = 0; l < c.num_layers; ++l) if (c.layer(l).attention == AttentionKind::kCsa) ...
//   ModelConfig t = ModelConfig::tiny();           // the built-in test model (make-model tiny)
//   ModelConfig f = ModelConfig::flash(43, 256);   // the release's shape
//   std::string j = c.to_release_json().dump(2);  // the release spelling, source keys kept
//
// Reference: ../shared/reference/dsv4_architecture.md §1. Tests: tests/model/test_config.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv4::model {

// Attention flavour of a block, from its compress ratio: 0 = sliding window only, 4 = CSA
// (overlapping compressor + lightning indexer), anything else > 0 = HCA (no indexer).
class LinearDecoder;  // model/weight_decode.h

enum class AttentionKind { kSliding, kCsa, kHca };
enum class RoutingKind { kHash, kLearned };

struct LayerSpec {
  AttentionKind attention = AttentionKind::kSliding;
  int compress_ratio = 0;  // 0, 4 or e.g. 128
  RoutingKind routing = RoutingKind::kLearned;
  bool has_compressor() const { return compress_ratio > 0; }
  bool has_indexer() const { return attention == AttentionKind::kCsa; }
  // CSA's compressor pools two overlapping series, so its projections are 2× head_dim wide.
  int compressor_series() const { return attention == AttentionKind::kCsa ? 2 : 1; }
};

struct YarnScaling {
  bool enabled = true;
  double factor = 16.0;
  int64_t original_max_position_embeddings = 65536;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

struct ModelConfig {
  int vocab_size = 129280;
  int hidden_size = 4096;
  int num_layers = 43;            // main decoder blocks (num_hidden_layers)
  int num_heads = 64;
  int num_kv_heads = 1;
  int head_dim = 512;
  int rope_head_dim = 64;         // trailing dims of each head that get RoPE
  int q_lora_rank = 1024;
  int o_groups = 8;
  int o_lora_rank = 1024;
  int sliding_window = 128;
  // One entry per main layer, then one per MTP block (the release lists 44 for 43 + 1).
  std::vector<int> compress_ratios;
  double rope_theta = 10000.0;
  double compress_rope_theta = 160000.0;
  YarnScaling yarn;               // applied on compressed (CSA/HCA) layers only
  int64_t max_position_embeddings = 1048576;
  int index_n_heads = 64;
  int index_head_dim = 128;
  int index_topk = 512;
  int n_routed_experts = 256;
  int num_experts_per_tok = 6;
  int n_shared_experts = 1;
  int moe_intermediate_size = 2048;
  int num_hash_layers = 3;
  std::string scoring_func = "sqrtsoftplus";
  std::string topk_method = "noaux_tc";
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.5;
  double swiglu_limit = 10.0;
  std::string hidden_act = "silu";
  int hc_mult = 4;
  int hc_sinkhorn_iters = 20;
  double hc_eps = 1e-6;
  double rms_norm_eps = 1e-6;
  int num_nextn_predict_layers = 1;
  // "fp4" (MXFP4 in I8), "fp8" (block FP8) or "bf16" (unquantized; the default when the source
  // has neither `expert_dtype` nor a `quantization_config`, e.g. a tiny transformers model).
  std::string expert_dtype = "fp4";
  bool source_fp8 = true;             // attention/shared linears stored FP8 e4m3 + .scale
  int fp8_block = 128;                // weight_block_size (square)
  std::string scale_fmt = "ue8m0";
  bool tie_word_embeddings = false;
  int bos_token_id = 0;
  int eos_token_id = 1;

  // The parsed source document; to_release_json() starts from it so unknown keys survive.
  nlohmann::json source = nlohmann::json::object();
  // Where the values came from (a path, or "built-in tiny"); every error message starts with it.
  std::string origin = "built-in";
  // Decoder of linears stored in a layout the release does not use (dsv4-calib's own
  // compressed-tensors artifacts: calib::checkpoint_config_load sets it). linear_load asks it
  // first; null = release layouts only. Not a hyper-parameter: value_diff and to_release_json
  // ignore it, and copies of the config share it.
  std::shared_ptr<const LinearDecoder> linear_decoder;

  static ModelConfig from_file(const std::string& path);  // errors name the path and key
  static ModelConfig from_json(const nlohmann::json& j, const std::string& origin);
  static ModelConfig tiny();
  static ModelConfig flash(int num_layers = 43, int num_experts = 256);

  nlohmann::json to_release_json() const;
  void check() const;  // throws naming the inconsistent fields

  // "field: mine vs other" for every hyper-parameter that differs (source and origin are not
  // compared); empty when both describe the same model. Tests print it on failure.
  std::vector<std::string> value_diff(const ModelConfig& other) const;

  // index >= 0; index >= num_layers is MTP block index - num_layers (any stage: the stage count
  // comes from the checkpoint's mtp.S. prefixes; stages without a compress_ratios entry are sliding).
  LayerSpec layer(int index) const;
  LayerSpec mtp_layer(int stage) const { return layer(num_layers + stage); }

  // Derived sizes (reference §1.3).
  int hc_mix() const { return (2 + hc_mult) * hc_mult; }     // 24
  int hc_dim() const { return hc_mult * hidden_size; }       // 16384
  int q_dim() const { return num_heads * head_dim; }         // 32768
  int o_group_in() const { return num_heads / o_groups * head_dim; }  // 4096
  int o_dim() const { return o_groups * o_lora_rank; }       // 8192
};

}  // namespace dsv4::model

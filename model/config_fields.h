// config_fields.h: implementation detail of ModelConfig shared by the parser (config_parse.cpp)
// and the writer/diff (config.cpp): the keys both spellings share, as one table of
// (json key, member) pairs, so parsing, writing and value_diff can never disagree on a key.
// Not part of the public API.
#pragma once

#include <string>
#include <utility>

#include "model/config.h"

namespace dsv4::model::config_fields {

constexpr const char* kSliding = "sliding_attention";
constexpr const char* kCsa = "compressed_sparse_attention";
constexpr const char* kHca = "heavily_compressed_attention";

// Keys that only the transformers spelling has; a release config never carries them.
inline constexpr const char* kTransformersOnlyKeys[] = {"layer_types",           "mlp_layer_types",
                                                 "compress_rates",        "rope_parameters",
                                                 "partial_rotary_factor", "dtype"};

// The scalar fields spelled the same way in both spellings: one table drives parsing, writing
// and value_diff. Fields with spelling-specific keys (layer schedule, rope, quantization) are
// handled by hand.
template <typename T>
using Field = std::pair<const char*, T ModelConfig::*>;
using M = ModelConfig;
// clang-format off
inline constexpr Field<int> kRequiredInts[] = {
    {"vocab_size", &M::vocab_size}, {"hidden_size", &M::hidden_size},
    {"num_hidden_layers", &M::num_layers}, {"num_attention_heads", &M::num_heads},
    {"head_dim", &M::head_dim}, {"q_lora_rank", &M::q_lora_rank}, {"o_groups", &M::o_groups},
    {"o_lora_rank", &M::o_lora_rank}, {"sliding_window", &M::sliding_window},
    {"index_n_heads", &M::index_n_heads}, {"index_head_dim", &M::index_head_dim},
    {"index_topk", &M::index_topk}, {"n_routed_experts", &M::n_routed_experts},
    {"num_experts_per_tok", &M::num_experts_per_tok},
    {"moe_intermediate_size", &M::moe_intermediate_size}, {"hc_mult", &M::hc_mult}};
inline constexpr Field<int> kOptionalInts[] = {
    {"num_key_value_heads", &M::num_kv_heads}, {"n_shared_experts", &M::n_shared_experts},
    {"hc_sinkhorn_iters", &M::hc_sinkhorn_iters}, {"bos_token_id", &M::bos_token_id},
    {"num_nextn_predict_layers", &M::num_nextn_predict_layers}};
inline constexpr Field<double> kFloats[] = {
    {"routed_scaling_factor", &M::routed_scaling_factor}, {"swiglu_limit", &M::swiglu_limit},
    {"hc_eps", &M::hc_eps}, {"rms_norm_eps", &M::rms_norm_eps}, {"rope_theta", &M::rope_theta},
    {"compress_rope_theta", &M::compress_rope_theta}};
inline constexpr Field<std::string> kStrings[] = {
    {"scoring_func", &M::scoring_func}, {"topk_method", &M::topk_method},
    {"hidden_act", &M::hidden_act}};
inline constexpr Field<bool> kBools[] = {
    {"norm_topk_prob", &M::norm_topk_prob}, {"tie_word_embeddings", &M::tie_word_embeddings}};
// clang-format on

// Throws a user error naming the key, its value and the allowed range when a size in `c` is out
// of what a DeepSeek-V4 can be (config_bounds.cpp). The parser calls it right after reading the
// scalar keys, before anything is sized by them.
void config_bounds_check(const ModelConfig& c);

}  // namespace dsv4::model::config_fields

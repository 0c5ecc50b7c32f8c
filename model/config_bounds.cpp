// config_bounds.cpp: the range of every size in config.json, checked by the parser right after
// the scalar keys are read and before anything is sized by them (issue 26). A value such as
// n_routed_experts = 1e9 or sliding_window = 2^31-1 otherwise ends, after a long wait, in
// std::bad_alloc or an int overflow naming nothing. Each limit is far beyond any DeepSeek-V4
// (the release's value is given), and tight enough that what the value sizes still fits in
// memory and in the ints it is multiplied into (q_dim, hc_dim, ...).
#include "model/config_fields.h"

#include <cstdint>

#include "common/check.h"

namespace dsv4::model::config_fields {
namespace {

struct Bound {
  const char* key;
  int64_t value, min, max;
  const char* why;  // said in the message, so the user sees the limit is not arbitrary
};

}  // namespace

void config_bounds_check(const ModelConfig& c) {
  const Bound bounds[] = {
      // The embedding and the head are vocab x hidden; token ids are int32 everywhere.
      {"vocab_size", c.vocab_size, 1, 1 << 20, "8x the release's 129280"},
      // A hidden-wide linear's Hessian is hidden^2 floats: 16 GiB at the limit.
      {"hidden_size", c.hidden_size, 1, 1 << 16, "16x the release's 4096"},
      // The layer schedule, the plan and the inventory list every layer (x every expert).
      {"num_hidden_layers", c.num_layers, 1, 256, "6x the release's 43"},
      // q_dim = heads x head_dim and the o-projection groups are ints: 1024 x 4096 fits.
      {"num_attention_heads", c.num_heads, 1, 1024, "16x the release's 64"},
      {"num_key_value_heads", c.num_kv_heads, 1, 1024, "1024 attention heads at most"},
      {"head_dim", c.head_dim, 1, 4096, "8x the release's 512"},
      {"o_groups", c.o_groups, 1, 1024, "1024 attention heads at most"},
      // Low-rank factors are no wider than the hidden size's limit; their Hessians are rank^2.
      {"q_lora_rank", c.q_lora_rank, 1, 1 << 16, "64x the release's 1024"},
      {"o_lora_rank", c.o_lora_rank, 1, 1 << 16, "64x the release's 1024"},
      // The attention gathers up to a window of keys per query; no sequence is longer than
      // max_position_embeddings, which itself sizes nothing but is kept within 16x the release.
      {"max_position_embeddings", c.max_position_embeddings, 1, 1 << 24, "16x the release's 1048576"},
      {"sliding_window", c.sliding_window, 1, c.max_position_embeddings, "at most max_position_embeddings"},
      // The indexer keeps index_topk picks per query (rows x index_topk ints on the GPU).
      {"index_topk", c.index_topk, 1, 1 << 16, "128x the release's 512"},
      {"index_n_heads", c.index_n_heads, 1, 1024, "16x the release's 64"},
      {"index_head_dim", c.index_head_dim, 1, 4096, "32x the release's 128"},
      // One Hessian and one weight per expert and linear, and inventory names per expert and layer.
      {"n_routed_experts", c.n_routed_experts, 1, 2048, "8x the release's 256"},
      {"num_experts_per_tok", c.num_experts_per_tok, 1, 2048, "2048 routed experts at most"},
      {"n_shared_experts", c.n_shared_experts, 0, 64, "the release has 1"},
      {"moe_intermediate_size", c.moe_intermediate_size, 1, 1 << 16, "32x the release's 2048"},
      // The GPU kernels hold at most 8 hyper-connection streams (model/hc_cuda.cu kMaxStreams).
      {"hc_mult", c.hc_mult, 1, 8, "the release has 4"},
      // Sinkhorn iterations run per token in every layer.
      {"hc_sinkhorn_iters", c.hc_sinkhorn_iters, 1, 1000, "50x the release's 20"},
      // Each MTP block is one more layer in the schedule and the artifact.
      {"num_nextn_predict_layers", c.num_nextn_predict_layers, 0, 16, "the release has 1"},
  };
  for (const Bound& b : bounds) {
    DSV4_USER_CHECK("config", b.min <= b.value && b.value <= b.max,
                    "%s: \"%s\" = %lld is out of range: expected %lld to %lld (%s)", c.origin.c_str(), b.key,
                    static_cast<long long>(b.value), static_cast<long long>(b.min), static_cast<long long>(b.max),
                    b.why);
  }
}

}  // namespace dsv4::model::config_fields

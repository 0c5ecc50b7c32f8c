// block_weights.h: one decoder block's weights decoded from the release checkpoint to fp32
// (FP8 block and MXFP4 linears through model/weight_decode.h; BF16 widened; F32 and I64 as they
// are, never narrowed). Routed experts are decoded lazily, one expert at a time, because a
// full-width layer's 768 expert matrices are 26 GB in fp32.
//
//   BlockWeights w = block_weights_load(ckpt, config, "layers.3.", 3);
//   ExpertWeights e = w.ffn.experts.get(17);   // decoded now (or from the cache)
//
// Shapes in comments use D = hidden, Q = q_lora_rank, H = heads, dh = head_dim, I = expert
// intermediate, E = routed experts, n = hc_mult, mix = (2 + n) n, G = o_groups, R = o_lora_rank.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "model/config.h"

namespace dsv4::model {

struct DenseLinear {
  std::string name;       // release module name, e.g. "layers.3.attn.wq_a"
  int64_t out = 0;
  int64_t in = 0;
  std::vector<float> w;   // [out, in]
};

struct HcWeights {
  std::vector<float> fn;     // [mix, n·D]  (head: [n, n·D])
  std::vector<float> base;   // [mix]       (head: [n])
  std::vector<float> scale;  // [3]         (head: [1])
};

struct CompressorWeights {
  DenseLinear wkv;           // [series·dim, D]
  DenseLinear wgate;         // [series·dim, D]
  std::vector<float> ape;    // [ratio, series·dim]
  std::vector<float> norm;   // [dim]
  int ratio = 0;
  int series = 1;            // 2 for CSA (overlapping windows), 1 for HCA
  int64_t dim = 0;           // head_dim (main) or index_head_dim (indexer)
};

struct IndexerWeights {
  DenseLinear wq_b;          // [IH·Id, Q]
  DenseLinear weights_proj;  // [IH, D]
  CompressorWeights compressor;
};

struct AttentionWeights {
  DenseLinear wq_a;                  // [Q, D]
  std::vector<float> q_norm;         // [Q]
  DenseLinear wq_b;                  // [H·dh, Q]
  DenseLinear wkv;                   // [dh, D]
  std::vector<float> kv_norm;        // [dh]
  DenseLinear wo_a;                  // [G·R, H/G·dh]
  DenseLinear wo_b;                  // [D, G·R]
  std::vector<float> sink;           // [H]
  std::optional<CompressorWeights> compressor;  // CSA and HCA layers
  std::optional<IndexerWeights> indexer;        // CSA layers
};

struct ExpertWeights {
  DenseLinear w1, w3, w2;  // [I, D], [I, D], [D, I]
};

// Decodes routed experts on demand; caches them when the whole set is small (tiny models).
class ExpertSource {
 public:
  ExpertSource() = default;
  ExpertSource(ExpertSource&& other) noexcept;
  ExpertSource& operator=(ExpertSource&& other) noexcept;
  // Decodes experts of the block at `block_prefix` ("layers.3.") from the checkpoint, which must
  // outlive this source.
  ExpertSource(const Checkpoint* checkpoint, const ModelConfig& config, const std::string& block_prefix);
  // Experts given in memory (unit tests, or weights produced by a solver).
  static ExpertSource from_memory(std::vector<ExpertWeights> experts);
  std::shared_ptr<const ExpertWeights> get(int expert) const;
  int count() const { return count_; }

 private:
  const Checkpoint* checkpoint_ = nullptr;  // must outlive this source
  std::string prefix_;                       // "layers.3.ffn.experts."
  int64_t hidden_ = 0, inter_ = 0, fp8_block_ = 128;
  std::shared_ptr<const LinearDecoder> linear_decoder_;  // ModelConfig::linear_decoder
  int count_ = 0;
  bool cache_all_ = false;
  mutable std::mutex mutex_;
  mutable std::vector<std::shared_ptr<const ExpertWeights>> cache_;
};

struct MoeWeights {
  DenseLinear gate;                 // [E, D] router
  std::vector<float> bias;          // [E] (learned routing), empty on hash layers
  std::vector<int64_t> tid2eid;     // [vocab, top-k] (hash layers), empty otherwise
  std::optional<ExpertWeights> shared;  // n_shared_experts == 1
  ExpertSource experts;
};

struct BlockWeights {
  std::string prefix;         // "layers.3." or "mtp.0."
  int layer = 0;              // index in the compress_ratios schedule (MTP: num_layers + stage)
  LayerSpec spec;
  std::vector<float> attn_norm, ffn_norm;  // [D]
  HcWeights hc_attn, hc_ffn;
  AttentionWeights attn;
  MoeWeights ffn;
};

// Loads everything of one block; errors name the missing or mis-shaped tensor. With
// decode_linears false the linears keep only their name and shape (empty w): the GPU decodes
// them itself (model/forward_cuda.h block_weights_decode_cuda); everything else loads as usual.
BlockWeights block_weights_load(const Checkpoint& checkpoint, const ModelConfig& config,
                                const std::string& prefix, int layer, bool decode_linears = true);

// Helpers shared with the model-level loader (embed, head, HC head, MTP projections).
// linear_load asks config.linear_decoder first (artifact layouts), then decodes the release
// layouts: FP8/MXFP4 `.weight` + `.scale`, else a plain F32/BF16/F16 `.weight`.
std::vector<float> weight_load_f32(const Checkpoint& checkpoint, const std::string& name,
                                   const std::vector<int64_t>& expected_shape);
DenseLinear linear_load(const Checkpoint& checkpoint, const ModelConfig& config,
                        const std::string& module, int64_t out, int64_t in);

}  // namespace dsv4::model

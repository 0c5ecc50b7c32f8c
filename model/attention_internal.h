// attention_internal.h: helpers shared by attention.cpp, attention_compressor.cpp and
// attention_indexer.cpp (not part of the model API; tests may use them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/block_weights.h"
#include "model/config.h"
#include "model/forward_context.h"
#include "model/rope.h"

namespace dsv4::model {

// The linears fed by x_attn and by qr (reference §3.7) as tap module lists, `prefix` + leaf: what
// both forwards (CPU and GPU) announce with those activations.
std::vector<std::string> attention_input_modules(const std::string& prefix, bool compressor, bool indexer);
std::vector<std::string> attention_qr_modules(const std::string& prefix, bool indexer);

// Number of compressed entries query t may use: windows that ended at or before t,
// i.e. w < floor((t + 1) / ratio), capped at the entries that exist.
inline int64_t compressed_visible(int64_t t, int ratio, int64_t entries) {
  const int64_t v = (t + 1) / ratio;
  return v < entries ? v : entries;
}

// The lightning indexer of a CSA layer (§3.2 step 5): for every query t the ascending list of
// compressed entries it attends to: the top min(index_topk, W) visible entries by
// Σ_h ω·ReLU(qI·kI), or all visible entries when there are no more than that.
//   qr: [T, Q] (the q_norm output, also consumed by wq_b); x_attn: [T, D].
// Tied scores resolve as torch.topk does on the CPU (same libstdc++ selection algorithm), so the
// picks match the transformers oracle even where ReLU makes several scores exactly 0.
std::vector<std::vector<int32_t>> indexer_select(const IndexerWeights& w, const ModelConfig& config,
                                                 const RopeTable& rope, const float* x_attn,
                                                 const float* qr, int64_t tokens,
                                                 const ForwardContext& ctx);

// The selection step of indexer_select from scores [T, W] (−inf where not visible): the top
// min(index_topk, W) per query, invisible picks dropped, ascending. Shared with the GPU forward,
// which computes the scores on the device and selects here (torch.topk's tie order).
std::vector<std::vector<int32_t>> indexer_pick(const float* scores, int64_t tokens, int64_t W, int ratio,
                                               int index_topk);

// The raw indexer scores [T, W] (−inf where the entry is not visible), for tests.
std::vector<float> indexer_scores(const IndexerWeights& w, const ModelConfig& config,
                                  const RopeTable& rope, const float* x_attn, const float* qr,
                                  int64_t tokens, const ForwardContext& ctx);

}  // namespace dsv4::model

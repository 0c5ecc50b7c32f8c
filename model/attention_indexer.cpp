// attention_indexer.cpp: the lightning indexer of CSA layers (reference §3.2 step 5). It scores
// every visible compressed entry for every query, score[t, w] = Σ_h ω[t,h] · ReLU(qI[t,h] · kI_w),
// and keeps the top index_topk; the core attention then uses only those entries.
//
// No QAT simulation (Hadamard + FP4 round-trip of qI and kI, §3.6): like transformers, the
// Hadamard alone is a no-op for the dot product.
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "common/check.h"
#include "model/attention.h"
#include "model/attention_internal.h"
#include "model/ops.h"

namespace dsv4::model {
namespace {

// Queries scored per GEMM: bounds the [chunk·IH, W] score buffer (W = T/4 can reach thousands).
constexpr int64_t kIndexerChunkTokens = 64;

}  // namespace

std::vector<float> indexer_scores(const IndexerWeights& w, const ModelConfig& config,
                                  const RopeTable& rope, const float* x_attn, const float* qr,
                                  int64_t tokens, const ForwardContext& ctx) {
  const int64_t IH = config.index_n_heads;
  const int64_t Id = config.index_head_dim;
  const int64_t Q = config.q_lora_rank;
  const int64_t D = config.hidden_size;
  const int ratio = w.compressor.ratio;
  DSV4_CHECK_IN("attention", w.wq_b.out == IH * Id && w.wq_b.in == Q,
                "%s: [%lld, %lld], expected [%lld, %lld]", w.wq_b.name.c_str(),
                static_cast<long long>(w.wq_b.out), static_cast<long long>(w.wq_b.in),
                static_cast<long long>(IH * Id), static_cast<long long>(Q));
  DSV4_CHECK_IN("attention", w.weights_proj.out == IH && w.weights_proj.in == D,
                "%s: [%lld, %lld], expected [%lld, %lld]", w.weights_proj.name.c_str(),
                static_cast<long long>(w.weights_proj.out), static_cast<long long>(w.weights_proj.in),
                static_cast<long long>(IH), static_cast<long long>(D));
  DSV4_CHECK_IN("attention", w.compressor.dim == Id && ratio > 0,
                "%s: indexer compressor dim %lld (index_head_dim %lld), ratio %d",
                w.compressor.wkv.name.c_str(), static_cast<long long>(w.compressor.dim),
                static_cast<long long>(Id), ratio);

  // Keys: a second compressor at index_head_dim over the same windows.
  const std::vector<float> keys =
      compressor_forward(w.compressor, config, rope, x_attn, tokens, ctx);  // [W, Id]
  const int64_t W = static_cast<int64_t>(keys.size()) / Id;

  // Queries: qI = qr · wq_bᵀ per head, RoPE at the token position (no per-head norm here).
  std::vector<float> q(static_cast<size_t>(tokens * IH * Id));  // [T, IH, Id]
  linear_forward(qr, tokens, Q, w.wq_b.w.data(), IH * Id, q.data());
  if (ctx.bf16()) bf16_round(q.data(), q.size());
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < IH; ++h) rope_apply(q.data() + (t * IH + h) * Id, Id, rope, t, false);
  }
  if (ctx.bf16()) bf16_round(q.data(), q.size());

  // Head weights ω = weights_proj(x) · IH^-0.5 (the Id^-0.5 goes on the ReLU'd dot below).
  std::vector<float> omega(static_cast<size_t>(tokens * IH));  // [T, IH]
  linear_forward(x_attn, tokens, D, w.weights_proj.w.data(), IH, omega.data());
  if (ctx.bf16()) bf16_round(omega.data(), omega.size());
  // transformers (DeepseekV4IndexerScorer): relu(q·k) * index_head_dim**-0.5, times
  // weights_proj(x) * index_n_heads**-0.5, summed over heads — scales applied in that order.
  const float softmax_scale = static_cast<float>(std::pow(static_cast<double>(Id), -0.5));
  const float weights_scale = static_cast<float>(std::pow(static_cast<double>(IH), -0.5));
  for (float& o : omega) o *= weights_scale;

  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<float> scores(static_cast<size_t>(tokens * W), neg_inf);  // [T, W]
  if (W == 0) return scores;
  std::vector<float> dots(static_cast<size_t>(kIndexerChunkTokens * IH * W));  // [chunk·IH, W]
  for (int64_t t0 = 0; t0 < tokens; t0 += kIndexerChunkTokens) {
    const int64_t n = std::min(kIndexerChunkTokens, tokens - t0);
    linear_forward(q.data() + t0 * IH * Id, n * IH, Id, keys.data(), W, dots.data());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = t0 + i;
      const int64_t visible = compressed_visible(t, ratio, W);
      for (int64_t e = 0; e < visible; ++e) {
        float s = 0.0f;
        for (int64_t h = 0; h < IH; ++h) {
          const float dot = dots[(i * IH + h) * W + e];
          s += (std::max(dot, 0.0f) * softmax_scale) * omega[t * IH + h];
        }
        scores[t * W + e] = s;
      }
    }
  }
  return scores;
}

std::vector<std::vector<int32_t>> indexer_select(const IndexerWeights& w, const ModelConfig& config,
                                                 const RopeTable& rope, const float* x_attn,
                                                 const float* qr, int64_t tokens,
                                                 const ForwardContext& ctx) {
  const std::vector<float> scores = indexer_scores(w, config, rope, x_attn, qr, tokens, ctx);
  return indexer_pick(scores.data(), tokens, tokens / w.compressor.ratio, w.compressor.ratio, config.index_topk);
}

std::vector<std::vector<int32_t>> indexer_pick(const float* scores, int64_t tokens, int64_t W, int ratio,
                                               int index_topk) {
  DSV4_CHECK_IN("attention", index_topk > 0, "index_topk %d", index_topk);
  // transformers: top_k = min(index_topk, W) over all W entries with invisible ones at −inf,
  // then picks that are not visible are dropped. The selection mirrors torch.topk on the CPU
  // (aten/src/ATen/native/TopKImpl.h: (value, index) pairs in double, std::partial_sort when
  // k·64 ≤ W, else std::nth_element) so that tied scores — frequent when few index heads all
  // ReLU to exactly 0 — resolve to the same entries as the transformers oracle (libstdc++).
  const int64_t top_k = std::min<int64_t>(index_topk, W);
  std::vector<std::vector<int32_t>> selected(static_cast<size_t>(tokens));
  if (top_k == 0) return selected;
  using Scored = std::pair<double, int64_t>;
  const auto larger = [](const Scored& a, const Scored& b) { return a.first > b.first; };
  std::vector<Scored> queue(static_cast<size_t>(W));
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t visible = compressed_visible(t, ratio, W);
    for (int64_t e = 0; e < W; ++e) queue[e] = {scores[t * W + e], e};  // −inf where invisible
    if (top_k * 64 <= W) {
      std::partial_sort(queue.begin(), queue.begin() + top_k, queue.end(), larger);
    } else {
      std::nth_element(queue.begin(), queue.begin() + top_k - 1, queue.end(), larger);
    }
    auto& out = selected[t];
    for (int64_t j = 0; j < top_k; ++j) {
      if (queue[j].second < visible) out.push_back(static_cast<int32_t>(queue[j].second));
    }
    std::sort(out.begin(), out.end());
  }
  return selected;
}

}  // namespace dsv4::model

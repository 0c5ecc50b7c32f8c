// hc.h: manifold-constrained hyper-connections (reference §3.1), fp32 in every numeric mode.
// The residual state X is [T, n, D] (n = hc_mult streams).
//
//   HcMix mix;
//   hc_pre(w.hc_attn, config, X, T, y, mix);      // y [T, D] = Σ_j pre_j X[j]; mix keeps post, C
//   ... f = sublayer(RMSNorm(y)) ...
//   hc_post(config, f, X, mix, T, X_next);        // X'[k] = post_k f + Σ_j C[j][k] X[j]
//   hc_head(head_fn, head_base, head_scale, config, X, T, y);   // final collapse, no Sinkhorn
//
// Tests: tests/model/test_hc.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "model/block_weights.h"
#include "model/config.h"

namespace dsv4::model {

struct HcMix {
  std::vector<float> post;  // [T, n]
  std::vector<float> comb;  // [T, n, n]: C[j][k] after Sinkhorn (row j = source stream)
};

void hc_pre(const HcWeights& w, const ModelConfig& config, const float* state, int64_t tokens,
            float* y, HcMix& mix);
void hc_post(const ModelConfig& config, const float* f, const float* state, const HcMix& mix,
             int64_t tokens, float* next_state);
void hc_head(const HcWeights& w, const ModelConfig& config, const float* state, int64_t tokens,
             float* y);

}  // namespace dsv4::model

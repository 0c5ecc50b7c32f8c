// moe.cpp: the MoE sub-layer of a DeepSeek-V4 block (reference §3.3), CPU reference. Defines
// moe_route (router logits, sqrt-softplus scores, hash or learned top-k selection, normalised
// weights) and moe_forward (routed experts on their gathered rows, shared expert, taps).
//
// Oracle: transformers 5.17.0 modeling_deepseek_v4.py, DeepseekV4TopKRouter (lines 1035-1042),
// DeepseekV4HashRouter (1064-1073), DeepseekV4Experts (997-1022), DeepseekV4MLP (977-981),
// DeepseekV4SparseMoeBlock (1084-1093). Where §3.3 and transformers differ in fp32 the code
// follows transformers and says so in a NOTE with the line.
//
// Numerics: the router is fp32 in every mode. kBf16 rounds at the reference's storage points
// (§3.4): gate/up GEMM outputs, the w2 input (routing weight folded into h first, like the
// reference), each expert's w2 output, the shared expert's w2 output and the block output.
// kFp32 rounds nothing. Every GEMM goes through linear_forward_row_stable, so a token's output
// does not depend on which other tokens share its experts (bit for bit on most BLAS kernels,
// to a few ulp on OpenBLAS's Haswell/Zen ones: model/ops.h).
//
// Tests: tests/model/test_moe.cpp (build/hb/tests/test_model --gtest_filter='*Moe*:*Router*').
//
// Legend: T = tokens, D = hidden, E = routed experts, k = experts per token, I = expert
// intermediate, n_e = rows routed to expert e.
#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "common/check.h"
#include "model/ops.h"

namespace dsv4::model {
namespace {

void expert_check(const ExpertWeights& e, int64_t hidden, int64_t inter, const std::string& what) {
  DSV4_CHECK_IN("moe",
                e.w1.in == hidden && e.w3.in == hidden && e.w1.out == inter && e.w3.out == inter &&
                    e.w2.out == hidden && e.w2.in == inter,
                "%s: w1 [%lld, %lld], w3 [%lld, %lld], w2 [%lld, %lld]; expected [I, D], [I, D], "
                "[D, I] with D = %lld, I = %lld",
                what.c_str(), static_cast<long long>(e.w1.out), static_cast<long long>(e.w1.in),
                static_cast<long long>(e.w3.out), static_cast<long long>(e.w3.in),
                static_cast<long long>(e.w2.out), static_cast<long long>(e.w2.in),
                static_cast<long long>(hidden), static_cast<long long>(inter));
  const size_t size = static_cast<size_t>(inter * hidden);
  DSV4_CHECK_IN("moe", e.w1.w.size() == size && e.w3.w.size() == size && e.w2.w.size() == size,
                "%s: weight buffers hold %zu/%zu/%zu values, expected %zu each", what.c_str(),
                e.w1.w.size(), e.w3.w.size(), e.w2.w.size(), size);
}

// h[rows, I] of one expert on x[rows, D]: gate/up GEMMs, the bf16 GEMM-output rounding of the
// reference (bf16 mode only), then the clamped SwiGLU in fp32.
std::vector<float> expert_hidden(const ExpertWeights& e, const float* x, int64_t rows,
                                 int64_t hidden, float limit, bool bf16) {
  const int64_t inter = e.w1.out;
  std::vector<float> g(static_cast<size_t>(rows * inter));  // [rows, I] -> h in place
  std::vector<float> u(static_cast<size_t>(rows * inter));  // [rows, I]
  linear_forward_row_stable(x, rows, hidden, e.w1.w.data(), inter, g.data());
  linear_forward_row_stable(x, rows, hidden, e.w3.w.data(), inter, u.data());
  if (bf16) {
    bf16_round(g.data(), g.size());
    bf16_round(u.data(), u.size());
  }
  swiglu_clamped(g.data(), u.data(), g.size(), limit);
  return g;
}

// The rows routed to one expert, in token order (a token listing the expert twice, which hash
// tables allow, appears twice and is counted twice, as in transformers' one_hot mask).
struct ExpertRows {
  std::vector<int64_t> rows;   // [n_e] position in the layer input
  std::vector<float> weights;  // [n_e] routing weight of that (token, slot)
};

std::vector<ExpertRows> moe_group_by_expert(const Routing& routing, int64_t tokens, int top_k,
                                            int num_experts) {
  std::vector<ExpertRows> groups(static_cast<size_t>(num_experts));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int j = 0; j < top_k; ++j) {
      const size_t slot = static_cast<size_t>(t * top_k + j);
      ExpertRows& g = groups[static_cast<size_t>(routing.experts[slot])];
      g.rows.push_back(t);
      g.weights.push_back(routing.weights[slot]);
    }
  }
  return groups;
}


std::string expert_module(const ForwardContext& ctx, int expert, const char* linear) {
  return ctx.prefix + "ffn.experts." + std::to_string(expert) + "." + linear;
}

}  // namespace

Routing moe_route(const MoeWeights& w, const ModelConfig& config, const LayerSpec& spec,
                  const float* x_ffn, const int64_t* token_ids, int64_t tokens) {
  const int64_t hidden = config.hidden_size;
  const int num_experts = config.n_routed_experts;
  const int top_k = config.num_experts_per_tok;
  DSV4_CHECK_IN("moe", tokens >= 0 && (tokens == 0 || x_ffn != nullptr), "%lld tokens, x_ffn %p",
                static_cast<long long>(tokens), static_cast<const void*>(x_ffn));
  DSV4_CHECK_IN("moe", top_k >= 1 && top_k <= num_experts, "top-k %d of %d experts", top_k,
                num_experts);
  DSV4_CHECK_IN("moe", config.scoring_func == "sqrtsoftplus",
                "scoring_func '%s' (only sqrtsoftplus is implemented)",
                config.scoring_func.c_str());
  DSV4_CHECK_IN("moe",
                w.gate.out == num_experts && w.gate.in == hidden &&
                    w.gate.w.size() == static_cast<size_t>(num_experts * hidden),
                "router %s is [%lld, %lld] with %zu values, expected [%d, %lld]",
                w.gate.name.c_str(), static_cast<long long>(w.gate.out),
                static_cast<long long>(w.gate.in), w.gate.w.size(), num_experts,
                static_cast<long long>(hidden));

  Routing routing;
  routing.experts.resize(static_cast<size_t>(tokens * top_k));
  routing.weights.resize(static_cast<size_t>(tokens * top_k));
  if (tokens == 0) return routing;

  // Router logits and scores in fp32 in every mode (§3.4: the reference's router GEMM is fp32).
  std::vector<float> scores(static_cast<size_t>(tokens * num_experts));  // [T, E]
  linear_forward_row_stable(x_ffn, tokens, hidden, w.gate.w.data(), num_experts, scores.data());
  for (float& s : scores) s = std::sqrt(softplus(s));

  if (spec.routing == RoutingKind::kHash) {
    // Selection is a fixed table lookup; the learned scores still give the mixing weights.
    DSV4_CHECK_IN("moe", token_ids != nullptr, "hash routing needs the token ids");
    DSV4_CHECK_IN("moe", !w.tid2eid.empty() && w.tid2eid.size() % static_cast<size_t>(top_k) == 0,
                  "tid2eid has %zu values, not a [vocab, %d] table", w.tid2eid.size(), top_k);
    const int64_t vocab = static_cast<int64_t>(w.tid2eid.size()) / top_k;
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t id = token_ids[t];
      DSV4_CHECK_IN("moe", id >= 0 && id < vocab,
                    "token %lld has id %lld outside tid2eid [%lld, %d]", static_cast<long long>(t),
                    static_cast<long long>(id), static_cast<long long>(vocab), top_k);
      for (int j = 0; j < top_k; ++j) {
        const int64_t e = w.tid2eid[static_cast<size_t>(id * top_k + j)];
        DSV4_CHECK_IN("moe", e >= 0 && e < num_experts,
                      "tid2eid[%lld][%d] = %lld is not an expert id", static_cast<long long>(id), j,
                      static_cast<long long>(e));
        routing.experts[static_cast<size_t>(t * top_k + j)] = static_cast<int32_t>(e);
      }
    }
  } else {
    // The bias (e_score_correction_bias) only steers the selection (§3.3 step 2).
    DSV4_CHECK_IN("moe", w.bias.size() == static_cast<size_t>(num_experts),
                  "learned routing needs a router bias of %d values, got %zu", num_experts,
                  w.bias.size());
    std::vector<int> order(static_cast<size_t>(num_experts));
    std::vector<float> biased(static_cast<size_t>(num_experts));
    for (int64_t t = 0; t < tokens; ++t) {
      const float* s = scores.data() + t * num_experts;
      for (int e = 0; e < num_experts; ++e)
        biased[static_cast<size_t>(e)] = s[e] + w.bias[static_cast<size_t>(e)];
      std::iota(order.begin(), order.end(), 0);
      // Ties go to the lower expert id so the reference is deterministic. NOTE: transformers
      // calls topk(sorted=False) (line 1039): its slot order is unspecified, and only the set
      // matters for the output.
      std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int a, int b) {
        const float va = biased[static_cast<size_t>(a)], vb = biased[static_cast<size_t>(b)];
        return va > vb || (va == vb && a < b);
      });
      for (int j = 0; j < top_k; ++j)
        routing.experts[static_cast<size_t>(t * top_k + j)] = order[static_cast<size_t>(j)];
    }
  }

  // w_j = s[idx_j] / (Σ s[idx] + 1e-20) · routed_scaling_factor, from the *unbiased* scores.
  // NOTE: transformers adds 1e-20 to the sum (lines 1041 and 1072) and always renormalises,
  // ignoring norm_topk_prob; §3.3 step 3 has no epsilon. Both are fp32 here (1e-20 is a normal
  // float, so it changes nothing unless every selected score is 0).
  const float scaling = static_cast<float>(config.routed_scaling_factor);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* s = scores.data() + t * num_experts;
    float sum = 0.0f;
    for (int j = 0; j < top_k; ++j) sum += s[routing.experts[static_cast<size_t>(t * top_k + j)]];
    const float denom = sum + 1e-20f;
    for (int j = 0; j < top_k; ++j) {
      const size_t slot = static_cast<size_t>(t * top_k + j);
      routing.weights[slot] = s[routing.experts[slot]] / denom * scaling;
    }
  }
  return routing;
}

void moe_forward(const MoeWeights& w, const ModelConfig& config, const LayerSpec& spec,
                 const float* x_ffn, const int64_t* token_ids, int64_t tokens, float* out,
                 const ForwardContext& ctx) {
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.moe_intermediate_size;
  const int num_experts = config.n_routed_experts;
  const int top_k = config.num_experts_per_tok;
  const float limit = static_cast<float>(config.swiglu_limit);
  const bool bf16 = ctx.bf16();
  TapSink* taps = ctx.taps;
  DSV4_CHECK_IN("moe", tokens == 0 || out != nullptr, "null output for %lld tokens",
                static_cast<long long>(tokens));
  DSV4_CHECK_IN("moe", w.experts.count() == num_experts, "%d routed experts loaded, config has %d",
                w.experts.count(), num_experts);
  DSV4_CHECK_IN("moe", w.shared.has_value() == (config.n_shared_experts == 1),
                "shared expert %s but n_shared_experts = %d", w.shared ? "present" : "absent",
                config.n_shared_experts);

  const Routing routing = moe_route(w, config, spec, x_ffn, token_ids, tokens);
  if (tokens == 0) {
    if (taps) {
      for (int e = 0; e < num_experts; ++e) taps->on_expert_tokens(ctx.prefix, e, 0);
    }
    return;
  }

  // Shared expert: every token, no routing weight.
  std::vector<float> shared_out;  // [T, D], empty without a shared expert
  if (w.shared) {
    expert_check(*w.shared, hidden, inter, ctx.module("ffn.shared_experts"));
    std::vector<float> h = expert_hidden(*w.shared, x_ffn, tokens, hidden, limit, bf16);
    if (bf16) bf16_round(h.data(), h.size());
    if (taps) {
      taps->on_tap({.modules = {ctx.module("ffn.shared_experts.w1"), ctx.module("ffn.shared_experts.w3")},
                    .x = x_ffn, .rows = tokens, .cols = hidden});
      taps->on_tap({.modules = {ctx.module("ffn.shared_experts.w2")}, .x = h.data(), .rows = tokens, .cols = inter});
    }
    shared_out.resize(static_cast<size_t>(tokens * hidden));
    linear_forward_row_stable(h.data(), tokens, inter, w.shared->w2.w.data(), hidden,
                              shared_out.data());
    if (bf16) bf16_round(shared_out.data(), shared_out.size());
  }

  // Routed experts, in ascending expert order like transformers' loop (line 1004), accumulated
  // in fp32 (§3.3 step 6).
  std::vector<float> routed(static_cast<size_t>(tokens * hidden), 0.0f);  // [T, D]
  const std::vector<ExpertRows> groups = moe_group_by_expert(routing, tokens, top_k, num_experts);
  // All-experts mode only changes what the taps see, so without a sink it costs nothing.
  const bool all_rows_taps = taps != nullptr && ctx.all_experts;
  std::vector<float> dense_weights;  // [T] routing weight of every row for one expert
  for (int e = 0; e < num_experts; ++e) {
    const ExpertRows& group = groups[static_cast<size_t>(e)];
    const int64_t count = static_cast<int64_t>(group.rows.size());
    if (count == 0 && !all_rows_taps) {
      if (taps) taps->on_expert_tokens(ctx.prefix, e, 0);
      continue;
    }
    const std::shared_ptr<const ExpertWeights> expert = w.experts.get(e);
    DSV4_CHECK_IN("moe", expert != nullptr, "expert %d of %s is missing", e, ctx.prefix.c_str());
    expert_check(*expert, hidden, inter, expert_module(ctx, e, "*"));

    if (all_rows_taps) {
      // Every token through this expert, for the taps only. The output below still comes from
      // the gathered routed rows, so both modes give bit-identical block outputs.
      std::vector<float> h_all = expert_hidden(*expert, x_ffn, tokens, hidden, limit, bf16);
      if (bf16) bf16_round(h_all.data(), h_all.size());
      dense_weights.assign(static_cast<size_t>(tokens), 0.0f);
      // A token that lists the expert twice contributes with both weights.
      for (int64_t i = 0; i < count; ++i) {
        dense_weights[static_cast<size_t>(group.rows[static_cast<size_t>(i)])] +=
            group.weights[static_cast<size_t>(i)];
      }
      taps->on_tap({.modules = {expert_module(ctx, e, "w1"), expert_module(ctx, e, "w3")}, .x = x_ffn,
                    .rows = tokens, .cols = hidden, .expert = e});
      taps->on_tap({.modules = {expert_module(ctx, e, "w2")}, .x = h_all.data(), .rows = tokens, .cols = inter,
                    .expert = e, .row_weights = dense_weights.data()});
    }
    if (count > 0) {
      std::vector<float> xe(static_cast<size_t>(count * hidden));  // [n_e, D] gathered rows
      for (int64_t i = 0; i < count; ++i) {
        const float* src = x_ffn + group.rows[static_cast<size_t>(i)] * hidden;
        std::copy(src, src + hidden, xe.data() + i * hidden);
      }
      std::vector<float> h = expert_hidden(*expert, xe.data(), count, hidden, limit, bf16);
      // bf16 mode: the reference folds the routing weight into h and rounds that to bf16 before
      // w2 (§3.4); the tap gets the unweighted h, rounded, with the weights alongside.
      std::vector<float> h_tap;  // [n_e, I] bf16-rounded copy of h (bf16 mode only)
      if (bf16) {
        h_tap = h;
        bf16_round(h_tap.data(), h_tap.size());
      }
      if (taps && !all_rows_taps) {
        taps->on_tap({.modules = {expert_module(ctx, e, "w1"), expert_module(ctx, e, "w3")}, .x = xe.data(),
                      .rows = count, .cols = hidden, .expert = e, .token_rows = group.rows.data()});
        taps->on_tap({.modules = {expert_module(ctx, e, "w2")}, .x = bf16 ? h_tap.data() : h.data(), .rows = count,
                      .cols = inter, .expert = e, .token_rows = group.rows.data(),
                      .row_weights = group.weights.data()});
      }
      if (bf16) {
        for (int64_t i = 0; i < count; ++i) {
          const float wt = group.weights[static_cast<size_t>(i)];
          for (int64_t c = 0; c < inter; ++c) h[static_cast<size_t>(i * inter + c)] *= wt;
        }
        bf16_round(h.data(), h.size());
      }
      std::vector<float> y(static_cast<size_t>(count * hidden));  // [n_e, D]
      linear_forward_row_stable(h.data(), count, inter, expert->w2.w.data(), hidden, y.data());
      if (bf16) bf16_round(y.data(), y.size());
      for (int64_t i = 0; i < count; ++i) {
        // NOTE: fp32 follows transformers (line 1010): the weight multiplies the w2 output,
        // not h; the same math as §3.3's w2·(w·h). bf16 mode already folded it into h.
        const float wt = bf16 ? 1.0f : group.weights[static_cast<size_t>(i)];
        float* dst = routed.data() + group.rows[static_cast<size_t>(i)] * hidden;
        const float* src = y.data() + i * hidden;
        for (int64_t d = 0; d < hidden; ++d) dst[d] += src[d] * wt;
      }
    }
    if (taps) taps->on_expert_tokens(ctx.prefix, e, count);
  }

  // out = routed + shared (transformers line 1093 adds them in this order).
  for (size_t i = 0; i < routed.size(); ++i) {
    out[i] = shared_out.empty() ? routed[i] : routed[i] + shared_out[i];
  }
  if (bf16) bf16_round(out, routed.size());
}

}  // namespace dsv4::model

// attention.cpp: attention_forward, the attention sub-layer of one DeepSeek-V4 block (reference
// §3.2): low-rank q with a per-head unweighted norm, shared K=V (MQA), partial interleaved RoPE,
// sliding window plus compressed entries (HCA: all visible; CSA: the indexer's picks), attention
// sink, inverse RoPE on the output and the grouped wo_a → wo_b projection. CPU reference: every
// projection and both attention products go through BLAS (linear_forward).
#include "model/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/check.h"
#include "model/attention_internal.h"
#include "model/ops.h"

namespace dsv4::model {
namespace {

void check_linear(const DenseLinear& l, int64_t out, int64_t in, const char* what) {
  DSV4_CHECK_IN("attention", l.out == out && l.in == in &&
                                 static_cast<int64_t>(l.w.size()) == out * in,
                "%s (%s): [%lld, %lld] with %zu values, expected [%lld, %lld]", l.name.c_str(),
                what, static_cast<long long>(l.out), static_cast<long long>(l.in), l.w.size(),
                static_cast<long long>(out), static_cast<long long>(in));
}

void check_weights(const AttentionWeights& w, const ModelConfig& c, const LayerSpec& spec) {
  const int64_t D = c.hidden_size, Q = c.q_lora_rank, H = c.num_heads, dh = c.head_dim;
  DSV4_CHECK_IN("attention", c.o_groups > 0 && H % c.o_groups == 0,
                "%s: %lld heads not divisible into %d groups", c.origin.c_str(),
                static_cast<long long>(H), c.o_groups);
  DSV4_CHECK_IN("attention", c.rope_head_dim <= dh && c.sliding_window > 0,
                "%s: rope_head_dim %d, head_dim %lld, sliding_window %d", c.origin.c_str(),
                c.rope_head_dim, static_cast<long long>(dh), c.sliding_window);
  check_linear(w.wq_a, Q, D, "wq_a");
  check_linear(w.wq_b, H * dh, Q, "wq_b");
  check_linear(w.wkv, dh, D, "wkv");
  check_linear(w.wo_a, static_cast<int64_t>(c.o_groups) * c.o_lora_rank, c.o_group_in(), "wo_a");
  check_linear(w.wo_b, D, static_cast<int64_t>(c.o_dim()), "wo_b");
  DSV4_CHECK_IN("attention",
                static_cast<int64_t>(w.q_norm.size()) == Q &&
                    static_cast<int64_t>(w.kv_norm.size()) == dh &&
                    static_cast<int64_t>(w.sink.size()) == H,
                "%s: q_norm %zu (expected %lld), kv_norm %zu (expected %lld), sink %zu (expected %lld)",
                w.wq_a.name.c_str(), w.q_norm.size(), static_cast<long long>(Q), w.kv_norm.size(),
                static_cast<long long>(dh), w.sink.size(), static_cast<long long>(H));
  DSV4_CHECK_IN("attention", spec.has_compressor() == w.compressor.has_value(),
                "%s: layer ratio %d but compressor weights %s", w.wq_a.name.c_str(),
                spec.compress_ratio, w.compressor ? "present" : "absent");
  DSV4_CHECK_IN("attention", spec.has_indexer() == w.indexer.has_value(),
                "%s: layer is %s but indexer weights %s", w.wq_a.name.c_str(),
                spec.has_indexer() ? "CSA" : "not CSA", w.indexer ? "present" : "absent");
  if (w.compressor) {
    DSV4_CHECK_IN("attention",
                  w.compressor->ratio == spec.compress_ratio &&
                      w.compressor->series == spec.compressor_series() && w.compressor->dim == dh,
                  "%s: ratio %d series %d dim %lld, layer wants ratio %d series %d dim %lld",
                  w.compressor->wkv.name.c_str(), w.compressor->ratio, w.compressor->series,
                  static_cast<long long>(w.compressor->dim), spec.compress_ratio,
                  spec.compressor_series(), static_cast<long long>(dh));
  }
  if (w.indexer) {
    DSV4_CHECK_IN("attention", w.indexer->compressor.ratio == spec.compress_ratio,
                  "%s: ratio %d, layer ratio %d", w.indexer->compressor.wkv.name.c_str(),
                  w.indexer->compressor.ratio, spec.compress_ratio);
  }
}


}  // namespace

std::vector<std::string> attention_input_modules(const std::string& prefix, bool compressor, bool indexer) {
  std::vector<std::string> m = {prefix + "attn.wq_a", prefix + "attn.wkv"};
  if (compressor) {
    m.push_back(prefix + "attn.compressor.wkv");
    m.push_back(prefix + "attn.compressor.wgate");
  }
  if (indexer) {
    m.push_back(prefix + "attn.indexer.weights_proj");
    m.push_back(prefix + "attn.indexer.compressor.wkv");
    m.push_back(prefix + "attn.indexer.compressor.wgate");
  }
  return m;
}

std::vector<std::string> attention_qr_modules(const std::string& prefix, bool indexer) {
  std::vector<std::string> m = {prefix + "attn.wq_b"};
  if (indexer) m.push_back(prefix + "attn.indexer.wq_b");
  return m;
}

void attention_forward(const AttentionWeights& w, const ModelConfig& config, const LayerSpec& spec,
                       const RopeTable& rope, const float* x_attn, int64_t tokens, float* out,
                       const ForwardContext& ctx) {
  check_weights(w, config, spec);
  const int64_t T = tokens;
  const int64_t D = config.hidden_size, Q = config.q_lora_rank, H = config.num_heads;
  const int64_t dh = config.head_dim, G = config.o_groups, R = config.o_lora_rank;
  const int64_t group_in = config.o_group_in();  // H/G·dh
  DSV4_CHECK_IN("attention", T >= 0, "%lld tokens", static_cast<long long>(T));
  DSV4_CHECK_IN("attention", rope.rope_dim == config.rope_head_dim && rope.positions >= T,
                "%s: RoPE table (rope dim %d, %lld positions) for %lld tokens, rope_head_dim %d",
                w.wq_a.name.c_str(), rope.rope_dim, static_cast<long long>(rope.positions),
                static_cast<long long>(T), config.rope_head_dim);
  if (T == 0) return;
  const bool bf16 = ctx.bf16();
  auto round = [bf16](std::vector<float>& v) {
    if (bf16) bf16_round(v.data(), v.size());
  };

  if (ctx.taps) {
    ctx.taps->on_tap({.modules = attention_input_modules(ctx.prefix, w.compressor.has_value(), w.indexer.has_value()),
                      .x = x_attn, .rows = T, .cols = D});
  }

  // 1. Query low-rank path: qr = RMSNorm(x · wq_aᵀ; q_norm), q = qr · wq_bᵀ, per-head norm, RoPE.
  const float eps = static_cast<float>(config.rms_norm_eps);
  std::vector<float> qr(static_cast<size_t>(T * Q));  // [T, Q]
  linear_forward(x_attn, T, D, w.wq_a.w.data(), Q, qr.data());
  round(qr);
  rmsnorm_forward(qr.data(), T, Q, w.q_norm.data(), eps, qr.data());
  round(qr);
  if (ctx.taps) {
    ctx.taps->on_tap({.modules = attention_qr_modules(ctx.prefix, w.indexer.has_value()), .x = qr.data(), .rows = T, .cols = Q});
  }
  std::vector<float> q(static_cast<size_t>(T * H * dh));  // [T, H, dh]
  linear_forward(qr.data(), T, Q, w.wq_b.w.data(), H * dh, q.data());
  round(q);
  rmsnorm_forward(q.data(), T * H, dh, nullptr, eps, q.data());  // unweighted, per head
  round(q);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) rope_apply(q.data() + (t * H + h) * dh, dh, rope, t, false);
  }
  round(q);

  // 2. Shared K = V: kv = RoPE(RMSNorm(x · wkvᵀ; kv_norm)), one 512-vector per token.
  std::vector<float> kv(static_cast<size_t>(T * dh));  // [T, dh]
  linear_forward(x_attn, T, D, w.wkv.w.data(), dh, kv.data());
  round(kv);
  rmsnorm_forward(kv.data(), T, dh, w.kv_norm.data(), eps, kv.data());
  round(kv);
  for (int64_t t = 0; t < T; ++t) rope_apply(kv.data() + t * dh, dh, rope, t, false);
  round(kv);

  // 3. Compressed entries and, on CSA layers, the indexer's picks.
  std::vector<float> entries;  // [W, dh]
  std::vector<std::vector<int32_t>> picks;
  int ratio = 0;
  if (w.compressor) {
    ratio = w.compressor->ratio;
    entries = compressor_forward(*w.compressor, config, rope, x_attn, T, ctx);
    if (w.indexer) picks = indexer_select(*w.indexer, config, rope, x_attn, qr.data(), T, ctx);
  }
  const int64_t W = static_cast<int64_t>(entries.size()) / dh;

  // 4. Core attention, one query at a time: gather its keys K_t [n, dh] (window rows, then the
  // compressed entries it uses), logits [H, n] = q_t · K_tᵀ, sink softmax, o_t = P · K_t.
  // transformers: scaling = head_dim**-0.5 (a python double) applied to the fp32 q·k product.
  const float scale = static_cast<float>(std::pow(static_cast<double>(dh), -0.5));
  const int64_t window = config.sliding_window;
  const int64_t max_keys = std::min(window, T) + W;  // a window past the sequence holds only T keys
  std::vector<float> keys(static_cast<size_t>(max_keys * dh));      // [n, dh]
  std::vector<float> keys_t(static_cast<size_t>(max_keys * dh));    // [dh, n]
  std::vector<float> probs(static_cast<size_t>(H * max_keys));      // [H, n]
  std::vector<float> o(static_cast<size_t>(T * H * dh));            // [T, H, dh]
  for (int64_t t = 0; t < T; ++t) {
    const int64_t first = std::max<int64_t>(0, t - window + 1);
    int64_t n = t - first + 1;
    std::memcpy(keys.data(), kv.data() + first * dh, static_cast<size_t>(n * dh) * sizeof(float));
    auto add_entry = [&](int64_t e) {
      std::memcpy(keys.data() + n * dh, entries.data() + e * dh, static_cast<size_t>(dh) * sizeof(float));
      ++n;
    };
    if (w.indexer) {
      for (int32_t e : picks[t]) add_entry(e);
    } else if (w.compressor) {
      const int64_t visible = compressed_visible(t, ratio, W);
      for (int64_t e = 0; e < visible; ++e) add_entry(e);
    }

    linear_forward(q.data() + t * H * dh, H, dh, keys.data(), n, probs.data());
    for (int64_t h = 0; h < H; ++h) {
      float* p = probs.data() + h * n;  // [n]
      // The sink is a per-head logit with a zero value: it joins the max and the denominator.
      // transformers subtracts the row max (sink included) before exp; same math as §3.2.6.
      const float sink = w.sink[h];
      float mx = sink;
      for (int64_t s = 0; s < n; ++s) {
        p[s] *= scale;
        mx = std::max(mx, p[s]);
      }
      float denom = std::exp(sink - mx);
      for (int64_t s = 0; s < n; ++s) {
        p[s] = std::exp(p[s] - mx);
        denom += p[s];
      }
      for (int64_t s = 0; s < n; ++s) p[s] /= denom;
    }
    if (bf16) bf16_round(probs.data(), static_cast<size_t>(H * n));  // P is bf16 before P·V
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t d = 0; d < dh; ++d) keys_t[d * n + s] = keys[s * dh + d];
    }
    float* ot = o.data() + t * H * dh;  // [H, dh]
    linear_forward(probs.data(), H, n, keys_t.data(), dh, ot);
    // 5. Inverse RoPE at the query position: removes the rotation the values carried.
    for (int64_t h = 0; h < H; ++h) rope_apply(ot + h * dh, dh, rope, t, /*inverse=*/true);
  }
  round(o);

  // 6. Grouped wo_a: group g = heads g·H/G … (g+1)·H/G − 1 = columns g·group_in … of o, projected
  // by rows g·R … g·R + R − 1 of wo_a only; then wo_b.
  std::vector<float> og(static_cast<size_t>(T * group_in));  // [T, H/G·dh]
  std::vector<float> zg(static_cast<size_t>(T * R));         // [T, R]
  std::vector<float> z(static_cast<size_t>(T * G * R));      // [T, G·R]
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t t = 0; t < T; ++t) {
      std::memcpy(og.data() + t * group_in, o.data() + t * H * dh + g * group_in,
                  static_cast<size_t>(group_in) * sizeof(float));
    }
    if (ctx.taps) {
      ctx.taps->on_tap({.modules = {ctx.module("attn.wo_a")}, .x = og.data(), .rows = T, .cols = group_in,
                        .group = static_cast<int>(g)});
    }
    linear_forward(og.data(), T, group_in, w.wo_a.w.data() + g * R * group_in, R, zg.data());
    for (int64_t t = 0; t < T; ++t) {
      std::memcpy(z.data() + t * G * R + g * R, zg.data() + t * R, static_cast<size_t>(R) * sizeof(float));
    }
  }
  round(z);
  if (ctx.taps) ctx.taps->on_tap({.modules = {ctx.module("attn.wo_b")}, .x = z.data(), .rows = T, .cols = G * R});
  linear_forward(z.data(), T, G * R, w.wo_b.w.data(), D, out);
  if (bf16) bf16_round(out, static_cast<size_t>(T * D));
}

}  // namespace dsv4::model

// forward.cpp: embedding → blocks → HC head → norm → logits, and the MTP stages (see forward.h).
#include "model/forward.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

#include "common/check.h"
#include "common/codec.h"
#include "model/block.h"
#include "model/block_weights.h"
#include "model/hc.h"
#include "model/inventory.h"
#include "model/ops.h"
#include "model/rope.h"

namespace dsv4::model {
namespace {

double rms_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

std::vector<float> embed_rows(const Checkpoint& ckpt, const ModelConfig& c, const int64_t* ids, int64_t tokens) {
  // Only the rows used are decoded: the full table is 1 GB at Flash widths.
  const TensorInfo& t = ckpt.info("embed.weight");
  DSV4_CHECK_IN("forward", t.shape == (std::vector<int64_t>{c.vocab_size, c.hidden_size}) && t.dtype == DType::kBF16,
                "embed.weight in %s must be BF16 [%d, %d]", ckpt.dir().c_str(), c.vocab_size, c.hidden_size);
  const auto table = ckpt.bytes("embed.weight");
  const int64_t d = c.hidden_size;
  std::vector<float> out(static_cast<size_t>(tokens * d));
  for (int64_t i = 0; i < tokens; ++i) {
    DSV4_CHECK_IN("forward", ids[i] >= 0 && ids[i] < c.vocab_size, "token id %lld at position %lld is outside [0, %d)",
                  static_cast<long long>(ids[i]), static_cast<long long>(i), c.vocab_size);
    for (int64_t k = 0; k < d; ++k) {
      uint16_t b;
      std::memcpy(&b, table.data() + (ids[i] * d + k) * 2, 2);
      out[static_cast<size_t>(i * d + k)] = bf16_decode(b);
    }
  }
  return out;
}

// Head of the main model or of an MTP stage: RMSNorm(HCHead(X); norm) and its logits.
void head_forward(const Checkpoint& ckpt, const ModelConfig& c, const std::string& prefix, const float* state,
                  int64_t tokens, bool with_logits, NumericMode mode, std::vector<float>& final_hidden,
                  std::vector<float>& logits) {
  const int64_t d = c.hidden_size;
  HcWeights head{weight_load_f32(ckpt, prefix + "hc_head_fn", {c.hc_mult, c.hc_dim()}),
                 weight_load_f32(ckpt, prefix + "hc_head_base", {c.hc_mult}),
                 weight_load_f32(ckpt, prefix + "hc_head_scale", {1})};
  final_hidden.assign(static_cast<size_t>(tokens * d), 0.0f);
  hc_head(head, c, state, tokens, final_hidden.data());
  if (mode == NumericMode::kBf16) bf16_round(final_hidden.data(), final_hidden.size());
  const std::vector<float> norm = weight_load_f32(ckpt, prefix + "norm.weight", {d});
  rmsnorm_forward(final_hidden.data(), tokens, d, norm.data(), static_cast<float>(c.rms_norm_eps), final_hidden.data());
  if (mode == NumericMode::kBf16) bf16_round(final_hidden.data(), final_hidden.size());
  if (!with_logits) return;
  // The reference computes logits in fp32 in both modes.
  const std::vector<float> head_w = weight_load_f32(ckpt, "head.weight", {c.vocab_size, d});
  logits.assign(static_cast<size_t>(tokens * c.vocab_size), 0.0f);
  linear_forward(final_hidden.data(), tokens, d, head_w.data(), c.vocab_size, logits.data());
}

// Runs one block, timing it and reporting to the options' callback.
void run_block(const Checkpoint& ckpt, const ModelConfig& c, const std::string& prefix, int layer,
               const RopeTable& main_rope, const RopeTable& compress_rope, const std::vector<float>& state,
               const int64_t* ids, int64_t tokens, std::vector<float>& next, const ForwardOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const BlockWeights w = block_weights_load(ckpt, c, prefix, layer);
  ForwardContext ctx{o.mode, o.taps, prefix, o.all_experts};
  next.assign(state.size(), 0.0f);
  block_forward(w, c, rope_is_compressed(w.spec) ? compress_rope : main_rope, state.data(), ids, tokens,
                next.data(), ctx);
  if (o.on_block) {
    o.on_block(layer, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), rms_of(next));
  }
}

}  // namespace

namespace {

// The embedding is copied (not scaled) into all n streams.
std::vector<float> state_from_embed(const std::vector<float>& embed, const ModelConfig& c, int64_t tokens) {
  const int64_t d = c.hidden_size, n = c.hc_mult;
  std::vector<float> state(static_cast<size_t>(tokens * n * d));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t s = 0; s < n; ++s)
      std::memcpy(&state[static_cast<size_t>((t * n + s) * d)], &embed[static_cast<size_t>(t * d)], d * sizeof(float));
  return state;
}

}  // namespace

std::vector<float> model_embed_state(const Checkpoint& ckpt, const ModelConfig& c, const std::vector<int64_t>& ids) {
  const int64_t tokens = static_cast<int64_t>(ids.size());
  DSV4_CHECK_IN("forward", tokens > 0, "no tokens to run");
  return state_from_embed(embed_rows(ckpt, c, ids.data(), tokens), c, tokens);
}

ForwardResult model_forward(const Checkpoint& ckpt, const ModelConfig& c, const std::vector<int64_t>& ids,
                            const ForwardOptions& o) {
  const int64_t tokens = static_cast<int64_t>(ids.size());
  DSV4_CHECK_IN("forward", tokens > 0, "no tokens to run");
  ForwardResult r;
  r.embed = embed_rows(ckpt, c, ids.data(), tokens);
  std::vector<float> state = state_from_embed(r.embed, c, tokens);

  const RopeTable main_rope = rope_table_build(c, false, tokens);
  const RopeTable compress_rope = rope_table_build(c, true, tokens);
  std::vector<float> next;
  for (int l = 0; l < c.num_layers; ++l) {
    run_block(ckpt, c, "layers." + std::to_string(l) + ".", l, main_rope, compress_rope, state, ids.data(), tokens,
              next, o);
    state.swap(next);
    if (o.keep_hidden) r.hidden.push_back(state);
  }
  head_forward(ckpt, c, "", state.data(), tokens, o.logits, o.mode, r.final_hidden, r.logits);
  r.last_state = std::move(state);
  return r;
}

MtpResult mtp_forward(const Checkpoint& ckpt, const ModelConfig& c, const std::vector<int64_t>& ids,
                      const std::vector<float>& last_state, const ForwardOptions& o) {
  const int stages = inventory_mtp_stages(ckpt.names());
  const int64_t d = c.hidden_size, n = c.hc_mult;
  const int64_t full = static_cast<int64_t>(ids.size());
  DSV4_CHECK_IN("forward", static_cast<int64_t>(last_state.size()) == full * n * d,
                "MTP needs the main model's final state [%lld, %lld, %lld]", static_cast<long long>(full),
                static_cast<long long>(n), static_cast<long long>(d));
  MtpResult r;
  std::vector<float> prev = last_state;  // [T_prev, n, D]
  const RopeTable main_rope = rope_table_build(c, false, full);
  for (int s = 0; s < stages; ++s) {
    const std::string p = "mtp." + std::to_string(s) + ".";
    const int64_t tokens = full - 1 - s;  // position t predicts with token t+1+s
    if (tokens <= 0) break;
    const float eps = static_cast<float>(c.rms_norm_eps);
    // e' = RMSNorm(embed[ids[t+1+s]]; enorm) → e_proj.
    std::vector<float> e = embed_rows(ckpt, c, ids.data() + 1 + s, tokens);
    const std::vector<float> enorm = weight_load_f32(ckpt, p + "enorm.weight", {d});
    rmsnorm_forward(e.data(), tokens, d, enorm.data(), eps, e.data());
    // H' = RMSNorm(H[t][j]; hnorm) per stream → h_proj, 4 rows per token.
    std::vector<float> h(prev.begin(), prev.begin() + tokens * n * d);
    const std::vector<float> hnorm = weight_load_f32(ckpt, p + "hnorm.weight", {d});
    rmsnorm_forward(h.data(), tokens * n, d, hnorm.data(), eps, h.data());
    if (o.mode == NumericMode::kBf16) bf16_round(e.data(), e.size()), bf16_round(h.data(), h.size());
    if (o.taps) {
      o.taps->on_tap({{p + "e_proj"}, e.data(), tokens, d});
      o.taps->on_tap({{p + "h_proj"}, h.data(), tokens * n, d});
    }
    const DenseLinear e_proj = linear_load(ckpt, c, p + "e_proj", d, d);
    const DenseLinear h_proj = linear_load(ckpt, c, p + "h_proj", d, d);
    std::vector<float> ep(static_cast<size_t>(tokens * d)), state(static_cast<size_t>(tokens * n * d));
    linear_forward(e.data(), tokens, d, e_proj.w.data(), d, ep.data());
    linear_forward(h.data(), tokens * n, d, h_proj.w.data(), d, state.data());
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t k = 0; k < d; ++k) state[static_cast<size_t>((t * n + j) * d + k)] += ep[static_cast<size_t>(t * d + k)];
    if (o.mode == NumericMode::kBf16) bf16_round(state.data(), state.size());

    std::vector<float> next;
    run_block(ckpt, c, p, c.num_layers + s, main_rope, main_rope, state, ids.data() + 1 + s, tokens, next, o);
    std::vector<float> final_hidden, logits;
    head_forward(ckpt, c, p, next.data(), tokens, o.logits, o.mode, final_hidden, logits);
    r.logits.push_back(std::move(logits));
    prev = std::move(next);
  }
  return r;
}

}  // namespace dsv4::model

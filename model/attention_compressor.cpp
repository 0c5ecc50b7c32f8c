// attention_compressor.cpp: the KV compressor of CSA/HCA layers (reference §3.2 step 4), used for
// the main compressed entries (dim = head_dim) and for the lightning indexer's keys
// (dim = index_head_dim). Each complete window of `ratio` tokens yields one entry: a per-channel
// softmax-gated sum of the projected tokens, RMS-normalised and rotated at the window's first
// position.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/check.h"
#include "model/attention.h"
#include "model/ops.h"

namespace dsv4::model {

std::vector<float> compressor_forward(const CompressorWeights& w, const ModelConfig& config,
                                      const RopeTable& rope, const float* x_attn, int64_t tokens,
                                      const ForwardContext& ctx) {
  const int64_t m = w.ratio;
  const int64_t c = w.series;
  const int64_t dim = w.dim;
  const int64_t D = config.hidden_size;
  DSV4_CHECK_IN("attention", m > 0 && (c == 1 || c == 2) && dim > 0,
                "%s: compressor ratio %lld, series %lld, dim %lld", w.wkv.name.c_str(),
                static_cast<long long>(m), static_cast<long long>(c), static_cast<long long>(dim));
  DSV4_CHECK_IN("attention",
                w.wkv.out == c * dim && w.wkv.in == D && w.wgate.out == c * dim && w.wgate.in == D,
                "%s: wkv [%lld, %lld] / wgate [%lld, %lld], expected [%lld, %lld]",
                w.wkv.name.c_str(), static_cast<long long>(w.wkv.out),
                static_cast<long long>(w.wkv.in), static_cast<long long>(w.wgate.out),
                static_cast<long long>(w.wgate.in), static_cast<long long>(c * dim),
                static_cast<long long>(D));
  DSV4_CHECK_IN("attention",
                static_cast<int64_t>(w.ape.size()) == m * c * dim &&
                    static_cast<int64_t>(w.norm.size()) == dim,
                "%s: ape has %zu values (expected %lld), norm %zu (expected %lld)",
                w.wkv.name.c_str(), w.ape.size(), static_cast<long long>(m * c * dim),
                w.norm.size(), static_cast<long long>(dim));

  // Tokens past the last complete window produce nothing (no partial entries in a prefill).
  const int64_t windows = tokens / m;
  std::vector<float> entries(static_cast<size_t>(windows * dim));
  if (windows == 0) return entries;
  DSV4_CHECK_IN("attention", (windows - 1) * m < rope.positions,
                "%s: RoPE table has %lld positions, entry %lld sits at %lld", w.wkv.name.c_str(),
                static_cast<long long>(rope.positions), static_cast<long long>(windows - 1),
                static_cast<long long>((windows - 1) * m));

  const int64_t used = windows * m;
  const int64_t width = c * dim;
  // [REF] runs the compressor projections in fp32 (x upcast), so they are not rounded in the
  // bf16 mode either.
  std::vector<float> kv(static_cast<size_t>(used * width));    // [used, c·dim]  P
  std::vector<float> gate(static_cast<size_t>(used * width));  // [used, c·dim]  Z
  linear_forward(x_attn, used, D, w.wkv.w.data(), width, kv.data());
  linear_forward(x_attn, used, D, w.wgate.w.data(), width, gate.data());

  // Slot layout per entry (c = 2, CSA): slots 0..m−1 are the A half ([0, dim)) of window w−1,
  // slots m..2m−1 the B half ([dim, 2·dim)) of window w; window 0 has no A slots (transformers
  // fills them with −inf gates, i.e. weight 0). c = 1 (HCA): the m tokens of window w.
  const int64_t slots = c * m;
  std::vector<float> logit(static_cast<size_t>(slots));
  std::vector<float> value(static_cast<size_t>(slots));
  for (int64_t win = 0; win < windows; ++win) {
    float* entry = entries.data() + win * dim;  // [dim]
    for (int64_t d = 0; d < dim; ++d) {
      int64_t n = 0;
      if (c == 2 && win > 0) {
        for (int64_t i = 0; i < m; ++i, ++n) {
          const int64_t row = (win - 1) * m + i;
          logit[n] = gate[row * width + d] + w.ape[i * width + d];
          value[n] = kv[row * width + d];
        }
      }
      const int64_t offset = c == 2 ? dim : 0;  // B half for CSA, the only series for HCA
      for (int64_t i = 0; i < m; ++i, ++n) {
        const int64_t row = win * m + i;
        logit[n] = gate[row * width + offset + d] + w.ape[i * width + offset + d];
        value[n] = kv[row * width + offset + d];
      }
      // Softmax over the slots in fp32 (transformers: softmax(dim=2, dtype=float32)).
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t s = 0; s < n; ++s) mx = std::max(mx, logit[s]);
      float denom = 0.0f;
      for (int64_t s = 0; s < n; ++s) {
        logit[s] = std::exp(logit[s] - mx);
        denom += logit[s];
      }
      float acc = 0.0f;
      for (int64_t s = 0; s < n; ++s) acc += value[s] * (logit[s] / denom);
      entry[d] = acc;
    }
  }

  // [REF] casts the pooled entry to the model dtype before its norm, then norm → RoPE, each stored
  // in bf16 (§3.4); the fp32 mode rounds nothing.
  if (ctx.bf16()) bf16_round(entries.data(), entries.size());
  rmsnorm_forward(entries.data(), windows, dim, w.norm.data(),
                  static_cast<float>(config.rms_norm_eps), entries.data());
  if (ctx.bf16()) bf16_round(entries.data(), entries.size());
  for (int64_t win = 0; win < windows; ++win) {
    // RoPE at the window's first token position w·m.
    rope_apply(entries.data() + win * dim, dim, rope, win * m, /*inverse=*/false);
  }
  if (ctx.bf16()) bf16_round(entries.data(), entries.size());
  return entries;
}

}  // namespace dsv4::model

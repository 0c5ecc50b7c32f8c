// test_attention.cpp: the attention sub-layer (model/attention.h): against transformers 5.17.0
// (tests/golden/attention_small_seed7.safetensors, one DeepseekV4Attention per kind), against a
// naive per-query re-computation written here, and its structural properties (causality, window,
// sink, HCA visibility, CSA pruning, taps) on a tiny seeded model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/safetensors.h"
#include "model/attention.h"
#include "model/attention_internal.h"
#include "model/ops.h"

namespace dsv4::model {
namespace {

using Vec = std::vector<float>;

struct MaxErr {
  double abs = 0, rel = 0;  // rel = max |a − b| / max |b|
  int64_t where = -1;
};

MaxErr max_err(const Vec& got, const Vec& want) {
  MaxErr e;
  double scale = 0;
  for (size_t i = 0; i < want.size(); ++i) scale = std::max(scale, std::fabs(double(want[i])));
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(double(got[i]) - want[i]);
    if (d > e.abs || (e.where < 0 && d == 0)) e.abs = d, e.where = static_cast<int64_t>(i);
  }
  e.rel = scale > 0 ? e.abs / scale : e.abs;
  return e;
}

double max_abs(const Vec& v, size_t begin = 0, size_t end = SIZE_MAX) {
  double m = 0;
  for (size_t i = begin; i < std::min(end, v.size()); ++i) m = std::max(m, std::fabs(double(v[i])));
  return m;
}

// ---------------------------------------------------------------------------------------------
// A tiny seeded model for the property tests: hidden 32, 2 heads of 16 (8 rope), 2 groups,
// window 4, CSA ratio 4 with top-2, HCA ratio 8.

ModelConfig small_config() {
  ModelConfig c = ModelConfig::tiny();
  c.hidden_size = 32;
  c.num_heads = 2;
  c.head_dim = 16;
  c.rope_head_dim = 8;
  c.q_lora_rank = 16;
  c.o_groups = 2;
  c.o_lora_rank = 8;
  c.sliding_window = 4;
  c.num_layers = 3;
  c.compress_ratios = {0, 4, 8};
  c.index_n_heads = 2;
  c.index_head_dim = 8;
  c.index_topk = 2;
  return c;
}

LayerSpec spec_of(AttentionKind kind, int ratio) {
  LayerSpec s;
  s.attention = kind;
  s.compress_ratio = ratio;
  return s;
}

struct Rng {
  std::mt19937 gen;
  explicit Rng(uint32_t seed) : gen(seed) {}
  Vec normal(size_t n, float std, float mean = 0.0f) {
    std::normal_distribution<float> d(mean, std);
    Vec v(n);
    for (float& x : v) x = d(gen);
    return v;
  }
  DenseLinear linear(const std::string& name, int64_t out, int64_t in) {
    return DenseLinear{name, out, in, normal(static_cast<size_t>(out * in), 1.0f / std::sqrt(float(in)))};
  }
};

CompressorWeights random_compressor(Rng& r, const std::string& name, const ModelConfig& c, int ratio,
                                    int series, int64_t dim) {
  CompressorWeights w;
  w.wkv = r.linear(name + ".wkv", series * dim, c.hidden_size);
  w.wgate = r.linear(name + ".wgate", series * dim, c.hidden_size);
  w.ape = r.normal(static_cast<size_t>(ratio * series * dim), 0.5f);
  w.norm = r.normal(static_cast<size_t>(dim), 0.2f, 1.0f);
  w.ratio = ratio;
  w.series = series;
  w.dim = dim;
  return w;
}

AttentionWeights random_attention(const ModelConfig& c, const LayerSpec& spec, uint32_t seed) {
  Rng r(seed);
  AttentionWeights w;
  const int64_t D = c.hidden_size, Q = c.q_lora_rank, H = c.num_heads, dh = c.head_dim;
  w.wq_a = r.linear("attn.wq_a", Q, D);
  w.q_norm = r.normal(Q, 0.2f, 1.0f);
  w.wq_b = r.linear("attn.wq_b", H * dh, Q);
  w.wkv = r.linear("attn.wkv", dh, D);
  w.kv_norm = r.normal(dh, 0.2f, 1.0f);
  w.wo_a = r.linear("attn.wo_a", int64_t(c.o_groups) * c.o_lora_rank, c.o_group_in());
  w.wo_b = r.linear("attn.wo_b", D, c.o_dim());
  w.sink = r.normal(H, 1.0f);
  if (spec.has_compressor()) {
    w.compressor = random_compressor(r, "attn.compressor", c, spec.compress_ratio,
                                     spec.compressor_series(), dh);
  }
  if (spec.has_indexer()) {
    IndexerWeights ix;
    ix.wq_b = r.linear("attn.indexer.wq_b", int64_t(c.index_n_heads) * c.index_head_dim, Q);
    ix.weights_proj = r.linear("attn.indexer.weights_proj", c.index_n_heads, D);
    ix.compressor = random_compressor(r, "attn.indexer.compressor", c, spec.compress_ratio, 2,
                                      c.index_head_dim);
    w.indexer = std::move(ix);
  }
  return w;
}

Vec run(const AttentionWeights& w, const ModelConfig& c, const LayerSpec& spec, const Vec& x,
        int64_t T, const ForwardContext& ctx = {}) {
  const RopeTable rope = rope_table_build(c, rope_is_compressed(spec), T);
  Vec out(static_cast<size_t>(T * c.hidden_size));
  attention_forward(w, c, spec, rope, x.data(), T, out.data(), ctx);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Naive re-computation of one output row t, written from §3.2 with plain loops (double sums).
// Compressed entries and CSA picks come from compressor_forward / indexer_select, which the
// golden test checks against transformers on their own.

Vec naive_linear(const Vec& x, int64_t rows, int64_t in, const float* w, int64_t out) {
  Vec y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += double(x[r * in + i]) * w[o * in + i];
      y[r * out + o] = float(s);
    }
  return y;
}

void naive_rms(float* v, int64_t dim, const float* weight) {
  double ss = 0;
  for (int64_t d = 0; d < dim; ++d) ss += double(v[d]) * v[d];
  const double inv = 1.0 / std::sqrt(ss / dim + 1e-6);
  for (int64_t d = 0; d < dim; ++d) v[d] = float(v[d] * inv * (weight ? weight[d] : 1.0));
}

Vec naive_row(const AttentionWeights& w, const ModelConfig& c, const LayerSpec& spec, const Vec& x,
              int64_t T, int64_t t, bool use_sink = true) {
  const int64_t D = c.hidden_size, Q = c.q_lora_rank, H = c.num_heads, dh = c.head_dim;
  const RopeTable rope = rope_table_build(c, rope_is_compressed(spec), T);
  Vec xt(x.begin() + t * D, x.begin() + (t + 1) * D);
  Vec qr = naive_linear(xt, 1, D, w.wq_a.w.data(), Q);
  naive_rms(qr.data(), Q, w.q_norm.data());
  Vec q = naive_linear(qr, 1, Q, w.wq_b.w.data(), H * dh);
  for (int64_t h = 0; h < H; ++h) {
    naive_rms(q.data() + h * dh, dh, nullptr);
    rope_apply(q.data() + h * dh, dh, rope, t, false);
  }
  std::vector<Vec> keys;
  for (int64_t s = std::max<int64_t>(0, t - c.sliding_window + 1); s <= t; ++s) {
    Vec k = naive_linear(Vec(x.begin() + s * D, x.begin() + (s + 1) * D), 1, D, w.wkv.w.data(), dh);
    naive_rms(k.data(), dh, w.kv_norm.data());
    rope_apply(k.data(), dh, rope, s, false);
    keys.push_back(k);
  }
  if (spec.has_compressor()) {
    const Vec entries = compressor_forward(*w.compressor, c, rope, x.data(), T, {});
    std::vector<int32_t> use;
    if (spec.has_indexer()) {
      Vec qr_all(static_cast<size_t>(T * Q));
      for (int64_t s = 0; s < T; ++s) {
        Vec r = naive_linear(Vec(x.begin() + s * D, x.begin() + (s + 1) * D), 1, D, w.wq_a.w.data(), Q);
        naive_rms(r.data(), Q, w.q_norm.data());
        std::copy(r.begin(), r.end(), qr_all.begin() + s * Q);
      }
      use = indexer_select(*w.indexer, c, rope, x.data(), qr_all.data(), T, {})[t];
    } else {
      for (int64_t e = 0; e < (t + 1) / spec.compress_ratio; ++e) use.push_back(int32_t(e));
    }
    for (int32_t e : use) keys.emplace_back(entries.begin() + e * dh, entries.begin() + (e + 1) * dh);
  }
  Vec o(static_cast<size_t>(H * dh), 0.0f);
  for (int64_t h = 0; h < H; ++h) {
    std::vector<double> l;
    for (const Vec& k : keys) {
      double s = 0;
      for (int64_t d = 0; d < dh; ++d) s += double(q[h * dh + d]) * k[d];
      l.push_back(s / std::sqrt(double(dh)));
    }
    double denom = use_sink ? std::exp(double(w.sink[h])) : 0.0;
    for (double v : l) denom += std::exp(v);
    for (size_t s = 0; s < keys.size(); ++s)
      for (int64_t d = 0; d < dh; ++d) o[h * dh + d] += float(std::exp(l[s]) / denom * keys[s][d]);
    rope_apply(o.data() + h * dh, dh, rope, t, true);
  }
  const int64_t G = c.o_groups, R = c.o_lora_rank, gi = c.o_group_in();
  Vec z(static_cast<size_t>(G * R));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0;
      for (int64_t d = 0; d < gi; ++d) s += double(o[g * gi + d]) * w.wo_a.w[(g * R + r) * gi + d];
      z[g * R + r] = float(s);
    }
  return naive_linear(z, 1, G * R, w.wo_b.w.data(), D);
}

struct KindCase {
  const char* name;
  AttentionKind kind;
  int ratio;
};
const KindCase kKinds[] = {{"swa", AttentionKind::kSliding, 0},
                           {"csa", AttentionKind::kCsa, 4},
                           {"hca", AttentionKind::kHca, 8}};

TEST(Attention, MatchesNaiveRecomputationPerQuery) {
  const ModelConfig c = small_config();
  const int64_t T = 40;
  for (const KindCase& k : kKinds) {
    const LayerSpec spec = spec_of(k.kind, k.ratio);
    const AttentionWeights w = random_attention(c, spec, 11);
    const Vec x = Rng(5).normal(static_cast<size_t>(T * c.hidden_size), 1.0f);
    const Vec out = run(w, c, spec, x, T);
    ASSERT_GT(max_abs(out), 1e-3) << k.name;
    for (int64_t t : {0, 3, 7, 8, 15, 23, 39}) {
      const Vec want = naive_row(w, c, spec, x, T, t);
      const Vec got(out.begin() + t * c.hidden_size, out.begin() + (t + 1) * c.hidden_size);
      const MaxErr e = max_err(got, want);
      // fp32 BLAS vs double loops over sums of ≤ 64 terms: ~1e-6 relative.
      EXPECT_LT(e.rel, 2e-5) << k.name << " T=" << T << " t=" << t << " worst d=" << e.where
                             << " got " << got[e.where] << " want " << want[e.where];
    }
  }
}

TEST(Attention, IsCausal) {
  const ModelConfig c = small_config();
  const int64_t T = 40, D = c.hidden_size, changed = 21;
  for (const KindCase& k : kKinds) {
    const LayerSpec spec = spec_of(k.kind, k.ratio);
    const AttentionWeights w = random_attention(c, spec, 3);
    Vec x = Rng(9).normal(static_cast<size_t>(T * D), 1.0f);
    const Vec a = run(w, c, spec, x, T);
    for (int64_t d = 0; d < D; ++d) x[changed * D + d] += 0.5f;
    const Vec b = run(w, c, spec, x, T);
    for (int64_t t = 0; t < changed; ++t)
      for (int64_t d = 0; d < D; ++d)
        ASSERT_EQ(a[t * D + d], b[t * D + d]) << k.name << ": token " << changed << " changed row " << t;
    EXPECT_GT(max_err(Vec(b.begin() + changed * D, b.end()), Vec(a.begin() + changed * D, a.end())).abs, 1e-4)
        << k.name << ": changing token " << changed << " must change its own row";
  }
}

TEST(Attention, SlidingWindowMasksOlderTokens) {
  const ModelConfig c = small_config();
  const LayerSpec spec = spec_of(AttentionKind::kSliding, 0);
  const int64_t T = 16, D = c.hidden_size, s = 5, win = c.sliding_window;
  const AttentionWeights w = random_attention(c, spec, 4);
  Vec x = Rng(2).normal(static_cast<size_t>(T * D), 1.0f);
  const Vec a = run(w, c, spec, x, T);
  for (int64_t d = 0; d < D; ++d) x[s * D + d] = -x[s * D + d];
  const Vec b = run(w, c, spec, x, T);
  auto row_diff = [&](int64_t t) {
    return max_err(Vec(b.begin() + t * D, b.begin() + (t + 1) * D), Vec(a.begin() + t * D, a.begin() + (t + 1) * D)).abs;
  };
  for (int64_t t = s; t < s + win; ++t) EXPECT_GT(row_diff(t), 1e-4) << "t=" << t << " sees token " << s;
  for (int64_t t = s + win; t < T; ++t) EXPECT_EQ(row_diff(t), 0.0) << "t=" << t << " is past the window of " << win;
}

TEST(Attention, SinkOnlyEnlargesTheDenominator) {
  const ModelConfig c = small_config();
  const int64_t T = 12;
  for (const KindCase& k : kKinds) {
    const LayerSpec spec = spec_of(k.kind, k.ratio);
    AttentionWeights w = random_attention(c, spec, 8);
    const Vec x = Rng(1).normal(static_cast<size_t>(T * c.hidden_size), 1.0f);
    // A very negative sink: exp underflows, same as no sink at all.
    std::fill(w.sink.begin(), w.sink.end(), -1e4f);
    const Vec none = run(w, c, spec, x, T);
    for (int64_t t : {0, 5, 11}) {
      const Vec want = naive_row(w, c, spec, x, T, t, /*use_sink=*/false);
      EXPECT_LT(max_err(Vec(none.begin() + t * c.hidden_size, none.begin() + (t + 1) * c.hidden_size), want).rel, 2e-5)
          << k.name << " t=" << t;
    }
    // A huge sink takes all the mass: o = 0, so the output is exactly 0.
    std::fill(w.sink.begin(), w.sink.end(), 1e4f);
    EXPECT_EQ(max_abs(run(w, c, spec, x, T)), 0.0) << k.name;
  }
}

TEST(Attention, HcaEntryVisibleOnlyAfterItsWindowEnds) {
  const ModelConfig c = small_config();
  const LayerSpec spec = spec_of(AttentionKind::kHca, 8);
  const int64_t T = 24, D = c.hidden_size;
  const AttentionWeights w = random_attention(c, spec, 6);
  Vec x = Rng(4).normal(static_cast<size_t>(T * D), 1.0f);
  const Vec a = run(w, c, spec, x, T);
  // Token 0 leaves the window (4) after t = 3; it reaches later rows only through entry 0
  // (tokens 0..7), which is visible from t = 7 on.
  for (int64_t d = 0; d < D; ++d) x[d] += 1.0f;
  const Vec b = run(w, c, spec, x, T);
  for (int64_t t = 4; t < 7; ++t)
    for (int64_t d = 0; d < D; ++d) ASSERT_EQ(a[t * D + d], b[t * D + d]) << "row " << t << " sees entry 0 early";
  for (int64_t t = 7; t < T; ++t) {
    EXPECT_GT(max_err(Vec(b.begin() + t * D, b.begin() + (t + 1) * D), Vec(a.begin() + t * D, a.begin() + (t + 1) * D)).abs,
              1e-5) << "row " << t << " must see entry 0";
  }
  // The compressor itself: floor(T / 8) = 3 entries; 23 tokens give 2.
  EXPECT_EQ(compressor_forward(*w.compressor, c, rope_table_build(c, true, T), x.data(), 23, {}).size(),
            size_t(2 * c.head_dim));
}

TEST(Attention, CsaIndexerPrunesEntries) {
  const ModelConfig c = small_config();  // ratio 4, top-2
  const LayerSpec spec = spec_of(AttentionKind::kCsa, 4);
  const int64_t T = 40, D = c.hidden_size, t = T - 1;
  AttentionWeights w = random_attention(c, spec, 12);
  // The indexer compressor reads only the first half of x, so changing the second half of a
  // window's tokens changes the main entries' values but not the indexer keys (nor the picks).
  for (DenseLinear* l : {&w.indexer->compressor.wkv, &w.indexer->compressor.wgate})
    for (int64_t o = 0; o < l->out; ++o)
      for (int64_t i = D / 2; i < D; ++i) l->w[o * D + i] = 0.0f;
  const Vec x = Rng(13).normal(static_cast<size_t>(T * D), 1.0f);
  const RopeTable rope = rope_table_build(c, true, T);
  Vec qr(static_cast<size_t>(T * c.q_lora_rank));
  linear_forward(x.data(), T, D, w.wq_a.w.data(), c.q_lora_rank, qr.data());
  rmsnorm_forward(qr.data(), T, c.q_lora_rank, w.q_norm.data(), 1e-6f, qr.data());
  const auto picks = indexer_select(*w.indexer, c, rope, x.data(), qr.data(), T, {});
  ASSERT_EQ(picks[t].size(), 2u) << "10 visible entries, top-2";
  auto picked = [&](int64_t e) { return std::count(picks[t].begin(), picks[t].end(), e) > 0; };
  // Window e's tokens feed entry e (B half) and entry e + 1 (A half); stay out of t's window.
  int64_t pruned = -1, kept = -1;
  for (int64_t e = 0; e + 1 < 9 && 4 * e + 3 < t - c.sliding_window + 1; ++e) {
    if (!picked(e) && !picked(e + 1) && pruned < 0) pruned = e;
    if (picked(e) && kept < 0) kept = e;
  }
  ASSERT_GE(pruned, 0);
  ASSERT_GE(kept, 0);
  const Vec a = run(w, c, spec, x, T);
  for (auto [e, expect_change] : {std::pair{pruned, false}, std::pair{kept, true}}) {
    Vec y = x;
    for (int64_t s = 4 * e; s < 4 * e + 4; ++s)
      for (int64_t d = D / 2; d < D; ++d) y[s * D + d] += 2.0f;
    EXPECT_EQ(indexer_select(*w.indexer, c, rope, y.data(), qr.data(), T, {})[t], picks[t]);
    const Vec b = run(w, c, spec, y, T);
    const double diff = max_err(Vec(b.begin() + t * D, b.end()), Vec(a.begin() + t * D, a.end())).abs;
    if (expect_change) EXPECT_GT(diff, 1e-5) << "kept entry " << e;
    else EXPECT_EQ(diff, 0.0) << "pruned entries " << e << ", " << e + 1;
  }
}

struct RecordingSink : TapSink {
  struct Event {
    std::vector<std::string> modules;
    Vec x;
    int64_t rows, cols;
    int group;
  };
  std::vector<Event> events;
  void on_tap(const TapEvent& e) override {
    events.push_back({e.modules, Vec(e.x, e.x + e.rows * e.cols), e.rows, e.cols, e.group});
  }
};

TEST(Attention, TapsDeliverEveryLinearInput) {
  const ModelConfig c = small_config();
  const int64_t T = 20, D = c.hidden_size, Q = c.q_lora_rank, G = c.o_groups, R = c.o_lora_rank;
  for (const KindCase& k : kKinds) {
    const LayerSpec spec = spec_of(k.kind, k.ratio);
    const AttentionWeights w = random_attention(c, spec, 21);
    const Vec x = Rng(22).normal(static_cast<size_t>(T * D), 1.0f);
    RecordingSink sink;
    ForwardContext ctx;
    ctx.taps = &sink;
    ctx.prefix = "layers.1.";
    const Vec out = run(w, c, spec, x, T, ctx);
    EXPECT_EQ(out, run(w, c, spec, x, T)) << k.name << ": taps must not change the result";
    ASSERT_EQ(sink.events.size(), size_t(2 + G + 1)) << k.name;
    std::vector<std::string> m0 = {"layers.1.attn.wq_a", "layers.1.attn.wkv"};
    std::vector<std::string> m1 = {"layers.1.attn.wq_b"};
    if (spec.has_compressor()) m0.insert(m0.end(), {"layers.1.attn.compressor.wkv", "layers.1.attn.compressor.wgate"});
    if (spec.has_indexer()) {
      m0.insert(m0.end(), {"layers.1.attn.indexer.weights_proj", "layers.1.attn.indexer.compressor.wkv",
                           "layers.1.attn.indexer.compressor.wgate"});
      m1.push_back("layers.1.attn.indexer.wq_b");
    }
    const auto& e = sink.events;
    EXPECT_EQ(e[0].modules, m0) << k.name;
    EXPECT_EQ(e[0].x, x) << k.name;
    EXPECT_EQ(e[1].modules, m1) << k.name;
    ASSERT_EQ(e[1].rows * e[1].cols, T * Q);
    // qr = RMSNorm(x · wq_aᵀ; q_norm), recomputed naively.
    Vec qr = naive_linear(x, T, D, w.wq_a.w.data(), Q);
    for (int64_t t = 0; t < T; ++t) naive_rms(qr.data() + t * Q, Q, w.q_norm.data());
    EXPECT_LT(max_err(e[1].x, qr).rel, 1e-5) << k.name;
    Vec z(static_cast<size_t>(T * G * R));
    for (int64_t g = 0; g < G; ++g) {
      const auto& eg = e[2 + g];
      EXPECT_EQ(eg.modules, std::vector<std::string>{"layers.1.attn.wo_a"});
      EXPECT_EQ(eg.group, g);
      ASSERT_EQ(eg.rows, T);
      ASSERT_EQ(eg.cols, c.o_group_in());
      EXPECT_GT(max_abs(eg.x), 1e-3);
      const Vec zg = naive_linear(eg.x, T, eg.cols, w.wo_a.w.data() + g * R * eg.cols, R);
      for (int64_t t = 0; t < T; ++t) std::copy_n(zg.begin() + t * R, R, z.begin() + t * G * R + g * R);
    }
    const auto& ez = e[2 + G];
    EXPECT_EQ(ez.modules, std::vector<std::string>{"layers.1.attn.wo_b"});
    ASSERT_EQ(ez.rows * ez.cols, T * G * R);
    EXPECT_LT(max_err(ez.x, z).rel, 1e-5) << k.name << ": z = grouped wo_a of the wo_a taps";
    EXPECT_LT(max_err(out, naive_linear(ez.x, T, G * R, w.wo_b.w.data(), D)).rel, 1e-5) << k.name;
  }
}

// The bf16 mode rounds at the reference's storage points only: its output is bf16-valued and
// within bf16 noise of fp32 (CSA left out: a rounding can flip an indexer pick).
TEST(Attention, Bf16ModeRoundsStorageOnly) {
  const ModelConfig c = small_config();
  const int64_t T = 24;
  for (const KindCase& k : {kKinds[0], kKinds[2]}) {
    const LayerSpec spec = spec_of(k.kind, k.ratio);
    const AttentionWeights w = random_attention(c, spec, 31);
    const Vec x = Rng(32).normal(static_cast<size_t>(T * c.hidden_size), 1.0f);
    ForwardContext bf;
    bf.mode = NumericMode::kBf16;
    const Vec got = run(w, c, spec, x, T, bf);
    Vec rounded = got;
    bf16_round(rounded.data(), rounded.size());
    EXPECT_EQ(got, rounded) << k.name;
    EXPECT_LT(max_err(got, run(w, c, spec, x, T)).rel, 3e-2) << k.name;  // ~8 bf16 roundings deep
  }
}

TEST(Attention, RejectsMismatchedWeights) {
  const ModelConfig c = small_config();
  const LayerSpec csa = spec_of(AttentionKind::kCsa, 4);
  AttentionWeights w = random_attention(c, csa, 1);
  const Vec x(static_cast<size_t>(8 * c.hidden_size), 0.5f);
  w.indexer.reset();
  EXPECT_THROW(run(w, c, csa, x, 8), Error);
  w = random_attention(c, csa, 1);
  w.wo_a.out -= 1;
  EXPECT_THROW(run(w, c, csa, x, 8), Error);
  const RopeTable short_rope = rope_table_build(c, true, 4);
  Vec out(x.size());
  EXPECT_THROW(attention_forward(random_attention(c, csa, 1), c, csa, short_rope, x.data(), 8, out.data(), {}), Error);
}

// ---------------------------------------------------------------------------------------------
// transformers 5.17.0 oracle: tests/golden/make_attention_fixture.py (README there).

struct Golden {
  std::unique_ptr<SafetensorsFile> file;
  ModelConfig config;
  int64_t tokens = 0;

  Vec f32(const std::string& name) const {
    const TensorInfo* t = file->find(name);
    DSV4_CHECK(t != nullptr && t->dtype == DType::kF32, "fixture tensor %s (F32) missing", name.c_str());
    Vec v(static_cast<size_t>(t->numel()));
    std::memcpy(v.data(), file->bytes(*t).data(), v.size() * sizeof(float));
    return v;
  }
  DenseLinear linear(const std::string& name) const {
    const TensorInfo* t = file->find(name);
    DSV4_CHECK(t != nullptr && t->shape.size() == 2, "fixture linear %s missing", name.c_str());
    return DenseLinear{name, t->shape[0], t->shape[1], f32(name)};
  }
  CompressorWeights compressor(const std::string& p, int ratio, int series, int64_t dim) const {
    return CompressorWeights{linear(p + ".wkv"), linear(p + ".wgate"), f32(p + ".ape"), f32(p + ".norm"),
                             ratio, series, dim};
  }
  AttentionWeights attention(const std::string& k, const LayerSpec& spec) const {
    AttentionWeights w;
    w.wq_a = linear(k + ".wq_a");
    w.q_norm = f32(k + ".q_norm");
    w.wq_b = linear(k + ".wq_b");
    w.wkv = linear(k + ".wkv");
    w.kv_norm = f32(k + ".kv_norm");
    w.wo_a = linear(k + ".wo_a");
    w.wo_b = linear(k + ".wo_b");
    w.sink = f32(k + ".sink");
    if (spec.has_compressor())
      w.compressor = compressor(k + ".compressor", spec.compress_ratio, spec.compressor_series(), config.head_dim);
    if (spec.has_indexer())
      w.indexer = IndexerWeights{linear(k + ".indexer.wq_b"), linear(k + ".indexer.weights_proj"),
                                 compressor(k + ".indexer.compressor", spec.compress_ratio, 2, config.index_head_dim)};
    return w;
  }
};

std::string golden_path() { return std::string(DSV4_SOURCE_DIR) + "/tests/golden/attention_small_seed7.safetensors"; }

Golden golden_open() {
  Golden g;
  g.file = SafetensorsFile::open(golden_path());
  const auto& meta = g.file->metadata();
  DSV4_CHECK(meta.at("format") == "dsv4-golden-attention", "format %s", meta.at("format").c_str());
  const nlohmann::json j = nlohmann::json::parse(meta.at("config"));
  ModelConfig& c = g.config;
  c = ModelConfig::tiny();
  c.origin = "attention fixture";
  c.hidden_size = j.at("hidden_size");
  c.num_heads = j.at("num_attention_heads");
  c.head_dim = j.at("head_dim");
  c.rope_head_dim = j.at("rope_dim");
  c.q_lora_rank = j.at("q_lora_rank");
  c.o_groups = j.at("o_groups");
  c.o_lora_rank = j.at("o_lora_rank");
  c.sliding_window = j.at("sliding_window");
  c.num_layers = 3;
  c.compress_ratios = {0, j.at("csa").get<int>(), j.at("hca").get<int>()};
  c.index_n_heads = j.at("index_n_heads");
  c.index_head_dim = j.at("index_head_dim");
  c.index_topk = j.at("index_topk");
  c.yarn = YarnScaling{true, 16.0, j.at("orig").get<int64_t>(), 32.0, 1.0};
  g.tokens = j.at("T");
  return g;
}

TEST(AttentionGolden, MatchesTransformers) {
  const Golden g = golden_open();
  const ModelConfig& c = g.config;
  const int64_t T = g.tokens;
  const Vec x = g.f32("x");
  ASSERT_EQ(int64_t(x.size()), T * c.hidden_size);
  const LayerSpec specs[] = {spec_of(AttentionKind::kSliding, 0), spec_of(AttentionKind::kCsa, c.compress_ratios[1]),
                             spec_of(AttentionKind::kHca, c.compress_ratios[2])};
  const char* names[] = {"swa", "csa", "hca"};
  for (int i = 0; i < 3; ++i) {
    const std::string k = names[i];
    const AttentionWeights w = g.attention(k, specs[i]);
    const RopeTable rope = rope_table_build(c, rope_is_compressed(specs[i]), T);
    const Vec want = g.f32(k + ".out");
    ASSERT_GT(max_abs(want), 0.1) << k;
    if (specs[i].has_compressor()) {
      const Vec entries = compressor_forward(*w.compressor, c, rope, x.data(), T, {});
      const MaxErr e = max_err(entries, g.f32(k + ".compressed"));
      EXPECT_LT(e.rel, 1e-5) << k << " compressed entries [" << T / specs[i].compress_ratio << ", " << c.head_dim
                             << "] worst at " << e.where;
      std::printf("[ golden ] %s compressed entries: max abs %.3g, rel %.3g\n", k.c_str(), e.abs, e.rel);
    }
    std::vector<bool> tie_row(static_cast<size_t>(T), false);
    if (specs[i].has_indexer()) {
      // transformers' picks: [T, k] entry ids, −1 where dropped as invisible, in score order;
      // its scores [T, W] before the visibility mask.
      const int ratio = specs[i].compress_ratio;
      const int64_t W = T / ratio;
      const TensorInfo* ti = g.file->find("csa.topk");
      ASSERT_NE(ti, nullptr);
      std::vector<int64_t> topk(static_cast<size_t>(ti->numel()));
      std::memcpy(topk.data(), g.file->bytes(*ti).data(), topk.size() * 8);
      const int64_t kk = ti->shape[1];
      const Vec ref_scores = g.f32("csa.index_scores");
      ASSERT_EQ(int64_t(ref_scores.size()), T * W);
      Vec qr(static_cast<size_t>(T * c.q_lora_rank));
      linear_forward(x.data(), T, c.hidden_size, w.wq_a.w.data(), c.q_lora_rank, qr.data());
      rmsnorm_forward(qr.data(), T, c.q_lora_rank, w.q_norm.data(), 1e-6f, qr.data());
      const Vec scores = indexer_scores(*w.indexer, c, rope, x.data(), qr.data(), T, {});
      Vec got_vis, want_vis;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t e = 0; e < compressed_visible(t, ratio, W); ++e)
          got_vis.push_back(scores[t * W + e]), want_vis.push_back(ref_scores[t * W + e]);
      const MaxErr se = max_err(got_vis, want_vis);
      EXPECT_LT(se.rel, 1e-5) << "indexer scores of visible entries";
      std::printf("[ golden ] csa indexer scores: max abs %.3g, rel %.3g\n", se.abs, se.rel);
      const auto picks = indexer_select(*w.indexer, c, rope, x.data(), qr.data(), T, {});
      int64_t pruning = 0, ties = 0;
      for (int64_t t = 0; t < T; ++t) {
        std::vector<int32_t> ref;
        for (int64_t j = 0; j < kk; ++j)
          if (topk[t * kk + j] >= 0) ref.push_back(int32_t(topk[t * kk + j]));
        std::sort(ref.begin(), ref.end());
        pruning += int64_t(picks[t].size()) < compressed_visible(t, ratio, W);
        if (picks[t] == ref) continue;
        // torch.topk orders equal scores arbitrarily (ReLU makes exact-zero ties likely with few
        // index heads); a different pick is acceptable only as a tie under the oracle's scores.
        float kept_min = INFINITY, dropped_max = -INFINITY;
        for (int64_t e = 0; e < compressed_visible(t, ratio, W); ++e) {
          const float s = ref_scores[t * W + e];
          if (std::count(picks[t].begin(), picks[t].end(), int32_t(e))) kept_min = std::min(kept_min, s);
          else dropped_max = std::max(dropped_max, s);
        }
        EXPECT_EQ(picks[t].size(), ref.size()) << "query " << t;
        EXPECT_LE(dropped_max - kept_min, 1e-6f * std::max(1.0f, std::fabs(kept_min)))
            << "indexer picks of query " << t << " are not a top-k of transformers' scores";
        tie_row[static_cast<size_t>(t)] = true;
        ++ties;
      }
      EXPECT_GT(pruning, 0) << "the fixture must exercise pruning";
      std::printf("[ golden ] csa indexer: %lld of %lld queries prune, %lld picked differently among tied scores\n",
                  static_cast<long long>(pruning), static_cast<long long>(T), static_cast<long long>(ties));
    }
    Vec out = run(w, c, specs[i], x, T);
    // Rows whose picks differ only by a tie attend to different entries; compare the others.
    for (int64_t t = 0; t < T; ++t)
      if (tie_row[static_cast<size_t>(t)])
        std::copy_n(want.begin() + t * c.hidden_size, c.hidden_size, out.begin() + t * c.hidden_size);
    const MaxErr e = max_err(out, want);
    // fp32 vs fp32 with different summation orders; the reference doc reports ~1e-6 relative.
    EXPECT_LT(e.rel, 1e-5) << k << " out [" << T << ", " << c.hidden_size << "] worst at t=" << e.where / c.hidden_size
                           << " d=" << e.where % c.hidden_size << ": " << out[e.where] << " vs " << want[e.where];
    std::printf("[ golden ] %s attention out: max abs %.3g, rel %.3g\n", k.c_str(), e.abs, e.rel);
  }
}

}  // namespace
}  // namespace dsv4::model

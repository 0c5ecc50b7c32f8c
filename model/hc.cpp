// hc.cpp: manifold-constrained hyper-connections (mHC, reference §3.1), CPU reference in fp32.
// Defines hc_pre (collapse the n residual streams into the sublayer input and compute the
// post/comb mixing weights, with the Sinkhorn projection), hc_post (expand the sublayer output
// back into the streams) and hc_head (the final collapse, pre weights only).
//
// Numerics: all HC math is fp32 in every numeric mode. In bf16 mode the *caller* rounds what
// the reference stores in bf16: the residual state X between sites, and y = Σ_j pre_j X[j]
// before RMSNorm. These functions never round, so fp32 and bf16 mode share one code path.
//
// Oracle: transformers 5.17.0 modeling_deepseek_v4.py, DeepseekV4HyperConnection (lines
// 915-943), DeepseekV4HyperHead (958-962) and the post-mix in DeepseekV4DecoderLayer
// (1136-1138, 1142-1144).
// Tests: tests/model/test_hc.cpp (build/hb/tests/test_model --gtest_filter='*Hc*').
//
// Legend: T = tokens, n = hc_mult, D = hidden, mix = (2 + n) n.
#include "model/hc.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "common/parallel.h"
#include "model/ops.h"

namespace dsv4::model {
namespace {

// Per-token loops are cheap next to the GEMM; parallelise only over large token blocks so the
// thread start-up never dominates a tiny-model test.
constexpr int64_t kTokensPerJob = 64;

template <typename Body>
void tokens_parallel(int64_t tokens, int64_t work_per_token, const Body& body) {
  const int64_t jobs = (tokens + kTokensPerJob - 1) / kTokensPerJob;
  auto run_job = [&](size_t job) {
    const int64_t begin = static_cast<int64_t>(job) * kTokensPerJob;
    const int64_t end = std::min(tokens, begin + kTokensPerJob);
    for (int64_t t = begin; t < end; ++t) body(t);
  };
  // NOTE: below ~1M multiply-adds the fork-join costs more than it saves.
  if (jobs <= 1 || tokens * work_per_token < (int64_t{1} << 20)) {
    for (int64_t j = 0; j < jobs; ++j) run_job(static_cast<size_t>(j));
  } else {
    parallel_for(static_cast<size_t>(jobs), 0, run_job);
  }
}

// m[T, rows] = (fn · x_t) · r_t with r_t = 1/sqrt(mean(x_t²) + rms_norm_eps) over all n·D values
// of token t (unweighted RMS of the flattened, stream-major state).
// NOTE: transformers normalises x first and then applies fn (lines 926-927,
// `F.linear(input_norm(flat), fn)`); DeepSeek's reference and §3.1.1 scale the product by r.
// Both are the same math; the order only moves fp32 rounding (~1e-7 relative), and scaling the
// product avoids a normalised copy of the whole [T, n·D] state. The GEMM is row-stable
// (model/ops.h): with N = mix = 24 plain sgemm rounds differently for T ≲ 50.
std::vector<float> hc_mix_logits(const std::vector<float>& fn, int64_t rows,
                                 const ModelConfig& config, const float* state, int64_t tokens) {
  const int64_t flat = config.hc_dim();
  std::vector<float> m(static_cast<size_t>(tokens * rows));  // [T, rows]
  linear_forward_row_stable(state, tokens, flat, fn.data(), rows, m.data());
  const double eps = config.rms_norm_eps;
  tokens_parallel(tokens, flat, [&](int64_t t) {
    const float* x = state + t * flat;
    // Accumulate in double (like rmsnorm_forward) so the reference has no summation-order effects.
    double sum_sq = 0.0;
    for (int64_t i = 0; i < flat; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
    const float r = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(flat) + eps));
    for (int64_t i = 0; i < rows; ++i) m[static_cast<size_t>(t * rows + i)] *= r;
  });
  return m;
}

// y[t] = Σ_j pre[t, j] X[t, j, :], summed in stream order like transformers' `.sum(dim=2)`.
void hc_collapse(const float* pre, const float* state, int64_t tokens, int n, int64_t hidden,
                 float* y) {
  tokens_parallel(tokens, n * hidden, [&](int64_t t) {
    const float* x = state + t * n * hidden;
    const float* p = pre + t * n;
    float* yt = y + t * hidden;
    for (int64_t d = 0; d < hidden; ++d) yt[d] = p[0] * x[d];
    for (int j = 1; j < n; ++j) {
      const float* xj = x + j * hidden;
      for (int64_t d = 0; d < hidden; ++d) yt[d] += p[j] * xj[d];
    }
  });
}

// Sinkhorn projection of one token's n×n comb logits onto (approximately) doubly stochastic
// matrices, exactly transformers' loop (lines 934-938), which is also §3.1.1 step 8:
//   C = softmax_rows(C) + eps;  C /= (colsum + eps);
//   repeat iters − 1 times: C /= (rowsum + eps);  C /= (colsum + eps).
// NOTE: eps is added to the softmax output and inside every denominator, so columns sum to 1
// only up to ~n·eps, and rows (normalised before the last column step) also keep the residual
// of 20 iterations: ~1e-3 for comb logits of a few units (tests/model/test_hc.cpp).
void hc_sinkhorn(float* c, int n, int iters, float eps) {
  for (int j = 0; j < n; ++j) {
    float* row = c + j * n;
    float mx = row[0];
    for (int k = 1; k < n; ++k) mx = std::max(mx, row[k]);
    float sum = 0.0f;
    for (int k = 0; k < n; ++k) {
      row[k] = std::exp(row[k] - mx);
      sum += row[k];
    }
    for (int k = 0; k < n; ++k) row[k] = row[k] / sum + eps;
  }
  auto normalise_columns = [&] {
    for (int k = 0; k < n; ++k) {
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) sum += c[j * n + k];
      const float denom = sum + eps;
      for (int j = 0; j < n; ++j) c[j * n + k] /= denom;
    }
  };
  auto normalise_rows = [&] {
    for (int j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int k = 0; k < n; ++k) sum += c[j * n + k];
      const float denom = sum + eps;
      for (int k = 0; k < n; ++k) c[j * n + k] /= denom;
    }
  };
  normalise_columns();
  for (int it = 1; it < iters; ++it) {
    normalise_rows();
    normalise_columns();
  }
}

void hc_check_state(const ModelConfig& config, const float* state, int64_t tokens,
                    const void* out) {
  DSV4_CHECK_IN("hc", tokens >= 0, "negative token count %lld", static_cast<long long>(tokens));
  DSV4_CHECK_IN("hc", config.hc_mult > 0 && config.hidden_size > 0, "hc_mult %d, hidden %d",
                config.hc_mult, config.hidden_size);
  DSV4_CHECK_IN("hc", tokens == 0 || (state != nullptr && out != nullptr),
                "null state or output for %lld tokens", static_cast<long long>(tokens));
}

}  // namespace

void hc_pre(const HcWeights& w, const ModelConfig& config, const float* state, int64_t tokens,
            float* y, HcMix& mix) {
  hc_check_state(config, state, tokens, y);
  const int n = config.hc_mult;
  const int64_t hidden = config.hidden_size;
  const int64_t mixes = config.hc_mix();
  DSV4_CHECK_IN("hc", static_cast<int64_t>(w.fn.size()) == mixes * config.hc_dim(),
                "fn has %zu values, expected [%lld, %d]", w.fn.size(),
                static_cast<long long>(mixes), config.hc_dim());
  DSV4_CHECK_IN("hc", static_cast<int64_t>(w.base.size()) == mixes && w.scale.size() == 3,
                "base has %zu values (expected %lld), scale %zu (expected 3)", w.base.size(),
                static_cast<long long>(mixes), w.scale.size());
  DSV4_CHECK_IN("hc", config.hc_sinkhorn_iters >= 1, "hc_sinkhorn_iters %d < 1",
                config.hc_sinkhorn_iters);

  mix.post.assign(static_cast<size_t>(tokens * n), 0.0f);
  mix.comb.assign(static_cast<size_t>(tokens * n * n), 0.0f);
  if (tokens == 0) return;

  const std::vector<float> m = hc_mix_logits(w.fn, mixes, config, state, tokens);  // [T, mix]
  std::vector<float> pre(static_cast<size_t>(tokens * n));                         // [T, n]
  // hc_eps is a Python float added to fp32 tensors in transformers: the arithmetic is fp32.
  const float eps = static_cast<float>(config.hc_eps);
  const float* base = w.base.data();
  const float* scale = w.scale.data();
  tokens_parallel(tokens, mixes * 8, [&](int64_t t) {
    const float* mt = m.data() + t * mixes;
    for (int j = 0; j < n; ++j) {
      // NOTE: pre gets + hc_eps after the sigmoid (line 931), post has none (line 932).
      pre[static_cast<size_t>(t * n + j)] = sigmoid(mt[j] * scale[0] + base[j]) + eps;
      mix.post[static_cast<size_t>(t * n + j)] = 2.0f * sigmoid(mt[n + j] * scale[1] + base[n + j]);
    }
    float* c = mix.comb.data() + t * n * n;  // [n, n], row j = source stream
    for (int i = 0; i < n * n; ++i) c[i] = mt[2 * n + i] * scale[2] + base[2 * n + i];
    hc_sinkhorn(c, n, config.hc_sinkhorn_iters, eps);
  });
  hc_collapse(pre.data(), state, tokens, n, hidden, y);
}

void hc_post(const ModelConfig& config, const float* f, const float* state, const HcMix& mix,
             int64_t tokens, float* next_state) {
  hc_check_state(config, state, tokens, next_state);
  const int n = config.hc_mult;
  const int64_t hidden = config.hidden_size;
  DSV4_CHECK_IN("hc",
                static_cast<int64_t>(mix.post.size()) == tokens * n &&
                    static_cast<int64_t>(mix.comb.size()) == tokens * n * n,
                "mix has post %zu / comb %zu values for %lld tokens, n = %d", mix.post.size(),
                mix.comb.size(), static_cast<long long>(tokens), n);
  DSV4_CHECK_IN("hc", tokens == 0 || f != nullptr, "null sublayer output");
  DSV4_CHECK_IN("hc", state != next_state || tokens == 0,
                "hc_post cannot run in place: every output stream reads all input streams");
  // X'[k] = post_k f + Σ_j C[j][k] X[j]. NOTE: the sum runs over the *first* index of C
  // (transformers lines 1137/1143: `comb.transpose(-1, -2) @ hidden_states`); C is not symmetric.
  // transformers adds the post term first and the matmul result second; we start from post·f
  // and add the streams in order j = 0..n-1, the same up to fp32 summation order.
  tokens_parallel(tokens, n * n * hidden, [&](int64_t t) {
    const float* ft = f + t * hidden;
    const float* x = state + t * n * hidden;
    const float* post = mix.post.data() + t * n;
    const float* c = mix.comb.data() + t * n * n;
    float* out = next_state + t * n * hidden;
    for (int k = 0; k < n; ++k) {
      float* ok = out + k * hidden;
      for (int64_t d = 0; d < hidden; ++d) ok[d] = post[k] * ft[d];
      for (int j = 0; j < n; ++j) {
        const float cjk = c[j * n + k];
        const float* xj = x + j * hidden;
        for (int64_t d = 0; d < hidden; ++d) ok[d] += cjk * xj[d];
      }
    }
  });
}

void hc_head(const HcWeights& w, const ModelConfig& config, const float* state, int64_t tokens,
             float* y) {
  hc_check_state(config, state, tokens, y);
  const int n = config.hc_mult;
  DSV4_CHECK_IN("hc", static_cast<int64_t>(w.fn.size()) == int64_t{n} * config.hc_dim(),
                "head fn has %zu values, expected [%d, %d]", w.fn.size(), n, config.hc_dim());
  DSV4_CHECK_IN("hc", static_cast<int>(w.base.size()) == n && w.scale.size() == 1,
                "head base has %zu values (expected %d), scale %zu (expected 1)", w.base.size(), n,
                w.scale.size());
  if (tokens == 0) return;
  const std::vector<float> m = hc_mix_logits(w.fn, n, config, state, tokens);  // [T, n]
  std::vector<float> pre(static_cast<size_t>(tokens * n));                     // [T, n]
  const float eps = static_cast<float>(config.hc_eps);
  // Same pre formula as hc_pre with the head's single scale (transformers line 961).
  for (int64_t t = 0; t < tokens; ++t) {
    for (int j = 0; j < n; ++j) {
      const size_t i = static_cast<size_t>(t * n + j);
      pre[i] = sigmoid(m[i] * w.scale[0] + w.base[static_cast<size_t>(j)]) + eps;
    }
  }
  hc_collapse(pre.data(), state, tokens, n, config.hidden_size, y);
}

}  // namespace dsv4::model

// ops.cpp: dense CPU primitives (see ops.h).
#include "model/ops.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "model/rope.h"

namespace dsv4::model {

void linear_forward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y) {
  DSV4_CHECK_IN("ops", rows >= 0 && in > 0 && out > 0, "linear [%lld, %lld] x [%lld, %lld]ᵀ",
                static_cast<long long>(rows), static_cast<long long>(in), static_cast<long long>(out),
                static_cast<long long>(in));
  if (rows == 0) return;
  // Row-major y = x · wᵀ: M = rows, N = out, K = in.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(out),
              static_cast<int>(in), 1.0f, x, static_cast<int>(in), w, static_cast<int>(in), 0.0f, y,
              static_cast<int>(out));
}

void linear_forward_row_stable(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y) {
  const int64_t min_rows = (kRowStableMinOutputs + out - 1) / out;
  if (rows == 0 || rows >= min_rows) {
    linear_forward(x, rows, in, w, out, y);
    return;
  }
  std::vector<float> x_pad(static_cast<size_t>(min_rows * in), 0.0f);  // [min_rows, in]
  std::vector<float> y_pad(static_cast<size_t>(min_rows * out));       // [min_rows, out]
  std::copy(x, x + rows * in, x_pad.begin());
  linear_forward(x_pad.data(), min_rows, in, w, out, y_pad.data());
  std::copy(y_pad.begin(), y_pad.begin() + rows * out, y);
}

void rmsnorm_forward(const float* x, int64_t rows, int64_t dim, const float* weight, float eps,
                     float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double sum_sq = 0.0;
    for (int64_t d = 0; d < dim; ++d) sum_sq += static_cast<double>(xr[d]) * xr[d];
    const float inv = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + eps));
    for (int64_t d = 0; d < dim; ++d) yr[d] = weight ? xr[d] * inv * weight[d] : xr[d] * inv;
  }
}

void bf16_round(float* values, size_t count) {
  for (size_t i = 0; i < count; ++i) values[i] = bf16_decode(bf16_encode(values[i]));
}

void swiglu_clamped(float* g, const float* u, size_t count, float limit) {
  for (size_t i = 0; i < count; ++i) {
    const float gate = std::min(g[i], limit);
    const float up = std::clamp(u[i], -limit, limit);
    g[i] = silu(gate) * up;
  }
}

void norm_rope_reference(const float* x, int64_t rows, int64_t dim, const NormRopeArgs& op, float* y) {
  DSV4_CHECK_IN("norm_rope", rows >= 0 && dim > 0 && op.rows_per_token > 0 && op.tokens_per_seq > 0,
                "[%lld, %lld] rows, %lld rows per token, %lld tokens per sequence", static_cast<long long>(rows),
                static_cast<long long>(dim), static_cast<long long>(op.rows_per_token),
                static_cast<long long>(op.tokens_per_seq));
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * dim;
    if (yr != x + r * dim) std::copy(x + r * dim, x + (r + 1) * dim, yr);
    if (op.normalize) {
      rmsnorm_forward(yr, 1, dim, op.weight, op.eps, yr);
      bf16_round(yr, static_cast<size_t>(dim));
    }
    if (op.rope != nullptr) {
      rope_apply(yr, dim, *op.rope, ((r / op.rows_per_token) % op.tokens_per_seq) * op.stride, op.inverse);
      bf16_round(yr, static_cast<size_t>(dim));
    }
  }
}

void swiglu_reference(const float* gu, int64_t rows, int64_t inter, float limit, float* h, const float* row_weights,
                      float* hw) {
  DSV4_CHECK_IN("swiglu", (row_weights == nullptr) == (hw == nullptr), "weighted output needs both weights and hw");
  std::vector<float> g(static_cast<size_t>(inter));
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = gu + r * 2 * inter;
    std::copy(gr, gr + inter, g.begin());
    swiglu_clamped(g.data(), gr + inter, g.size(), limit);
    for (int64_t c = 0; c < inter; ++c) {
      h[r * inter + c] = bf16_decode(bf16_encode(g[static_cast<size_t>(c)]));
      if (hw != nullptr) hw[r * inter + c] = bf16_decode(bf16_encode(g[static_cast<size_t>(c)] * row_weights[r]));
    }
  }
}

}  // namespace dsv4::model

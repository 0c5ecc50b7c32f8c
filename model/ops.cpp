// ops.cpp: dense CPU primitives (see ops.h).
#include "model/ops.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "common/parallel.h"
#include "model/rope.h"

namespace dsv4::model {

namespace {

// OpenBLAS's own threads split a GEMM by the thread count, which moves rows between its
// Haswell/Zen micro-kernels and changes their low bits (ops.h): the forward's GEMMs run with one
// BLAS thread, in fixed column blocks spread over our threads instead.
void blas_single_threaded() {
  static const bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
}

// A block's work (rows·in·cols multiply-adds) below which the blocks run on the calling thread.
constexpr int64_t kParallelWork = int64_t{1} << 22;

}  // namespace

void linear_forward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y, int threads) {
  DSV4_CHECK_IN("ops", rows >= 0 && in > 0 && out > 0, "linear [%lld, %lld] x [%lld, %lld]ᵀ",
                static_cast<long long>(rows), static_cast<long long>(in), static_cast<long long>(out),
                static_cast<long long>(in));
  if (rows == 0) return;
  blas_single_threaded();
  // Row-major y = x · wᵀ per block of outputs: M = rows, N = the block's columns, K = in.
  const int64_t blocks = (out + kLinearColumnBlock - 1) / kLinearColumnBlock;
  const auto block = [&](size_t b) {
    const int64_t n0 = static_cast<int64_t>(b) * kLinearColumnBlock, n = std::min(kLinearColumnBlock, out - n0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(n),
                static_cast<int>(in), 1.0f, x, static_cast<int>(in), w + n0 * in, static_cast<int>(in), 0.0f, y + n0,
                static_cast<int>(out));
  };
  if (blocks > 1 && rows * in * kLinearColumnBlock >= kParallelWork) {
    parallel_for(static_cast<size_t>(blocks), threads, block);
  } else {
    for (int64_t b = 0; b < blocks; ++b) block(static_cast<size_t>(b));
  }
}

void linear_forward_row_stable(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, float* y) {
  // Each sgemm call is at most kLinearColumnBlock outputs wide.
  const int64_t width = std::min(out, kLinearColumnBlock);
  const int64_t min_rows = (kRowStableMinOutputs + width - 1) / width;
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

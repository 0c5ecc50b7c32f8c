// ops.cpp: dense CPU primitives (see ops.h).
#include "model/ops.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "common/check.h"
#include "common/codec.h"

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

}  // namespace dsv4::model

// turboquant_gptq.cpp: GPTQ on the rotated weights with the TurboQuant codebook (see turboquant_gptq.h).
#include "quant/turboquant_gptq.h"

#include <vector>

#include "common/check.h"
#include "common/parallel.h"
#include "quant/gptq_prepare.h"

namespace dsv4::quant {
namespace {

// H' = R·H·Rᵀ for the block-diagonal rotation R, h zero-padded to [n, n].
std::vector<float> rotated_hessian(const TqCodec& codec, const float* h, int64_t cols, int64_t n) {
  const int g = codec.group_size();
  std::vector<float> m(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) m[static_cast<size_t>(i * n + j)] = h[i * cols + j];
  }
  for (int64_t i = 0; i < n; ++i) {  // rows: H·Rᵀ, each row segment rotated
    for (int64_t b = 0; b < n; b += g) codec.rotate(m.data() + i * n + b);
  }
  std::vector<float> col(static_cast<size_t>(g));
  for (int64_t j = 0; j < n; ++j) {  // columns: R·(H·Rᵀ)
    for (int64_t a = 0; a < n; a += g) {
      for (int k = 0; k < g; ++k) col[static_cast<size_t>(k)] = m[static_cast<size_t>((a + k) * n + j)];
      codec.rotate(col.data());
      for (int k = 0; k < g; ++k) m[static_cast<size_t>((a + k) * n + j)] = col[static_cast<size_t>(k)];
    }
  }
  return m;
}

}  // namespace

GptqResult tq_gptq_solve(const TqCodec& codec, const float* w, int64_t rows, int64_t cols, const float* h,
                         const GptqOptions& opts) {
  const int g = codec.group_size();
  const int64_t groups = tq_groups_per_row(cols, g), n = groups * g;
  GptqResult r;
  std::vector<float> u(static_cast<size_t>(n * n));
  const std::vector<float> hr = rotated_hessian(codec, h, cols, n);
  const GptqPrepared prep = gptq_prepare_reference(hr.data(), n, opts, ActOrder::kNone, u.data());
  r.dampening_frac_used = prep.dampening_frac_used;
  r.damp = prep.damp;
  r.damping_escalations = prep.damping_escalations;
  r.fallback = prep.fallback;
  r.dead_columns = static_cast<int64_t>(prep.dead.size());
  r.qparams.rows = rows, r.qparams.cols = cols, r.qparams.scale_rows = rows, r.qparams.scale_cols = groups;
  if (prep.fallback == GptqFallback::kRtnNoTokens || prep.fallback == GptqFallback::kRtnCholeskyFailed) {
    TqResult t = tq_quantize(codec, w, rows, cols);  // the data-free quantizer is this profile's RTN
    r.codes = std::move(t.indices);
    r.qparams.scale = std::move(t.norms);
    r.dequant = std::move(t.dequant);
    return r;
  }
  r.codes.assign(static_cast<size_t>(rows * n), 0);
  r.qparams.scale.assign(static_cast<size_t>(rows * groups), 0.0f);
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  parallel_for(static_cast<size_t>(rows), 0, [&](size_t row) {
    std::vector<float> x(static_cast<size_t>(n), 0.0f);  // W'[row], the rotated, padded row
    for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(c)] = w[static_cast<int64_t>(row) * cols + c];
    float* s = r.qparams.scale.data() + row * groups;
    for (int64_t k = 0; k < groups; ++k) {
      s[k] = tq_norm(x.data() + k * g, g);  // R keeps the norm; this is the stored tq_norm
      codec.rotate(x.data() + k * g);
    }
    for (int32_t d : prep.dead) x[static_cast<size_t>(d)] = 0.0f;
    int32_t* idx = r.codes.data() + row * n;
    double loss = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const float scale = s[j / g] > 0.0f ? s[j / g] : 1.0f;
      int32_t i = 0;
      const float v = x[static_cast<size_t>(j)] / scale;
      while (i < static_cast<int32_t>(codec.boundaries().size()) && codec.boundaries()[static_cast<size_t>(i)] < v) ++i;
      idx[j] = i;
      const float q = codec.centroids()[static_cast<size_t>(i)] * s[j / g];
      const float* uj = u.data() + j * n;
      const float err = (x[static_cast<size_t>(j)] - q) / uj[j];
      loss += 0.5 * static_cast<double>(err) * static_cast<double>(err);
      for (int64_t k = j + 1; k < n; ++k) x[static_cast<size_t>(k)] -= err * uj[k];
    }
    row_loss[row] = loss;
  });
  for (double l : row_loss) r.loss += l;
  r.dequant = tq_dequantize(codec, r.codes, r.qparams.scale, rows, cols);
  return r;
}

}  // namespace dsv4::quant

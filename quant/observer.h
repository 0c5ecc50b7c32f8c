// observer.h: weight observers (llm-compressor observers/, gptq_and_formats.md §1.9). Weight
// observers are memoryless: each call sees the whole weight once and keeps nothing.
//
//   QParams qp = observer_qparams(args, w, rows, cols);   // minmax or mse per args.observer
//
// minmax: per qparam cell min/max. mse: per-cell grid search over shrink factors
// p = 1 - i/grid, i < int(maxshrink*grid), error sum |fake_quant(x) - x|^norm, stopping after
// `patience` steps in which no cell improved. Tests: tests/quant/test_observer.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/quant_args.h"
#include "quant/quantizer.h"

namespace dsv4::quant {

// Per-cell statistics on the qparam grid of args (row-major, scale_rows*scale_cols long), plus
// max |w| over the whole tensor (the NVFP4 global-scale input).
struct MinMaxStats {
  std::vector<float> min_vals;
  std::vector<float> max_vals;
  float amax_tensor = 0.0f;
};

MinMaxStats observer_minmax(const QuantArgs& args, const float* w, int64_t rows, int64_t cols);
// Best per-cell (min, max) of the MSE grid search; amax_tensor is the unshrunk tensor amax.
// col_weights [cols] (>= 0), when given, weight each element's error by its column's: GPTQ's
// Hessian-weighted scale search passes diag(H) (ScaleSearch::kHessian, gptq.h).
MinMaxStats observer_mse(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                         const float* col_weights = nullptr);

// Qparams from the observer named in args.observer. `amax_tensor` > 0 overrides the tensor amax
// used for the NVFP4 global scale (fused partners share it, §1.9).
QParams observer_qparams(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                         float amax_tensor = 0.0f);

// Qparams of the column-weighted MSE grid search, whatever args.observer says (its grid,
// maxshrink, norm, patience and expand are used).
QParams observer_qparams_weighted(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                                  const float* col_weights, float amax_tensor = 0.0f);

// Per-cell fake-quantization error sum |deq - w|^norm under the given qparams.
std::vector<double> observer_cell_error(const QuantArgs& args, const QParams& qp, const float* w,
                                        float norm);

}  // namespace dsv4::quant

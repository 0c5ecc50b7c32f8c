// linear_stable.h: linear_forward whose result for each row depends only on that row, bit for
// bit, whatever the number of rows in the call. Used where the row set of a GEMM depends on
// other tokens (MoE experts run on the rows routed to them) or where T may differ between two
// runs that must agree on a shared prefix (HC mixing logits, router, shared expert).
//
//   linear_forward_row_stable(x, rows, in, w, out, y);   // same contract as linear_forward
//
// Why: OpenBLAS 0.3.21 (Debian, AVX-512 AMD EPYC) takes a different sgemm code path, which
// rounds differently, for small problems: measured, rows·out ≤ ~1200 (K = 32 and K = 256) gave
// different bits than the same rows inside a larger call; above that, every row count 1..300
// and row offset gave identical bits (K×N up to 4096×2048). So calls are zero-padded to at least
// kRowStableMinOutputs / out rows (≈ 7× that switch point). Real-size layers (out ≥ 2048) never
// pad. Guarded by MoeForward.RowsDoNotDependOnOtherTokens (tests/model/test_moe.cpp).
// Header-only so it needs no CMake change; it could move into model/ops.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "model/ops.h"

namespace dsv4::model {

inline constexpr int64_t kRowStableMinOutputs = 8192;

inline void linear_forward_row_stable(const float* x, int64_t rows, int64_t in, const float* w,
                                      int64_t out, float* y) {
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

}  // namespace dsv4::model

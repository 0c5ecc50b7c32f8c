// correlated_hessian.h: a Hessian from `tokens` rows that share a common component across the
// columns, under which GPTQ moves many codes away from RTN. Shared by the calib tests.
#pragma once

#include <cstdint>
#include <vector>

#include "common/rng.h"
#include "quant/hessian.h"

namespace dsv4 {

inline quant::HessianResult correlated_hessian(int64_t cols, int64_t tokens, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(tokens * cols));
  for (int64_t t = 0; t < tokens; ++t) {
    const float common = rng.normal();
    for (int64_t k = 0; k < cols; ++k) x[static_cast<size_t>(t * cols + k)] = rng.normal() + 0.7f * common;
  }
  quant::HessianAccumulator acc(cols);
  acc.add(x.data(), tokens);
  return acc.finalize();
}

}  // namespace dsv4

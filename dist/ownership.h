// ownership.h: which rank solves which module (DESIGN §2 "plan ownership"). Computed from the
// module plan alone, before the layer loop, identically on every rank, so the reduce and share
// collectives derived from it match on every rank (the field's hang #2734 came from ranks
// holding different module sets).
//
//   std::vector<double> cost = {...};                  // per module of a layer, solve cost
//   std::vector<int> owner = ownership_assign(cost, world);
//
// Longest-processing-time greedy: modules by decreasing cost (ties: lower index first), each to
// the least loaded rank (ties: lower rank). Same-cost experts therefore spread evenly, and
// attention modules go by size.
// Tests: tests/dist/test_ownership.cpp.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4::dist {

std::vector<int> ownership_assign(const std::vector<double>& cost, int world);

// Solve cost of one [rows, cols] module: GPTQ ~ cols³ (Cholesky/inverse) + 2·rows·cols² (sweep);
// data-free ~ rows·cols.
double solve_cost(int64_t rows, int64_t cols, bool gptq);

}  // namespace dsv4::dist

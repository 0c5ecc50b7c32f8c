// ownership.cpp: LPT assignment of modules to ranks (see ownership.h).
#include "dist/ownership.h"

#include <algorithm>
#include <numeric>

#include "common/check.h"

namespace dsv4::dist {

std::vector<int> ownership_assign(const std::vector<double>& cost, int world) {
  DSV4_CHECK_IN("dist", world >= 1, "world size %d", world);
  std::vector<size_t> order(cost.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<double> load(static_cast<size_t>(world), 0.0);
  std::vector<int> owner(cost.size(), 0);
  for (size_t i : order) {
    const size_t r = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = static_cast<int>(r);
    load[r] += cost[i];
  }
  return owner;
}

double solve_cost(int64_t rows, int64_t cols, bool gptq) {
  const double r = static_cast<double>(rows), c = static_cast<double>(cols);
  return gptq ? c * c * c + 2.0 * r * c * c : r * c;
}

}  // namespace dsv4::dist

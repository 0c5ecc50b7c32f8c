// cuda_grid.h: the block count of a grid-stride kernel launch, one rule for every kernel file.
//
//   kernel<<<grid_blocks(n), 256, 0, stream>>>(...);          // ceil(n / 256) in [1, 65535]
//   kernel<<<grid_blocks(n, 128, 1 << 20), 128, 0, stream>>>(...);
#pragma once

#include <cstdint>

namespace dsv4 {

// ceil(items / threads) clamped to [1, cap]: the kernels' grid-stride loops cover what a capped
// grid leaves, and at least one block keeps an empty launch valid.
inline int grid_blocks(int64_t items, int threads = 256, int64_t cap = 65535) {
  const int64_t blocks = (items + threads - 1) / threads;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace dsv4

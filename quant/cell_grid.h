// cell_grid.h: where the qparam cells of a weight lie, for kernels that walk them
// (observer_cuda.cu, quantizer_cuda.cu). Cell (cr, sc) of a [rows, cols] weight covers rows
// [cr·cell_h, +cell_h) and columns [sc·cell_w, +cell_w), clipped at the edge (ragged blocks,
// gptq_and_formats.md §4.1); the grid is quantizer.h's qparams_shape.
#pragma once

#include <cstdint>

#include "quant/quant_args.h"
#include "quant/quantizer.h"

namespace dsv4::quant {

struct CellGrid {
  int64_t rows = 0, cols = 0;
  int64_t scale_rows = 0, scale_cols = 0;
  int64_t cell_h = 1, cell_w = 1;
#if defined(__CUDACC__)
  __host__ __device__
#endif
  int64_t cells() const { return scale_rows * scale_cols; }
};

inline CellGrid cell_grid(const QuantArgs& args, int64_t rows, int64_t cols) {
  CellGrid g;
  g.rows = rows;
  g.cols = cols;
  qparams_shape(args, rows, cols, &g.scale_rows, &g.scale_cols);
  switch (args.strategy) {
    case Strategy::kTensor: g.cell_h = rows; g.cell_w = cols; break;
    case Strategy::kChannel: g.cell_h = 1; g.cell_w = cols; break;
    case Strategy::kBlock: g.cell_h = args.block_structure[0]; g.cell_w = args.block_structure[1]; break;
    case Strategy::kGroup:
    case Strategy::kTensorGroup: g.cell_h = 1; g.cell_w = args.group_size; break;
  }
  return g;
}

}  // namespace dsv4::quant

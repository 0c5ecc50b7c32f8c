// ops_cuda.h: the forward's row-wise kernels on the GPU (CUDA builds; issue 9), each the bf16
// numeric mode of a CPU primitive in model/ops.h and model/rope.h: the same fp32 operations in
// the same order (round-to-nearest intrinsics, so nvcc cannot fuse a multiply-add the CPU does
// not), and the norms' sums of squares in double like rmsnorm_forward. Activations are bf16 bits.
//
//   DeviceRopeTable rope(rope_table_build(config, compressed, positions));
//   norm_rope_cuda(q, T * H, dh, {.eps = 1e-6f, .rope = rope.view(), .pos = {.rows_per_token = H,
//                  .tokens_per_seq = T}}, q, stream);   // per-head norm, round, RoPE, round
//
// Internal to model/: block_cuda.cu and its parts call these; tests compare them through the
// block. Legend: T = tokens per sequence, H = heads, dh = head dim.
#pragma once

#include <cstdint>
#include <memory>

#include "model/rope.h"

struct CUstream_st;

namespace dsv4::model {

using DeviceStream = CUstream_st*;  // cudaStream_t

// A RoPE table in device memory: cos, sin [positions, rope_dim/2] fp32, the CPU table's floats.
struct DeviceRope {
  int rope_dim = 0;
  int64_t positions = 0;
  const float* cos = nullptr;
  const float* sin = nullptr;
};

class DeviceRopeTable {
 public:
  explicit DeviceRopeTable(const RopeTable& table);  // uploads (synchronous)
  DeviceRope view() const { return view_; }

 private:
  std::shared_ptr<void> memory_;
  DeviceRope view_;
};

// The position of row r of a batch of sequences laid out back to back:
// ((r / rows_per_token) % tokens_per_seq) · stride (stride: the compressor's window ratio).
struct RowPositions {
  int64_t rows_per_token = 1;
  int64_t tokens_per_seq = 1;
  int64_t stride = 1;
};

// Per row of `dim` values: y = x / sqrt(mean(x²) + eps) ⊙ weight (weight null: unweighted; skipped
// when normalize is false), rounded to bf16; then, with a rope, the trailing rope_dim values
// rotated at the row's position (inverse: −φ) and rounded again. In place (y == x) is allowed.
struct NormRope {
  bool normalize = true;
  const float* weight = nullptr;  // [dim] fp32 or null
  float eps = 1e-6f;
  const DeviceRope* rope = nullptr;
  bool inverse = false;
  RowPositions pos;
};
void norm_rope_cuda(const uint16_t* x, int64_t rows, int64_t dim, const NormRope& op, uint16_t* y,
                    DeviceStream stream);

// h[r, c] = bf16(silu(min(g, limit)) · clamp(u, −limit, limit)) for gu [rows, 2·inter] (gate in
// columns [0, inter), up in [inter, 2·inter), bf16) → h [rows, inter]: the CPU's swiglu_clamped on
// bf16-rounded GEMM outputs, rounded like its tap copy. With row_weights, also
// hw[r, c] = bf16(swiglu · row_weights[r]): the reference folds the routing weight into h before
// w2 (§3.4), rounding once.
void swiglu_cuda(const uint16_t* gu, int64_t rows, int64_t inter, float limit, uint16_t* h,
                 const float* row_weights, uint16_t* hw, DeviceStream stream);

// y = bf16(x) elementwise.
void bf16_from_f32_cuda(const float* x, int64_t count, uint16_t* y, DeviceStream stream);
// y = fp32(x) elementwise (exact).
void f32_from_bf16_cuda(const uint16_t* x, int64_t count, float* y, DeviceStream stream);

}  // namespace dsv4::model

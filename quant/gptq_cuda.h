// gptq_cuda.h: GPTQ on the GPU, batched over many matrices of one shape (CUDA builds; issue 8).
// The same algorithm as gptq.h's CPU reference, split in the two parts whose costs differ:
//
//   1. gptq_prepare_cuda: per distinct Hessian, act-order permutation, dead columns, relative
//      damping with escalation (the host policy of gptq_prepare.h, shared with the CPU reference
//      gptq_prepare_reference), and U = chol((H + damp·I)⁻¹, upper) in fp64 through cuSOLVER,
//      rounded to fp32: computed as the inverse of the reversed matrix's Cholesky factor (potrf,
//      trtri; gptq_prepare_cuda.cu says why that is the same U). One factorisation per distinct H,
//      reused by every matrix sharing it (in all-experts mode, all 512 w1/w3 of a layer). Reads
//      info back to the host to escalate: the one planned synchronisation per Hessian.
//   2. gptq_sweep_cuda: the blocked column sweep of `count` matrices at once. Per 128-column
//      block, one kernel runs the in-block sweep of every row of every matrix (GptqSweepKernel:
//      its columns in registers, the block's U in shared memory); strided-batched GEMMs apply
//      W[:, i2:] -= Err·U[i1:i2, i2:] to all matrices (GptqUpdate: SGEMM, or 3xTF32 on the tensor
//      cores), for blocks in pairs (the second block's columns first, then everything after it
//      with both blocks' errors: k = 256).
//
//   GptqPrepared p = gptq_prepare_cuda(solver, d_h, cols, opts, ActOrder::kStatic, d_u);
//   GptqSweep s{...};   // weights in p's column order, qparams, outputs
//   gptq_sweep_cuda(blas, s, stream);
//
// Numerics: the sweep runs in fp32 with the CPU reference's operations inside a block, every
// column receiving its updates in the same order (no FMA contraction), so in-block results are
// the CPU's bit for bit; the between-block update is a cuBLAS SGEMM (FP32, no TF32) or 3xTF32
// (error ~2⁻²¹ per product), whose summation differs from the CPU loop, so a few codes can round
// the other way; the
// Cholesky factorisation runs in fp64 as on the CPU (a mathematically equal, cheaper chain: its
// fp64 roundings differ, U's fp32 values rarely). Tests: tests/quant/test_gptq_cuda.cu (codes vs
// gptq_solve); speed: bench/gptq_layer.cu.
// Scope today: integer schemes (symmetric or asymmetric; channel, group, tensor strategies) with
// qparams computed up front (kUpfront) and act-order none or static. Lazy qparams, act-order group
// and FP4/FP8 code formats run on the CPU path.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/gptq.h"
#include "quant/gptq_prepare.h"

struct CUstream_st;
struct cublasContext;
struct cusolverDnContext;

namespace dsv4 {
class DeviceArena;
}

namespace dsv4::quant {

using DeviceStream = CUstream_st*;
using BlasHandle = cublasContext*;
using SolverHandle = cusolverDnContext*;

// h: device fp32 [cols, cols] (finalized H, original order). Writes u: device fp32 [cols, cols],
// upper triangular, permuted order. `stream` is set on the solver handle. The CPU reference is
// gptq_prepare_reference (gptq_prepare.h): the same plan and damping, U equal up to fp64 rounding.
GptqPrepared gptq_prepare_cuda(SolverHandle solver, const float* h, int64_t cols, const GptqOptions& opts,
                               ActOrder order, float* u, DeviceStream stream);

// `count` Hessians at once (in all-experts mode, the 256 w2 Hessians of a layer), with the
// results of gptq_prepare_cuda: one-matrix cuSOLVER calls at these sizes are latency-bound
// (256 potrf + trtri of 2048² took 0.41 s on 8 streams of an H100), so the chains run batched
// (quant/cholesky_batched_cuda.h), up to 64 Hessians and 4 GiB of fp64 scratch per batch, and
// Hessians that are not positive definite at the first damping are redone one at a time with
// escalation. U differs from gptq_prepare_cuda's only by fp64 rounding (the blocked algorithm sums
// in another order), far below U's fp32 rounding. h[i]: device [cols, cols]; u + i·cols²: its U.
// Synchronises `stream` once per batch. Scratch (the batch's fp64 copies) comes from `arena`:
// gptq_prepare_many_scratch_bytes(count, cols), 0 for one Hessian (cuSOLVER's own path).
size_t gptq_prepare_many_scratch_bytes(int count, int64_t cols);
std::vector<GptqPrepared> gptq_prepare_many_cuda(BlasHandle blas, SolverHandle solver, const float* const* h, int count,
                                                 int64_t cols, const GptqOptions& opts, ActOrder order, float* u,
                                                 DeviceArena& arena, DeviceStream stream);

// wp[b][r][j] = w[b][r][perm[j]], zero for dead columns: the sweep's input for `count` matrices
// [rows, cols] (original order) sharing p's Hessian.
void gptq_permute_cuda(const float* w, int count, int64_t rows, int64_t cols, const GptqPrepared& p, float* wp,
                       DeviceStream stream);

// Host: the qparam column of each permuted column (static order keeps the original column's
// group, gptq.cpp), for GptqSweep::qcol.
std::vector<int32_t> gptq_qparam_columns(const QuantArgs& args, const QParams& qp, const GptqPrepared& p);

// The in-block kernel for full 128-column blocks (shorter blocks, unaligned buffers and rows
// with more qparam groups than the kernels hold take the generic one-thread-per-row kernel).
// Both give the same bits (each weight gets its updates in the same order with the same
// operations); tests/quant/test_gptq_cuda.cu checks it.
enum class GptqSweepKernel {
  kRowwise,  // one thread per row, one 32-column sub-block at a time in registers
  kSliced,   // four threads per row, one 32-column slice each, errors passed by warp shuffles
};

// The between-block update W[:, later] -= Err·U[block, later].
enum class GptqUpdate {
  kFp32,    // cuBLAS SGEMM (true FP32): the reference's operations in another summation order
  kTf32x3,  // one TF32 tensor-core GEMM of three times the depth on hi/lo splits (3xTF32): the
            // dropped lo·lo term is ~2⁻²² of each product, so fp32-class; needs update_scratch
};

// Where the kernels store each weight's code and dequantized value.
enum class GptqStore {
  kScattered,   // at its original column (out_col) as it is swept: with act-order, one 4-byte
                // store per weight into a 32-byte sector that nothing else of the launch touches
  kSweepOrder,  // in the sweep's column order (contiguous per row and block), then each row put
                // back in original order in shared memory by one pass at the end (cols ≤ 8192)
};

struct GptqSweep {
  int count = 0;                 // matrices
  int64_t rows = 0, cols = 0;
  int block_size = 128;          // <= 128
  float* w = nullptr;            // [count, rows, cols] fp32, PERMUTED column order; overwritten
  const float* u = nullptr;      // [cols, cols] upper, permuted order
  int64_t u_stride = 0;          // elements between matrices' U (0: one U shared by all)
  const float* scale = nullptr;  // [count, scale_rows, scale_cols] effective scales
  const float* zero_point = nullptr;  // same grid
  int64_t scale_rows = 0, scale_cols = 0;
  const int32_t* qcol = nullptr;     // [cols] qparam column of permuted column j
  const int32_t* out_col = nullptr;  // [cols] original column of permuted column j (null: j)
  int64_t col_map_stride = 0;        // elements between matrices' qcol/out_col (0: shared, with U)
  float qmin = 0.0f, qmax = 0.0f;
  bool bf16_dequant = false;     // scale dtype "model": dequantized values rounded to bf16
  int32_t* codes = nullptr;      // [count, rows, cols] original order
  float* dequant = nullptr;      // [count, rows, cols] original order
  double* loss = nullptr;        // [count], added to: Σ ((w−q)/d)² (halve for llm-compressor's)
  float* err = nullptr;          // scratch [count, rows, 2·block_size]: two blocks' errors
  bool identity_u = false;       // RTN fallbacks: no between-block update
  GptqSweepKernel kernel = GptqSweepKernel::kSliced;
  GptqUpdate update = GptqUpdate::kFp32;
  float* update_scratch = nullptr;  // kTf32x3: gptq_sweep_update_scratch_floats(...) floats
  GptqStore store = GptqStore::kScattered;
};

// Scratch floats GptqUpdate::kTf32x3 needs: the split errors of `count` matrices and the split U
// rows of one block pair (one copy when the matrices share U).
size_t gptq_sweep_update_scratch_floats(int count, int64_t rows, int64_t cols, int block_size, bool shared_u);

void gptq_sweep_cuda(BlasHandle blas, const GptqSweep& s, DeviceStream stream);

}  // namespace dsv4::quant

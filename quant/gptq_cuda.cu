// gptq_cuda.cu: the batched GPU GPTQ sweep (see gptq_cuda.h): the columns permuted, then swept
// block by block in the CPU reference's fp32 operation order. Its preparation (U from H) is
// gptq_prepare_cuda.cu.
#include "quant/gptq_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "quant/quantizer_inline.h"
#include "quant/stream_scratch_cuda.h"

namespace dsv4::quant {
namespace {

constexpr int kRowsPerCta = 128;  // one thread per weight row
constexpr int kMaxBlock = 128;

// One block per row (grid-stride), threads across the columns: no 64-bit division per element
// (the flat-index form spent most of its time in emulated int64 div/mod).
__global__ void permute_kernel(const float* w, int64_t total_rows, int cols, const int32_t* perm,
                               const uint8_t* dead, float* wp) {
  for (int64_t r = blockIdx.x; r < total_rows; r += gridDim.x) {
    const float* src = w + r * cols;
    float* dst = wp + r * cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dst[j] = dead[j] ? 0.0f : src[perm[j]];
  }
}

struct SweepKernelArgs {
  float* w;
  const float* u;
  int64_t u_stride, rows, cols, scale_rows, scale_cols;
  const float* scale;
  const float* zero_point;
  const int32_t* qcol;
  const int32_t* out_col;
  int64_t col_map_stride;
  float qmin, qmax;
  bool bf16_dequant;
  int32_t* codes;
  float* dequant;
  double* loss;
  float* err;
  int block_size;
  int64_t err_ld;  // floats between rows of err: two blocks' errors side by side
  int err_col;     // where this block's errors start in the row
};

// The in-block sweep of columns [i1, i1 + nb) for kRowsPerCta rows of matrix blockIdx.y; the
// CPU reference's per-row loop, in the same fp32 operation order (explicit _rn intrinsics: no
// FMA contraction).
__global__ void sweep_block_kernel(SweepKernelArgs a, int64_t i1, int nb) {
  extern __shared__ float smem[];
  float* ub = smem;                   // [nb][nb]: U[i1 + k][i1 + kk]
  float* w1 = smem + nb * nb;         // [nb][kRowsPerCta + 1]: column k of the CTA's rows
  constexpr int ld = kRowsPerCta + 1;  // padded: conflict-free both when loading and sweeping
  const int t = threadIdx.x;
  const int64_t b = blockIdx.y, row0 = static_cast<int64_t>(blockIdx.x) * kRowsPerCta;
  float* w = a.w + b * a.rows * a.cols;
  const float* u = a.u + b * a.u_stride;
  for (int x = t; x < nb * nb; x += kRowsPerCta) {
    const int k = x / nb, kk = x % nb;
    ub[x] = u[(i1 + k) * a.cols + i1 + kk];
  }
  for (int x = t; x < kRowsPerCta * nb; x += kRowsPerCta) {
    const int r = x / nb, k = x % nb;
    const int64_t row = row0 + r;
    w1[k * ld + r] = row < a.rows ? w[row * a.cols + i1 + k] : 0.0f;
  }
  __syncthreads();
  const int64_t row = row0 + t;
  if (row >= a.rows) return;
  const int64_t cell_row = (b * a.scale_rows + (a.scale_rows == 1 ? 0 : row)) * a.scale_cols;
  const int32_t* qcol = a.qcol + b * a.col_map_stride;
  const int32_t* out_col = a.out_col ? a.out_col + b * a.col_map_stride : nullptr;
  const int64_t out_row = (b * a.rows + row) * a.cols;
  float* err = a.err + (b * a.rows + row) * a.err_ld + a.err_col;
  double loss = 0.0;
  for (int k = 0; k < nb; ++k) {
    const int64_t j = i1 + k;
    const float x = w1[k * ld + t];
    const int64_t cell = cell_row + qcol[j];
    const float s = a.scale[cell], zp = a.zero_point[cell];
    float deq;
    const int32_t code = quantize_int(x, s, zp, a.qmin, a.qmax, a.bf16_dequant, &deq);
    const float d = ub[k * nb + k];
    const float diff = __fsub_rn(x, deq);
    loss += static_cast<double>(diff) * diff / (static_cast<double>(d) * d);
    const float e = __fdiv_rn(diff, d);
    err[k] = e;
    const int64_t out = out_row + (out_col ? out_col[j] : j);
    a.codes[out] = code;
    a.dequant[out] = deq;
    for (int kk = k + 1; kk < nb; ++kk) w1[kk * ld + t] = __fsub_rn(w1[kk * ld + t], __fmul_rn(e, ub[k * nb + kk]));
  }
  atomicAdd(&a.loss[b], loss);
}

// The same sweep for a full 128-column block, 4 threads per row: thread q of a row keeps
// columns [32q, 32q + 32) in registers (loops fully unrolled, so indices are static); at step k
// the owner of column k quantises it and broadcasts e by a warp shuffle, and every thread applies
// e to its own later columns. Each column still receives its updates in increasing k with the
// CPU's operations, so the result is the CPU's bit for bit. U's block sits in shared memory with
// a 4-float pad between the four 32-column slices, so the four float4 reads of a warp hit
// different banks. Measured on H100 (bench/gptq_layer.cu): 12x faster than one thread per row,
// whose 128 columns spilled registers at 4 resident warps per SM.
constexpr int kSliceCols = 32;
constexpr int kSlices = kMaxBlock / kSliceCols;          // 4 threads per row
constexpr int kSliceLd = kSliceCols + 4;                 // padded slice stride in shared memory
// U's block is upper triangular, so row k of phase p = k / 32 keeps only slices p..3: phase p's
// 32 rows are (4 - p)·kSliceLd floats long and start at phase_base(p). 46 KiB instead of 72 KiB
// for the full block lets three CTAs share an SM (24 warps instead of 16: the in-order sweep is
// latency-bound, so resident warps are its throughput).
__host__ __device__ constexpr int phase_row_len(int p) { return (kSlices - p) * kSliceLd; }
__host__ __device__ constexpr int phase_base(int p) {
  return p == 0 ? 0 : phase_base(p - 1) + kSliceCols * phase_row_len(p - 1);
}
constexpr int kPackedU = phase_base(kSlices);  // 11,520 floats
constexpr int kSlicedThreads = 256;                      // 64 row slots per CTA
constexpr int kRowsPerThread = 1;                        // rows per slot (2 measured slower: 128 registers)
constexpr int kSlicedRows = kSlicedThreads / kSlices * kRowsPerThread;  // rows per CTA
constexpr int kMaxSlicedScaleCols = 64;  // qparam groups per row the sliced kernel holds
// Shared memory of the sliced kernel for rows with `scale_cols` qparam groups.
size_t sliced_smem(int64_t scale_cols) {
  return (static_cast<size_t>(kPackedU) + 2 * static_cast<size_t>(kSlicedRows) * scale_cols) * sizeof(float) +
         2 * kMaxBlock * sizeof(int32_t);
}

// Each thread sweeps the same 32-column slice of kRowsPerThread rows (slot, slot + 64, ...), whose
// steps are independent and share every U value read from shared memory. Two rows per thread
// were 17% slower on H100 than one (128 registers: fewer resident warps), so the layer runs
// with one; the loops over rows cost nothing then.
__global__ void __launch_bounds__(kSlicedThreads, 3) sweep_block_sliced_kernel(SweepKernelArgs a, int64_t i1) {
  constexpr int R = kRowsPerThread, kSlots = kSlicedThreads / kSlices;
  extern __shared__ float4 smem4[];
  // ub [k][q * kSliceLd + c] = U[i1 + k][i1 + 32q + c]; then the qparams of the CTA's rows (every
  // group of a row: a few KiB) and the block's qparam and output columns. Everything a sweep step
  // reads is in shared memory: global loads there stalled the in-order warps on L1TEX for half of
  // their cycles (ncu on H100).
  float* ub = reinterpret_cast<float*>(smem4);
  float* sc = ub + kPackedU;                                                   // [kSlicedRows][scale_cols]
  float* zc = sc + kSlicedRows * a.scale_cols;                                  // [kSlicedRows][scale_cols]
  int32_t* qc = reinterpret_cast<int32_t*>(zc + kSlicedRows * a.scale_cols);  // [kMaxBlock]
  int32_t* oc = qc + kMaxBlock;                                                 // [kMaxBlock]
  const int tid = threadIdx.x, q = tid % kSlices, lane = tid % 32, slot = tid / kSlices;
  const int64_t b = blockIdx.y;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kSlicedRows;
  const float* u = a.u + b * a.u_stride;
  for (int x = tid; x < kMaxBlock * kMaxBlock; x += kSlicedThreads) {
    const int k = x / kMaxBlock, kk = x % kMaxBlock;
    const int p = k / kSliceCols, q = kk / kSliceCols;
    if (q >= p) {
      ub[phase_base(p) + (k % kSliceCols) * phase_row_len(p) + (q - p) * kSliceLd + kk % kSliceCols] =
          u[(i1 + k) * a.cols + i1 + kk];
    }
  }
  for (int64_t x = tid; x < kSlicedRows * a.scale_cols; x += kSlicedThreads) {
    const int64_t rr = min(row0 + x / a.scale_cols, a.rows - 1);
    const int64_t cell = (b * a.scale_rows + (a.scale_rows == 1 ? 0 : rr)) * a.scale_cols + x % a.scale_cols;
    sc[x] = a.scale[cell];
    zc[x] = a.zero_point[cell];
  }
  for (int x = tid; x < kMaxBlock; x += kSlicedThreads) {
    qc[x] = a.qcol[b * a.col_map_stride + i1 + x];
    oc[x] = a.out_col ? a.out_col[b * a.col_map_stride + i1 + x] : static_cast<int32_t>(i1 + x);
  }
  __syncthreads();
  bool active[R];
  int64_t out_row[R];
  const float* srow[R];
  const float* zrow[R];
  float* err[R];
  float wr[R][kSliceCols];
  double loss[R];
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int local = slot + j * kSlots;
    const int64_t row = row0 + local;
    active[j] = row < a.rows;
    const int64_t r = active[j] ? row : a.rows - 1;  // inactive rows compute on a copy, store nothing
    const float* wrow = a.w + (b * a.rows + r) * a.cols + i1 + q * kSliceCols;
#pragma unroll
    for (int c = 0; c < kSliceCols; c += 4) {
      const float4 v = *reinterpret_cast<const float4*>(wrow + c);
      wr[j][c] = v.x, wr[j][c + 1] = v.y, wr[j][c + 2] = v.z, wr[j][c + 3] = v.w;
    }
    srow[j] = sc + local * a.scale_cols;
    zrow[j] = zc + local * a.scale_cols;
    out_row[j] = (b * a.rows + r) * a.cols;
    err[j] = a.err + (b * a.rows + r) * a.err_ld + a.err_col;
    loss[j] = 0.0;
  }
  // Phase p sweeps the 32 columns of slice p (owner: the threads with q == p). The phase loop
  // stays rolled and only the 32 steps inside are unrolled: fully unrolling all 128 steps made a
  // kernel too large for the instruction cache (ncu on H100: instruction-fetch stalls were a third
  // of all stalls). Inside a phase the column index is static, so the owner's value stays in a
  // register, and whether a column is updated is (q > p) or (q >= p), fixed per phase.
#pragma unroll 1
  for (int p = 0; p < kSlices; ++p) {
    const bool later = q > p, owner = q == p;
    // This phase's rows; threads of earlier slices (no updates) read their owner's slice instead.
    const float* up = ub + phase_base(p);
    const int row_len = phase_row_len(p), slice_off = (q > p ? q - p : 0) * kSliceLd;
#pragma unroll
    for (int kc = 0; kc < kSliceCols; ++kc) {
      const int k = p * kSliceCols + kc;
      float e[R];
#pragma unroll
      for (int j = 0; j < R; ++j) e[j] = 0.0f;
      if (owner) {
        const int g = qc[k];
        const float d = up[kc * row_len + kc];
#pragma unroll
        for (int j = 0; j < R; ++j) {
          const float x = wr[j][kc];
          float deq;
          const int32_t code = quantize_int(x, srow[j][g], zrow[j][g], a.qmin, a.qmax, a.bf16_dequant, &deq);
          e[j] = __fdiv_rn(__fsub_rn(x, deq), d);
          // (diff/d)² from the fp32 quotient (relative difference ~1e-7 from the CPU's fp64
          // quotient): an fp64 division per weight sat on the in-order warp's critical path.
          loss[j] += static_cast<double>(e[j]) * e[j];
          if (active[j]) {
            err[j][k] = e[j];
            a.codes[out_row[j] + oc[k]] = code;
            a.dequant[out_row[j] + oc[k]] = deq;
          }
        }
      }
#pragma unroll
      for (int j = 0; j < R; ++j) e[j] = __shfl_sync(0xffffffffu, e[j], (lane & ~(kSlices - 1)) | p);
      const float* uk = up + kc * row_len + slice_off;
#pragma unroll
      for (int c = 0; c < kSliceCols; c += 4) {
        const float4 u4 = *reinterpret_cast<const float4*>(uk + c);
        const float uc[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          // Column 32q + c + i is after k when q > p, or q == p and c + i > kc (static).
          if (later || (owner && c + i > kc)) {
#pragma unroll
            for (int j = 0; j < R; ++j) wr[j][c + i] = __fsub_rn(wr[j][c + i], __fmul_rn(e[j], uc[i]));
          }
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < R; ++j) {
    if (active[j]) atomicAdd(&a.loss[b], loss[j]);
  }
}

// One thread per row, for a full 128-column block: the block's columns go through registers one
// 32-column sub-block at a time. Sub-block p first receives the updates of the block's earlier
// columns (k < 32p), whose errors this thread wrote to `err` during sub-blocks 0..p-1 and reads
// back, then sweeps its own 32 columns. Each weight still receives its updates in increasing k
// with the CPU's rounded operations, so the result is the sliced kernel's (and the CPU loop's) bit
// for bit. Against the sliced kernel: no shuffles, no thread idling through another slice's
// phase, and the deferred updates are 32 independent chains per step, which the in-order warp
// can issue back to back (the sliced kernel was latency-bound: ~26 cycles per instruction).
// U's block sits in shared memory packed by slice: slice q (block columns 32q..32q+31) keeps the
// rows k < 32(q+1) that touch it, 32 floats each; every thread of a warp reads the same U value
// at the same time (a broadcast). The qparams of the CTA's rows are stored group-major
// ([group][row]) so that the warp's reads of one group hit 32 different banks.
constexpr int kRowwiseThreads = 256;  // rows per CTA
__host__ __device__ constexpr int rowwise_slice_base(int q) { return kSliceCols * kSliceCols * q * (q + 1) / 2; }
constexpr int kRowwiseU = rowwise_slice_base(kSlices);  // 10,240 floats (40 KiB)
constexpr int kMaxRowwiseScaleCols = 64;
size_t rowwise_smem(int64_t scale_cols) {
  return (static_cast<size_t>(kRowwiseU) + 2 * static_cast<size_t>(kRowwiseThreads) * scale_cols) * sizeof(float) +
         2 * kMaxBlock * sizeof(int32_t);
}

// Loads the CTA's shared state: packed U, its rows' qparams, the block's qparam and output columns.
__device__ void rowwise_load_shared(const SweepKernelArgs& a, int64_t i1, int64_t b, int64_t row0, float* ub, float* sc,
                                    float* zc, int32_t* qc, int32_t* oc) {
  const int tid = threadIdx.x;
  const float* u = a.u + b * a.u_stride;
  for (int x = tid; x < kMaxBlock * kMaxBlock; x += kRowwiseThreads) {
    const int k = x / kMaxBlock, kk = x % kMaxBlock, q = kk / kSliceCols;
    if (k < (q + 1) * kSliceCols) ub[rowwise_slice_base(q) + k * kSliceCols + kk % kSliceCols] = u[(i1 + k) * a.cols + i1 + kk];
  }
  for (int64_t x = tid; x < kRowwiseThreads * a.scale_cols; x += kRowwiseThreads) {
    const int64_t t = x / a.scale_cols, g = x % a.scale_cols;  // global reads along the row's groups
    const int64_t rr = min(row0 + t, a.rows - 1);
    const int64_t cell = (b * a.scale_rows + (a.scale_rows == 1 ? 0 : rr)) * a.scale_cols + g;
    sc[g * kRowwiseThreads + t] = a.scale[cell];
    zc[g * kRowwiseThreads + t] = a.zero_point[cell];
  }
  for (int x = tid; x < kMaxBlock; x += kRowwiseThreads) {
    qc[x] = a.qcol[b * a.col_map_stride + i1 + x];
    oc[x] = a.out_col ? a.out_col[b * a.col_map_stride + i1 + x] : static_cast<int32_t>(i1 + x);
  }
}

// w[c] -= e·us[c] for the 32 columns, U read as broadcast float4s.
__device__ __forceinline__ void rowwise_apply(float (&w)[kSliceCols], float e, const float* us) {
#pragma unroll
  for (int c = 0; c < kSliceCols; c += 4) {
    const float4 u4 = *reinterpret_cast<const float4*>(us + c);
    w[c] = __fsub_rn(w[c], __fmul_rn(e, u4.x));
    w[c + 1] = __fsub_rn(w[c + 1], __fmul_rn(e, u4.y));
    w[c + 2] = __fsub_rn(w[c + 2], __fmul_rn(e, u4.z));
    w[c + 3] = __fsub_rn(w[c + 3], __fmul_rn(e, u4.w));
  }
}

__global__ void __launch_bounds__(kRowwiseThreads, 2) sweep_block_rowwise_kernel(SweepKernelArgs a, int64_t i1) {
  extern __shared__ float4 smem4[];
  float* ub = reinterpret_cast<float*>(smem4);
  float* sc = ub + kRowwiseU;                                                   // [scale_cols][kRowwiseThreads]
  float* zc = sc + kRowwiseThreads * a.scale_cols;                               // same
  int32_t* qc = reinterpret_cast<int32_t*>(zc + kRowwiseThreads * a.scale_cols);  // [kMaxBlock]
  int32_t* oc = qc + kMaxBlock;                                                  // [kMaxBlock]
  const int t = threadIdx.x;
  const int64_t b = blockIdx.y, row0 = static_cast<int64_t>(blockIdx.x) * kRowwiseThreads, row = row0 + t;
  rowwise_load_shared(a, i1, b, row0, ub, sc, zc, qc, oc);
  __syncthreads();
  if (row >= a.rows) return;  // no barrier follows
  const float* wrow = a.w + (b * a.rows + row) * a.cols + i1;
  float* err = a.err + (b * a.rows + row) * a.err_ld + a.err_col;
  const int64_t out_row = (b * a.rows + row) * a.cols;
  double loss = 0.0;
#pragma unroll 1
  for (int p = 0; p < kSlices; ++p) {
    float wr[kSliceCols];
#pragma unroll
    for (int c = 0; c < kSliceCols; c += 4) {
      const float4 v = *reinterpret_cast<const float4*>(wrow + p * kSliceCols + c);
      wr[c] = v.x, wr[c + 1] = v.y, wr[c + 2] = v.z, wr[c + 3] = v.w;
    }
    const float* us = ub + rowwise_slice_base(p);  // us[k * 32 + c] = U[i1 + k][i1 + 32p + c]
    // The deferred updates from the block's earlier columns, in increasing k.
#pragma unroll 2
    for (int k0 = 0; k0 < p * kSliceCols; k0 += 4) {
      const float4 e4 = *reinterpret_cast<const float4*>(err + k0);  // this thread's own stores
      rowwise_apply(wr, e4.x, us + k0 * kSliceCols);
      rowwise_apply(wr, e4.y, us + (k0 + 1) * kSliceCols);
      rowwise_apply(wr, e4.z, us + (k0 + 2) * kSliceCols);
      rowwise_apply(wr, e4.w, us + (k0 + 3) * kSliceCols);
    }
    // The sweep of this sub-block: column kc is static, so its value stays in a register.
#pragma unroll
    for (int kc = 0; kc < kSliceCols; ++kc) {
      const int k = p * kSliceCols + kc, g = qc[k];
      const float x = wr[kc];
      float deq;
      const int32_t code = quantize_int(x, sc[g * kRowwiseThreads + t], zc[g * kRowwiseThreads + t], a.qmin, a.qmax,
                                        a.bf16_dequant, &deq);
      const float e = __fdiv_rn(__fsub_rn(x, deq), us[k * kSliceCols + kc]);
      loss += static_cast<double>(e) * e;  // (diff/d)² from the fp32 quotient, as the sliced kernel
      err[k] = e;
      a.codes[out_row + oc[k]] = code;
      a.dequant[out_row + oc[k]] = deq;
      const float* uk = us + k * kSliceCols;
#pragma unroll
      for (int c = (kc + 1) / 4 * 4; c < kSliceCols; c += 4) {
        const float4 u4 = *reinterpret_cast<const float4*>(uk + c);
        const float uc[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          if (c + i > kc) wr[c + i] = __fsub_rn(wr[c + i], __fmul_rn(e, uc[i]));
        }
      }
    }
  }
  atomicAdd(&a.loss[b], loss);
}

// GptqStore::kSweepOrder's last pass: row r of codes and dequant, stored in the sweep's column
// order, goes back to the original order (column j to out_col[j]) through shared memory; the
// scattered stores stay inside one row that the block rewrites whole, so L2 merges their sectors.
constexpr int kMaxUnpermuteCols = 8192;  // 64 KiB of shared memory
__global__ void unpermute_rows_kernel(int32_t* codes, float* dequant, int64_t total_rows, int64_t rows, int cols,
                                      const int32_t* out_col, int64_t col_map_stride) {
  extern __shared__ int32_t row_copy[];  // [2][cols]: codes, then dequant bits
  for (int64_t r = blockIdx.x; r < total_rows; r += gridDim.x) {
    const int32_t* oc = out_col + (r / rows) * col_map_stride;
    int32_t* c = codes + r * cols;
    float* d = dequant + r * cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      row_copy[j] = c[j];
      row_copy[cols + j] = __float_as_int(d[j]);
    }
    __syncthreads();
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      const int32_t o = oc[j];
      c[o] = row_copy[j];
      d[o] = __int_as_float(row_copy[cols + j]);
    }
    __syncthreads();
  }
}

// 3xTF32 operands (GptqUpdate::kTf32x3): hi = x rounded to TF32 (its low 13 mantissa bits zero, so
// the tensor cores take it exactly), lo = x − hi (exact in fp32).
__device__ __forceinline__ float tf32_hi(float x) {
  return __uint_as_float((__float_as_uint(x) + 0x1000u) & 0xffffe000u);
}

// e3 row (matrix b, row r): [hi(e) | hi(e) | lo(e)] of the row's k errors, ld = e3_ld.
__global__ void split_errors_kernel(const float* err, int64_t err_ld, int64_t total_rows, int k, float* e3,
                                    int64_t e3_ld) {
  for (int64_t r = blockIdx.x; r < total_rows; r += gridDim.x) {
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
      const float x = err[r * err_ld + j], hi = tf32_hi(x);
      float* dst = e3 + r * e3_ld;
      dst[j] = hi;
      dst[k + j] = hi;
      dst[2 * k + j] = __fsub_rn(x, hi);
    }
  }
}

// u3 (per U, rows of `cols` floats): rows [hi(U) ; lo(U) ; hi(U)] of U[i1:i1+k, c0:c1].
__global__ void split_u_kernel(const float* u, int64_t u_stride, int64_t u3_stride, int64_t cols, int64_t i1, int k,
                               int64_t c0, int64_t c1, float* u3) {
  const int64_t m = blockIdx.y;
  for (int j = blockIdx.x; j < k; j += gridDim.x) {
    const float* src = u + m * u_stride + (i1 + j) * cols;
    float* dst = u3 + m * u3_stride;
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
      const float x = src[c], hi = tf32_hi(x);
      dst[j * cols + c] = hi;
      dst[(k + j) * cols + c] = __fsub_rn(x, hi);
      dst[(2 * k + j) * cols + c] = hi;
    }
  }
}

}  // namespace

void gptq_permute_cuda(const float* w, int count, int64_t rows, int64_t cols, const GptqPrepared& p, float* wp,
                       DeviceStream stream) {
  DSV4_CHECK_IN("gptq", static_cast<int64_t>(p.perm.size()) == cols, "permutation of %zu columns for %lld",
                p.perm.size(), static_cast<long long>(cols));
  std::vector<uint8_t> dead(static_cast<size_t>(cols), 0);
  for (int64_t j = 0; j < cols; ++j) {
    dead[static_cast<size_t>(j)] = std::count(p.dead.begin(), p.dead.end(), p.perm[static_cast<size_t>(j)]) > 0;
  }
  const cudaStream_t s = stream;
  StreamScratch<int32_t> perm(static_cast<size_t>(cols), s);
  StreamScratch<uint8_t> dead_d(static_cast<size_t>(cols), s);
  DSV4_CUDA_CHECK(cudaMemcpyAsync(perm.p, p.perm.data(), static_cast<size_t>(cols) * 4, cudaMemcpyHostToDevice, s));
  DSV4_CUDA_CHECK(cudaMemcpyAsync(dead_d.p, dead.data(), static_cast<size_t>(cols), cudaMemcpyHostToDevice, s));
  const int64_t total = static_cast<int64_t>(count) * rows;
  permute_kernel<<<static_cast<int>(std::min<int64_t>(total, 1 << 20)), 256, 0, s>>>(w, total, static_cast<int>(cols),
                                                                                    perm.p, dead_d.p, wp);
  DSV4_CUDA_CHECK_LAUNCH();
}

std::vector<int32_t> gptq_qparam_columns(const QuantArgs& args, const QParams& qp, const GptqPrepared& p) {
  std::vector<int32_t> q(p.perm.size());
  for (size_t j = 0; j < q.size(); ++j) q[j] = static_cast<int32_t>(qp.scale_col(args, p.perm[j]));
  return q;
}

size_t gptq_sweep_update_scratch_floats(int count, int64_t rows, int64_t cols, int block_size, bool shared_u) {
  const size_t depth = 3 * 2 * static_cast<size_t>(block_size);  // a block pair's errors, split in three
  return depth * (static_cast<size_t>(count) * static_cast<size_t>(rows) +
                  (shared_u ? 1 : static_cast<size_t>(count)) * static_cast<size_t>(cols));
}

void gptq_sweep_cuda(BlasHandle blas, const GptqSweep& sw, DeviceStream stream) {
  DSV4_CHECK_IN("gptq", sw.count >= 0 && sw.rows > 0 && sw.cols > 0, "GPU sweep of %d matrices [%lld, %lld]", sw.count,
                static_cast<long long>(sw.rows), static_cast<long long>(sw.cols));
  DSV4_CHECK_IN("gptq", sw.block_size > 0 && sw.block_size <= kMaxBlock, "GPU sweep block size %d (1..%d)",
                sw.block_size, kMaxBlock);
  DSV4_CHECK_IN("gptq", sw.w && sw.u && sw.scale && sw.zero_point && sw.qcol && sw.codes && sw.dequant && sw.loss && sw.err,
                "GPU sweep with a null buffer");
  if (sw.count == 0) return;
  const cudaStream_t s = stream;
  DSV4_CUBLAS_CHECK(cublasSetStream(blas, s));
  DSV4_CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));  // true FP32, never TF32
  const size_t smem_max = (kMaxBlock * kMaxBlock + kMaxBlock * (kRowsPerCta + 1)) * sizeof(float);
  DSV4_CUDA_CHECK(cudaFuncSetAttribute(sweep_block_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem_max)));
  // kSweepOrder: the kernels store at the sweep's own column (out_col null), the last pass reorders.
  const bool sweep_order = sw.store == GptqStore::kSweepOrder && sw.out_col != nullptr && sw.cols <= kMaxUnpermuteCols;
  const int32_t* kernel_out_col = sweep_order ? nullptr : sw.out_col;
  SweepKernelArgs a{sw.w,    sw.u,         sw.u_stride,     sw.rows,  sw.cols,    sw.scale_rows, sw.scale_cols,
                    sw.scale, sw.zero_point, sw.qcol,        kernel_out_col, sw.col_map_stride, sw.qmin,  sw.qmax,  sw.bf16_dequant,
                    sw.codes, sw.dequant,  sw.loss,         sw.err,   sw.block_size, 2 * static_cast<int64_t>(sw.block_size), 0};
  const dim3 grid(static_cast<unsigned>((sw.rows + kRowsPerCta - 1) / kRowsPerCta), static_cast<unsigned>(sw.count));
  const dim3 grid_sliced(static_cast<unsigned>((sw.rows + kSlicedRows - 1) / kSlicedRows), static_cast<unsigned>(sw.count));
  DSV4_CUDA_CHECK(cudaFuncSetAttribute(sweep_block_sliced_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(sliced_smem(kMaxSlicedScaleCols))));
  DSV4_CUDA_CHECK(cudaFuncSetAttribute(sweep_block_rowwise_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(rowwise_smem(kMaxRowwiseScaleCols))));
  const dim3 grid_rowwise(static_cast<unsigned>((sw.rows + kRowwiseThreads - 1) / kRowwiseThreads),
                          static_cast<unsigned>(sw.count));
  const bool tf32x3 = sw.update == GptqUpdate::kTf32x3 && !sw.identity_u;
  DSV4_CHECK_IN("gptq", !tf32x3 || sw.update_scratch, "GPU sweep: the 3xTF32 update needs its scratch");
  const float minus_one = -1.0f, one = 1.0f;
  // Block i1 (nb columns, errors at err column err_col) in-block.
  const auto sweep_block = [&](int64_t i1, int nb, int err_col) {
    a.err_col = err_col;
    const bool aligned = sw.cols % 4 == 0 && i1 % 4 == 0 && reinterpret_cast<uintptr_t>(sw.w) % 16 == 0;
    // The rowwise kernel reads its errors back as float4s.
    const bool err_aligned = reinterpret_cast<uintptr_t>(sw.err) % 16 == 0 && a.err_ld % 4 == 0 && err_col % 4 == 0;
    if (nb == kMaxBlock && aligned && err_aligned && sw.kernel == GptqSweepKernel::kRowwise &&
        sw.scale_cols <= kMaxRowwiseScaleCols) {
      sweep_block_rowwise_kernel<<<grid_rowwise, kRowwiseThreads, rowwise_smem(sw.scale_cols), s>>>(a, i1);
    } else if (nb == kMaxBlock && aligned && sw.scale_cols <= kMaxSlicedScaleCols) {
      sweep_block_sliced_kernel<<<grid_sliced, kSlicedThreads, sliced_smem(sw.scale_cols), s>>>(a, i1);
    } else {
      const size_t smem = (static_cast<size_t>(nb) * nb + static_cast<size_t>(nb) * (kRowsPerCta + 1)) * sizeof(float);
      sweep_block_kernel<<<grid, kRowsPerCta, smem, s>>>(a, i1, nb);
    }
    DSV4_CUDA_CHECK_LAUNCH();
  };
  // W[:, c0:c1] -= Err[:, 0:k] · U[i1:i1+k, c0:c1] for every matrix. Column-major view: Wᵀ[c0:c1, :]
  // (m = c1-c0, n = rows, ld = cols) -= U[i1:i1+k, c0:c1]ᵀ (m x k, ld = cols) · Errᵀ (k x rows, ld = err_ld).
  const int64_t e3_ld = 3 * a.err_ld, u3_stride = e3_ld * sw.cols;
  const auto update = [&](int64_t c0, int64_t c1, int64_t i1, int k) {
    if (sw.identity_u || c1 <= c0) return;
    if (tf32x3) {  // Wᵀ[c0:c1] -= [U_hi; U_lo; U_hi]ᵀ · [E_hi E_hi E_lo]ᵀ: one GEMM of depth 3k
      float* e3 = sw.update_scratch;
      float* u3 = e3 + static_cast<int64_t>(sw.count) * sw.rows * e3_ld;
      const int64_t total_rows = static_cast<int64_t>(sw.count) * sw.rows;
      split_errors_kernel<<<static_cast<unsigned>(std::min<int64_t>(total_rows, 1 << 16)), 128, 0, s>>>(
          sw.err, a.err_ld, total_rows, k, e3, e3_ld);
      DSV4_CUDA_CHECK_LAUNCH();
      const unsigned us = sw.u_stride == 0 ? 1u : static_cast<unsigned>(sw.count);
      split_u_kernel<<<dim3(static_cast<unsigned>(k), us), 256, 0, s>>>(sw.u, sw.u_stride, u3_stride, sw.cols, i1, k, c0,
                                                                        c1, u3);
      DSV4_CUDA_CHECK_LAUNCH();
      DSV4_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(c1 - c0), static_cast<int>(sw.rows), 3 * k, &minus_one,
          u3 + c0, CUDA_R_32F, static_cast<int>(sw.cols), sw.u_stride == 0 ? 0 : u3_stride, e3, CUDA_R_32F,
          static_cast<int>(e3_ld), sw.rows * e3_ld, &one, sw.w + c0, CUDA_R_32F, static_cast<int>(sw.cols),
          sw.rows * sw.cols, sw.count, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
      return;
    }
    DSV4_CUBLAS_CHECK(cublasSgemmStridedBatched(
        blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(c1 - c0), static_cast<int>(sw.rows), k, &minus_one,
        sw.u + i1 * sw.cols + c0, static_cast<int>(sw.cols), sw.u_stride, sw.err, static_cast<int>(a.err_ld),
        sw.rows * a.err_ld, &one, sw.w + c0, static_cast<int>(sw.cols), sw.rows * sw.cols, sw.count));
  };
  // Blocks go in pairs: block A, its update of block B's columns only, block B, then one update of
  // everything after B with both blocks' errors (k = 2·block_size). Half as many passes over the
  // trailing weights, and a deeper k for the GEMM, than one update per block; the sum of the two
  // blocks' updates is formed in another order, as any GEMM's is.
  for (int64_t i1 = 0; i1 < sw.cols; i1 += 2 * static_cast<int64_t>(sw.block_size)) {
    const int na = static_cast<int>(std::min<int64_t>(sw.block_size, sw.cols - i1));
    sweep_block(i1, na, 0);
    const int64_t ib = i1 + na;
    if (ib >= sw.cols) break;
    const int nbb = static_cast<int>(std::min<int64_t>(sw.block_size, sw.cols - ib));
    update(ib, ib + nbb, i1, na);
    sweep_block(ib, nbb, na);
    update(ib + nbb, sw.cols, i1, na + nbb);
  }
  if (sweep_order) {
    const size_t smem = 2 * static_cast<size_t>(sw.cols) * sizeof(int32_t);
    DSV4_CUDA_CHECK(cudaFuncSetAttribute(unpermute_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(2 * kMaxUnpermuteCols * sizeof(int32_t))));
    const int64_t total_rows = static_cast<int64_t>(sw.count) * sw.rows;
    unpermute_rows_kernel<<<static_cast<unsigned>(std::min<int64_t>(total_rows, 1 << 16)), 256, smem, s>>>(
        sw.codes, sw.dequant, total_rows, sw.rows, static_cast<int>(sw.cols), sw.out_col, sw.col_map_stride);
    DSV4_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace dsv4::quant

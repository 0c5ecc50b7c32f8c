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
  SweepKernelArgs a{sw.w,    sw.u,         sw.u_stride,     sw.rows,  sw.cols,    sw.scale_rows, sw.scale_cols,
                    sw.scale, sw.zero_point, sw.qcol,        sw.out_col, sw.col_map_stride, sw.qmin,  sw.qmax,  sw.bf16_dequant,
                    sw.codes, sw.dequant,  sw.loss,         sw.err,   sw.block_size, 2 * static_cast<int64_t>(sw.block_size), 0};
  const dim3 grid(static_cast<unsigned>((sw.rows + kRowsPerCta - 1) / kRowsPerCta), static_cast<unsigned>(sw.count));
  const dim3 grid_sliced(static_cast<unsigned>((sw.rows + kSlicedRows - 1) / kSlicedRows), static_cast<unsigned>(sw.count));
  DSV4_CUDA_CHECK(cudaFuncSetAttribute(sweep_block_sliced_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(sliced_smem(kMaxSlicedScaleCols))));
  const float minus_one = -1.0f, one = 1.0f;
  // Block i1 (nb columns, errors at err column err_col) in-block.
  const auto sweep_block = [&](int64_t i1, int nb, int err_col) {
    a.err_col = err_col;
    const bool aligned = sw.cols % 4 == 0 && i1 % 4 == 0 && reinterpret_cast<uintptr_t>(sw.w) % 16 == 0;
    if (nb == kMaxBlock && aligned && sw.scale_cols <= kMaxSlicedScaleCols) {
      sweep_block_sliced_kernel<<<grid_sliced, kSlicedThreads, sliced_smem(sw.scale_cols), s>>>(a, i1);
    } else {
      const size_t smem = (static_cast<size_t>(nb) * nb + static_cast<size_t>(nb) * (kRowsPerCta + 1)) * sizeof(float);
      sweep_block_kernel<<<grid, kRowsPerCta, smem, s>>>(a, i1, nb);
    }
    DSV4_CUDA_CHECK_LAUNCH();
  };
  // W[:, c0:c1] -= Err[:, 0:k] · U[i1:i1+k, c0:c1] for every matrix. Column-major view: Wᵀ[c0:c1, :]
  // (m = c1-c0, n = rows, ld = cols) -= U[i1:i1+k, c0:c1]ᵀ (m x k, ld = cols) · Errᵀ (k x rows, ld = err_ld).
  const auto update = [&](int64_t c0, int64_t c1, int64_t i1, int k) {
    if (sw.identity_u || c1 <= c0) return;
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
}

}  // namespace dsv4::quant

// gptq_cuda.cu: the batched GPU GPTQ (see gptq_cuda.h).
#include "quant/gptq_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "quant/cholesky_batched_cuda.h"
#include "quant/quantizer_inline.h"

namespace dsv4::quant {
namespace {

constexpr int kRowsPerCta = 128;  // one thread per weight row
constexpr int kMaxBlock = 128;

// Stream-ordered device scratch (cudaMallocAsync): freeing it does not synchronise the device,
// so preparations on several streams overlap.
template <typename T>
struct Scratch {
  T* p = nullptr;
  cudaStream_t stream;
  Scratch(size_t n, cudaStream_t s) : stream(s) {
    DSV4_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T), s));
  }
  ~Scratch() { cudaFreeAsync(p, stream); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// The Cholesky chain runs on the reversed matrix: with J the reversal permutation and
// J·Hp·J = M·Mᵀ (M lower), Hp = R·Rᵀ for the upper R = J·M·J, so Hp⁻¹ = R⁻ᵀ·R⁻¹ and
// U = R⁻¹ = J·M⁻¹·J is the upper Cholesky factor of Hp⁻¹ (unique with a positive diagonal):
// one potrf and one trtri, 2n³/3 flops against the reference chain's (potrf, potri, potrf) 4n³/3.
// The same U in exact arithmetic; the fp64 roundings differ at ~1e-15, far below U's fp32 ones.

// J·Hp·J with hp[i][j] = h[perm[i]][perm[j]] in fp64; the diagonal: 0 -> 1 (dead column), then
// + damp.
__global__ void build_damped_reversed_kernel(const float* h, const int32_t* perm, int64_t n, double damp, double* hp) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n * n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = x / n, j = x % n;
    double v = h[static_cast<int64_t>(perm[i]) * n + perm[j]];
    if (i == j) {
      if (v == 0.0) v = 1.0;
      v += damp;
    }
    hp[(n - 1 - i) * n + (n - 1 - j)] = v;
  }
}

// u (row-major, upper) = J·M⁻¹·J from M⁻¹ (column-major, lower), rounded to fp32: u[i][c] =
// M⁻¹[n-1-i][n-1-c], stored at column n-1-c, row n-1-i.
__global__ void upper_from_reversed_inverse_kernel(const double* minv, int64_t n, float* u) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n * n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = x / n, c = x % n;
    u[x] = c >= i ? static_cast<float>(minv[(n - 1 - c) * n + (n - 1 - i)]) : 0.0f;
  }
}

// The batched forms: matrix t of a batch reads h[t] with perm + t·n and damp[t], and writes its
// U to u + index[t]·n².
__global__ void build_damped_reversed_batched_kernel(const float* const* h, const int32_t* perm, const double* damp,
                                                     int count, int64_t n, double* hp) {
  // Grid (rows, matrices), threads across a row's columns: no 64-bit division per element.
  const int64_t t = blockIdx.y;
  const int32_t* pt = perm + t * n;
  const float* ht = h[t];
  double* out = hp + t * n * n;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* hrow = ht + static_cast<int64_t>(pt[i]) * n;
    double* orow = out + (n - 1 - i) * n + (n - 1);
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
      double v = hrow[pt[j]];
      if (i == j) {
        if (v == 0.0) v = 1.0;
        v += damp[t];
      }
      orow[-j] = v;
    }
  }
}

// Through 32×32 shared-memory tiles, so both the column-major reads of M⁻¹ and the row-major
// writes of U are coalesced (the element-wise form read with a stride of n doubles). Grid:
// (tiles, tiles, count), 32×8 threads.
__global__ void upper_from_reversed_inverse_batched_kernel(const double* minv, const int32_t* index, int64_t n,
                                                           float* u) {
  __shared__ float tile[32][33];
  const int64_t t = blockIdx.z, i0 = static_cast<int64_t>(blockIdx.y) * 32, c0 = static_cast<int64_t>(blockIdx.x) * 32;
  const double* m = minv + t * n * n;
  for (int dc = threadIdx.y; dc < 32; dc += blockDim.y) {  // u(i0 + tx, c0 + dc) = M⁻¹[n-1-i][n-1-c]
    const int64_t i = i0 + threadIdx.x, c = c0 + dc;
    tile[dc][threadIdx.x] = i < n && c < n ? static_cast<float>(m[(n - 1 - c) * n + (n - 1 - i)]) : 0.0f;
  }
  __syncthreads();
  float* ut = u + static_cast<int64_t>(index[t]) * n * n;
  for (int di = threadIdx.y; di < 32; di += blockDim.y) {
    const int64_t i = i0 + di, c = c0 + threadIdx.x;
    if (i < n && c < n) ut[i * n + c] = c >= i ? tile[threadIdx.x][di] : 0.0f;
  }
}

__global__ void identity_kernel(int64_t n, float* u) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n * n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    u[x] = x / n == x % n ? 1.0f : 0.0f;
  }
}

// info[0] = 1 when any entry is not finite: cuSOLVER's potrf info misses some indefinite
// matrices (an off-diagonal 2×2 minor with eigenvalue -2 "succeeded" with NaNs on H100).
__global__ void flag_nonfinite_kernel(const double* m, int64_t n, int* info) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!isfinite(m[x])) info[0] = 1;
  }
}

// Whether H holds no tokens, from its diagonal alone: H is a Gram matrix, so a zero diagonal means
// H = 0 (the CPU reference scans all of H; reading only the diagonal spares copying H down).
bool diag_all_zero(const std::vector<float>& diag) {
  return std::all_of(diag.begin(), diag.end(), [](float d) { return d == 0.0f; });
}

// One factorisation attempt on J·(H + damp)·J: potrf, then trtri of the factor (L⁻¹ in place,
// the one-matrix form of cholesky_inverse_lower_batched_cuda; CPU twin
// cholesky_inverse_lower_reference); false when not positive definite.
bool cholesky_inverse_lower_cusolver(SolverHandle solver, double* a, int64_t n, cudaStream_t stream) {
  const int ni = static_cast<int>(n);
  int lwork = 0;
  size_t trtri_device = 0, trtri_host = 0;
  DSV4_CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(solver, CUBLAS_FILL_MODE_LOWER, ni, a, ni, &lwork));
  DSV4_CUSOLVER_CHECK(cusolverDnXtrtri_bufferSize(solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, a,
                                                  n, &trtri_device, &trtri_host));
  Scratch<double> work(static_cast<size_t>(lwork), stream);
  Scratch<char> trtri_work(trtri_device, stream);
  std::vector<char> trtri_host_work(std::max<size_t>(trtri_host, 1));
  Scratch<int> info(3, stream);
  DSV4_CUDA_CHECK(cudaMemsetAsync(info.p + 2, 0, sizeof(int), stream));
  // Both steps are queued and their infos read once (one synchronisation per attempt): a failed
  // potrf makes trtri compute garbage, which is discarded with the attempt.
  DSV4_CUSOLVER_CHECK(cusolverDnDpotrf(solver, CUBLAS_FILL_MODE_LOWER, ni, a, ni, work.p, lwork, info.p));
  DSV4_CUSOLVER_CHECK(cusolverDnXtrtri(solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, a, n,
                                       trtri_work.p, trtri_device, trtri_host_work.data(), trtri_host, info.p + 1));
  flag_nonfinite_kernel<<<grid_blocks(n * n), 256, 0, stream>>>(a, n * n, info.p + 2);
  DSV4_CUDA_CHECK_LAUNCH();
  int host_info[3] = {1, 1, 1};
  DSV4_CUDA_CHECK(cudaMemcpyAsync(host_info, info.p, sizeof host_info, cudaMemcpyDeviceToHost, stream));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host_info[0] == 0 && host_info[1] == 0 && host_info[2] == 0;
}

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

GptqPrepared gptq_prepare_cuda(SolverHandle solver, const float* h, int64_t cols, const GptqOptions& opts,
                               ActOrder order, float* u, DeviceStream stream) {
  opts.check();
  DSV4_CHECK_IN("gptq", cols > 0 && cols <= 65536, "GPU GPTQ of %lld columns", static_cast<long long>(cols));
  DSV4_CHECK_IN("gptq", order != ActOrder::kGroup, "act-order group runs on the CPU path");
  const cudaStream_t s = stream;
  DSV4_CUSOLVER_CHECK(cusolverDnSetStream(solver, s));
  const int64_t n = cols;
  std::vector<float> diag(static_cast<size_t>(n));
  DSV4_CUDA_CHECK(cudaMemcpy2DAsync(diag.data(), sizeof(float), h, static_cast<size_t>(n + 1) * sizeof(float),
                                    sizeof(float), static_cast<size_t>(n), cudaMemcpyDeviceToHost, s));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(s));

  const GptqPreparePlan plan = gptq_prepare_plan(diag, order, diag_all_zero(diag));
  GptqPrepared p = plan.prepared;
  if (plan.no_tokens) {
    identity_kernel<<<grid_blocks(n * n), 256, 0, s>>>(n, u);
    DSV4_CUDA_CHECK_LAUNCH();
    return p;
  }

  Scratch<int32_t> perm(static_cast<size_t>(n), s);
  DSV4_CUDA_CHECK(cudaMemcpyAsync(perm.p, p.perm.data(), static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, s));
  Scratch<double> a(static_cast<size_t>(n * n), s);
  for (const GptqDampingStep& step : gptq_damping_schedule(opts, plan.diag_mean)) {
    build_damped_reversed_kernel<<<grid_blocks(n * n), 256, 0, s>>>(h, perm.p, n, step.damp, a.p);
    DSV4_CUDA_CHECK_LAUNCH();
    if (cholesky_inverse_lower_cusolver(solver, a.p, n, s)) {
      upper_from_reversed_inverse_kernel<<<grid_blocks(n * n), 256, 0, s>>>(a.p, n, u);
      DSV4_CUDA_CHECK_LAUNCH();
      gptq_damping_record(p, opts, &step);
      return p;
    }
  }
  gptq_damping_record(p, opts, nullptr);
  identity_kernel<<<grid_blocks(n * n), 256, 0, s>>>(n, u);
  DSV4_CUDA_CHECK_LAUNCH();
  return p;
}

namespace {
// Hessians per batch: up to 64, two fp64 copies each within ~4 GiB.
int prepare_batch(int count, int64_t n) {
  const int64_t fit = std::clamp<int64_t>((int64_t{4} << 30) / (2 * n * n * 8), 1, 64);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(fit, count)));
}
}  // namespace

size_t gptq_prepare_many_scratch_bytes(int count, int64_t cols) {
  if (count <= 1) return 0;
  const size_t b = static_cast<size_t>(prepare_batch(count, cols)), n = static_cast<size_t>(cols);
  const auto up = [](size_t x) { return (x + DeviceArena::kAlign - 1) / DeviceArena::kAlign * DeviceArena::kAlign; };
  return 2 * up(b * n * n * 8) + up(b * n * 4) + up(b * 4) + up(b * 4) + up(b * 8) + up(b * sizeof(void*)) +
         cholesky_inverse_lower_batched_scratch_bytes(static_cast<int>(b));
}

std::vector<GptqPrepared> gptq_prepare_many_cuda(BlasHandle blas, SolverHandle solver, const float* const* h, int count,
                                                 int64_t cols, const GptqOptions& opts, ActOrder order, float* u,
                                                 DeviceArena& arena, DeviceStream stream) {
  opts.check();
  DSV4_CHECK_IN("gptq", count >= 0, "%d Hessians", count);
  DSV4_CHECK_IN("gptq", cols > 0 && cols <= 65536, "GPU GPTQ of %lld columns", static_cast<long long>(cols));
  DSV4_CHECK_IN("gptq", order != ActOrder::kGroup, "act-order group runs on the CPU path");
  std::vector<GptqPrepared> out(static_cast<size_t>(count));
  if (count == 0) return out;
  const cudaStream_t s = stream;
  const int64_t n = cols, nn = n * n;
  if (count == 1) {  // one Hessian (the shared w1/w3 one): cuSOLVER's potrf + trtri are 3x faster than the batched steps
    out[0] = gptq_prepare_cuda(solver, h[0], cols, opts, order, u, s);
    return out;
  }
  // Every diagonal in one round trip, then the plans on the host.
  std::vector<std::vector<float>> diag(static_cast<size_t>(count), std::vector<float>(static_cast<size_t>(n)));
  for (int i = 0; i < count; ++i) {
    DSV4_CUDA_CHECK(cudaMemcpy2DAsync(diag[static_cast<size_t>(i)].data(), sizeof(float), h[i],
                                      static_cast<size_t>(n + 1) * sizeof(float), sizeof(float), static_cast<size_t>(n),
                                      cudaMemcpyDeviceToHost, s));
  }
  DSV4_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<GptqPreparePlan> plans;
  std::vector<int32_t> todo;  // Hessians to factorise
  for (int i = 0; i < count; ++i) {
    plans.push_back(gptq_prepare_plan(diag[static_cast<size_t>(i)], order, diag_all_zero(diag[static_cast<size_t>(i)])));
    out[static_cast<size_t>(i)] = plans.back().prepared;
    if (plans.back().no_tokens) {
      identity_kernel<<<grid_blocks(nn), 256, 0, s>>>(n, u + i * nn);
      DSV4_CUDA_CHECK_LAUNCH();
    } else {
      todo.push_back(i);
    }
  }
  const int batch = prepare_batch(count, n);
  ArenaScope scope(arena);
  double* a = arena.take<double>(static_cast<size_t>(batch * nn), "GPTQ batched Hessians (fp64)");
  double* inv = arena.take<double>(static_cast<size_t>(batch * nn), "GPTQ batched inverse factors (fp64)");
  int32_t* perm = arena.take<int32_t>(static_cast<size_t>(batch * n), "GPTQ batched permutations");
  int32_t* index = arena.take<int32_t>(static_cast<size_t>(batch), "GPTQ batch index");
  int* failed = arena.take<int>(static_cast<size_t>(batch), "GPTQ batch failures");
  double* damp = arena.take<double>(static_cast<size_t>(batch), "GPTQ batch damping");
  const float** hptr = arena.take<const float*>(static_cast<size_t>(batch), "GPTQ batch Hessian pointers");
  std::vector<int32_t> retry;  // not positive definite at the first damping: one at a time, escalating
  for (size_t b0 = 0; b0 < todo.size(); b0 += static_cast<size_t>(batch)) {
    const int m = static_cast<int>(std::min(todo.size() - b0, static_cast<size_t>(batch)));
    std::vector<int32_t> perms, idx(todo.begin() + static_cast<long>(b0), todo.begin() + static_cast<long>(b0) + m);
    std::vector<GptqDampingStep> firsts;  // the schedule's first step: later ones run one at a time below
    std::vector<double> damps;
    std::vector<const float*> hs;
    for (int32_t i : idx) {
      const GptqPreparePlan& pl = plans[static_cast<size_t>(i)];
      perms.insert(perms.end(), pl.prepared.perm.begin(), pl.prepared.perm.end());
      firsts.push_back(gptq_damping_schedule(opts, pl.diag_mean).front());
      damps.push_back(firsts.back().damp);
      hs.push_back(h[i]);
    }
    DSV4_CUDA_CHECK(cudaMemcpyAsync(perm, perms.data(), perms.size() * 4, cudaMemcpyHostToDevice, s));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(index, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice, s));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(damp, damps.data(), damps.size() * 8, cudaMemcpyHostToDevice, s));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(hptr, hs.data(), hs.size() * sizeof(const float*), cudaMemcpyHostToDevice, s));
    build_damped_reversed_batched_kernel<<<dim3(static_cast<unsigned>(std::min<int64_t>(n, 65535)), static_cast<unsigned>(m)),
                                           256, 0, s>>>(hptr, perm, damp, m, n, a);
    DSV4_CUDA_CHECK_LAUNCH();
    cholesky_inverse_lower_batched_cuda(blas, solver, a, inv, m, n, failed, arena, s);
    const unsigned tiles = static_cast<unsigned>((n + 31) / 32);
    upper_from_reversed_inverse_batched_kernel<<<dim3(tiles, tiles, static_cast<unsigned>(m)), dim3(32, 8), 0, s>>>(
        inv, index, n, u);
    DSV4_CUDA_CHECK_LAUNCH();
    std::vector<int> bad(static_cast<size_t>(m));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(bad.data(), failed, bad.size() * sizeof(int), cudaMemcpyDeviceToHost, s));
    DSV4_CUDA_CHECK(cudaStreamSynchronize(s));  // also keeps the host vectors above alive until copied
    for (int t = 0; t < m; ++t) {
      GptqPrepared& p = out[static_cast<size_t>(idx[static_cast<size_t>(t)])];
      if (bad[static_cast<size_t>(t)] != 0) {
        retry.push_back(idx[static_cast<size_t>(t)]);
      } else {
        gptq_damping_record(p, opts, &firsts[static_cast<size_t>(t)]);
      }
    }
  }
  for (int32_t i : retry) out[static_cast<size_t>(i)] = gptq_prepare_cuda(solver, h[i], cols, opts, order, u + i * nn, s);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(s));
  return out;
}

void gptq_permute_cuda(const float* w, int count, int64_t rows, int64_t cols, const GptqPrepared& p, float* wp,
                       DeviceStream stream) {
  DSV4_CHECK_IN("gptq", static_cast<int64_t>(p.perm.size()) == cols, "permutation of %zu columns for %lld",
                p.perm.size(), static_cast<long long>(cols));
  std::vector<uint8_t> dead(static_cast<size_t>(cols), 0);
  for (int64_t j = 0; j < cols; ++j) {
    dead[static_cast<size_t>(j)] = std::count(p.dead.begin(), p.dead.end(), p.perm[static_cast<size_t>(j)]) > 0;
  }
  const cudaStream_t s = stream;
  Scratch<int32_t> perm(static_cast<size_t>(cols), s);
  Scratch<uint8_t> dead_d(static_cast<size_t>(cols), s);
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

// cholesky_batched_cuda.cu: see cholesky_batched_cuda.h.
#include "quant/cholesky_batched_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"

namespace dsv4::quant {
namespace {

constexpr int64_t kBlock = 128;

// ptrs[i] = base + i·stride + offset.
__global__ void pointers_kernel(double* base, int count, int64_t stride, int64_t offset, double** ptrs) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
    ptrs[i] = base + i * stride + offset;
  }
}

__global__ void mark_failed_kernel(const int* info, int count, int* failed) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
    if (info[i] != 0) failed[i] = 1;
  }
}

// cuSOLVER's info does not catch every indefinite matrix (measured: an off-diagonal 2×2 minor
// with eigenvalue -2 factored "successfully" into NaNs), so a non-finite L⁻¹ entry is a failure too.
__global__ void mark_nonfinite_kernel(const double* m, int64_t per, int* failed) {
  // Grid (chunks, matrices): no 64-bit division per element.
  const double* mt = m + blockIdx.y * per;
  bool bad = false;
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < per;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    bad |= !isfinite(mt[x]);
  }
  if (bad) failed[blockIdx.y] = 1;
}

// Grid (columns, matrices): column c of matrix t is e_c.
__global__ void identity_batched_kernel(double* m, int64_t n) {
  double* mt = m + blockIdx.y * n * n;
  for (int64_t c = blockIdx.x; c < n; c += gridDim.x) {
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) mt[c * n + r] = r == c ? 1.0 : 0.0;
  }
}

}  // namespace

size_t cholesky_inverse_lower_batched_scratch_bytes(int count) {
  const auto up = [](size_t x) { return (x + DeviceArena::kAlign - 1) / DeviceArena::kAlign * DeviceArena::kAlign; };
  return up(2 * static_cast<size_t>(count) * sizeof(double*)) + up(static_cast<size_t>(count) * sizeof(int));
}

void cholesky_inverse_lower_batched_cuda(cublasContext* blas, cusolverDnContext* solver, double* a, double* inv,
                                         int count, int64_t n, int* failed, DeviceArena& arena, CUstream_st* stream) {
  DSV4_CHECK_IN("gptq", count >= 0 && n > 0 && n < (int64_t{1} << 31), "batched Cholesky of %d matrices of %lld",
                count, static_cast<long long>(n));
  if (count == 0) return;
  const cudaStream_t s = stream;
  DSV4_CUBLAS_CHECK(cublasSetStream(blas, s));
  DSV4_CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
  DSV4_CUSOLVER_CHECK(cusolverDnSetStream(solver, s));
  ArenaScope scope(arena);
  // [2][count]: the diagonal blocks, then the panels below them.
  double** ptrs = arena.take<double*>(2 * static_cast<size_t>(count), "batched Cholesky pointers");
  int* info = arena.take<int>(static_cast<size_t>(count), "batched Cholesky info");
  double** diag = ptrs;
  double** panel = ptrs + count;
  const int ld = static_cast<int>(n);
  const int64_t stride = n * n;
  const double one = 1.0, minus_one = -1.0;
  DSV4_CUDA_CHECK(cudaMemsetAsync(failed, 0, static_cast<size_t>(count) * sizeof(int), s));
  for (int64_t j = 0; j < n; j += kBlock) {
    const int b = static_cast<int>(std::min(kBlock, n - j));
    pointers_kernel<<<grid_blocks(count), 256, 0, s>>>(a, count, stride, j * n + j, diag);
    DSV4_CUDA_CHECK_LAUNCH();
    DSV4_CUSOLVER_CHECK(cusolverDnDpotrfBatched(solver, CUBLAS_FILL_MODE_LOWER, b, diag, ld, info, count));
    mark_failed_kernel<<<grid_blocks(count), 256, 0, s>>>(info, count, failed);
    DSV4_CUDA_CHECK_LAUNCH();
    const int64_t below = n - j - b;
    if (below == 0) break;
    // A21 := A21 · L11⁻ᵀ, then A22 -= A21 · A21ᵀ (full square: a DGEMM on the tensor cores beats
    // a triangular update that cuBLAS does not batch).
    pointers_kernel<<<grid_blocks(count), 256, 0, s>>>(a, count, stride, j * n + j + b, panel);
    DSV4_CUDA_CHECK_LAUNCH();
    DSV4_CUBLAS_CHECK(cublasDtrsmBatched(blas, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T,
                                         CUBLAS_DIAG_NON_UNIT, static_cast<int>(below), b, &one, diag, ld, panel, ld,
                                         count));
    DSV4_CUBLAS_CHECK(cublasDgemmStridedBatched(blas, CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(below),
                                                static_cast<int>(below), b, &minus_one, a + j * n + j + b, ld, stride,
                                                a + j * n + j + b, ld, stride, &one, a + (j + b) * n + j + b, ld,
                                                stride, count));
  }
  // L⁻¹ = [[A, 0], [B, C]]⁻¹ = [[A⁻¹, 0], [-C⁻¹·B·A⁻¹, C⁻¹]] with the split at h ≈ n/2: A⁻¹ and
  // C⁻¹ by triangular solves against identity slabs (slab [c, c + 128) of a lower inverse is zero
  // above row c, so it needs only the trailing system), the off-diagonal block by two DGEMMs,
  // which run several times faster than the solves.
  const dim3 per_matrix(static_cast<unsigned>(std::min<int64_t>(n, 65535)), static_cast<unsigned>(count));
  identity_batched_kernel<<<per_matrix, 256, 0, s>>>(inv, n);
  DSV4_CUDA_CHECK_LAUNCH();
  const int64_t h = n / 2 / kBlock * kBlock;  // 0 for small n: one triangle, no split
  const auto solve_slabs = [&](int64_t from, int64_t to) {
    for (int64_t c = from; c < to; c += kBlock) {
      const int b = static_cast<int>(std::min(kBlock, to - c));
      pointers_kernel<<<grid_blocks(count), 256, 0, s>>>(a, count, stride, c * n + c, diag);
      DSV4_CUDA_CHECK_LAUNCH();
      pointers_kernel<<<grid_blocks(count), 256, 0, s>>>(inv, count, stride, c * n + c, panel);
      DSV4_CUDA_CHECK_LAUNCH();
      DSV4_CUBLAS_CHECK(cublasDtrsmBatched(blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                                           CUBLAS_DIAG_NON_UNIT, static_cast<int>(to - c), b, &one, diag, ld, panel,
                                           ld, count));
    }
  };
  solve_slabs(0, h);  // A⁻¹ (nothing when h = 0: then the next line solves all of L⁻¹)
  solve_slabs(h, n);  // C⁻¹; L is not read after this, so its lower half may be overwritten
  if (h > 0) {
    // T = B·A⁻¹ into the free upper-right block of a (L is lower), then L⁻¹[h:, :h] = -C⁻¹·T.
    const int hi = static_cast<int>(h), lo = static_cast<int>(n - h);
    const double zero = 0.0;
    DSV4_CUBLAS_CHECK(cublasDgemmStridedBatched(blas, CUBLAS_OP_N, CUBLAS_OP_N, lo, hi, hi, &one, a + h, ld, stride,
                                                inv, ld, stride, &zero, a + h * n, ld, stride, count));
    DSV4_CUBLAS_CHECK(cublasDgemmStridedBatched(blas, CUBLAS_OP_N, CUBLAS_OP_N, lo, hi, lo, &minus_one,
                                                inv + h * n + h, ld, stride, a + h * n, ld, stride, &zero, inv + h, ld,
                                                stride, count));
  }
  mark_nonfinite_kernel<<<dim3(256, static_cast<unsigned>(count)), 256, 0, s>>>(inv, stride, failed);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace dsv4::quant

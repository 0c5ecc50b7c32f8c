// cholesky_batched_cuda.h: Cholesky factors and their inverses of many same-size fp64 matrices at
// once (CUDA builds; issue 8), for the GPTQ preparation of a layer's 256 per-expert Hessians.
// cuSOLVER's one-matrix potrf/trtri at n = 2048 are latency-bound (256 matrices took 0.41 s on 8
// streams of an H100; batched, 0.25 s); here every step covers the whole batch: a right-looking blocked
// Cholesky (block 128: potrfBatched on the diagonal blocks, trsmBatched on the panels, one
// strided-batched DGEMM per trailing update), then L⁻¹ from the inverses of its two diagonal
// halves (trsmBatched against identity slabs) and two DGEMMs for the off-diagonal block.
//
//   cholesky_inverse_lower_batched_cuda(blas, solver, d_a, d_inv, count, n, d_failed, arena, stream);
//
// a: [count] column-major n×n (lower triangle read; overwritten by L and scratch). inv: [count]
// n×n outputs, L⁻¹ (lower, zeros above). failed: [count] device ints, set to 1 where a matrix is
// not positive definite (potrf's info, or any non-finite entry of L⁻¹: cuSOLVER's info misses
// some indefinite matrices; the outputs are then garbage). Only enqueues on `stream`.
// CPU reference: cholesky_inverse_lower_reference (cholesky.h; one row-major matrix).
// Tests: tests/quant/test_gptq_cuda.cu (through gptq_prepare_many_cuda, U vs the one-matrix path).
#pragma once

#include <cstddef>
#include <cstdint>

struct CUstream_st;
struct cublasContext;
struct cusolverDnContext;

namespace dsv4 {
class DeviceArena;
}

namespace dsv4::quant {

// Scratch bytes the call takes from the arena (pointer arrays and infos).
size_t cholesky_inverse_lower_batched_scratch_bytes(int count);

void cholesky_inverse_lower_batched_cuda(cublasContext* blas, cusolverDnContext* solver, double* a, double* inv,
                                         int count, int64_t n, int* failed, DeviceArena& arena, CUstream_st* stream);

}  // namespace dsv4::quant

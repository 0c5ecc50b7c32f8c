// cholesky_batched.h: the CPU reference of cholesky_inverse_lower_batched_cuda
// (cholesky_batched_cuda.h): per matrix, the Cholesky factor L of a symmetric positive definite A
// and its inverse L⁻¹, in fp64, with the GPU op's layouts and failure flags. Unblocked textbook
// loops (left-looking Cholesky, forward substitution for L⁻¹), written for clarity, not speed.
//
//   std::vector<double> inv(count * n * n);
//   std::vector<int> failed(count);
//   cholesky_inverse_lower_batched_reference(a.data(), inv.data(), count, n, failed.data());
//
// a: [count] column-major n×n; only the lower triangle is read. inv: [count] column-major n×n,
// L⁻¹ lower with zeros above. failed[b] = 1 where matrix b is not numerically positive definite (a
// pivot that is not > 0, or a non-finite entry of L⁻¹); inv[b] is then unspecified; else 0.
// Tests: tests/quant/test_cholesky_batched_cuda.cu (the GPU op against this).
#pragma once

#include <cstdint>

namespace dsv4::quant {

void cholesky_inverse_lower_batched_reference(const double* a, double* inv, int count, int64_t n, int* failed);

}  // namespace dsv4::quant

// cholesky.h: the CPU references of the Cholesky chains GPTQ needs, in fp64, beside their GPU
// twins (issue 22: paired names). Both return false instead of throwing when the matrix is not
// numerically positive definite (a non-positive or NaN pivot): the caller raises the damping.
//
//   std::vector<double> l_inv, u;
//   if (cholesky_inverse_lower_reference(a, n, &l_inv)) ...   // L⁻¹ with A = L·Lᵀ
//   if (cholesky_upper_of_inverse_reference(a, n, &u)) ...   // U with A⁻¹ = Uᵀ·U (GPTQ's H⁻¹ factor)
//
// GPU twins: cholesky_inverse_lower_reference <-> cholesky_inverse_lower_batched_cuda
// (cholesky_batched_cuda.h: batches of column-major matrices, so compare L⁻¹[i][j] here with
// inv[j·n + i] there). cholesky_upper_of_inverse_reference is the chain of gptq_prepare_reference;
// gptq_prepare_cuda reaches the same U through L⁻¹ of the reversed matrix (gptq_prepare_cuda.cu says why).
// Tests: tests/quant/test_cholesky.cpp.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4::quant {

// a: [n, n] row-major, symmetric (the lower triangle is read). Writes l_inv: [n, n] row-major,
// L⁻¹ (lower triangular, zeros above) for the lower Cholesky factor L of a.
bool cholesky_inverse_lower_reference(const std::vector<double>& a, int64_t n, std::vector<double>* l_inv);

// a: [n, n] row-major, symmetric. Writes u: [n, n] row-major, the upper Cholesky factor of a⁻¹
// (a⁻¹ = UᵀU), through torch's chain: cholesky(a), cholesky_inverse, cholesky(upper=True).
bool cholesky_upper_of_inverse_reference(const std::vector<double>& a, int64_t n, std::vector<double>* u);

}  // namespace dsv4::quant

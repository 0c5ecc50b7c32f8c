// hessian_exact_cuda.h: HessianExactSum (hessian_exact.h) on the GPU (CUDA builds; issue 29):
// limbs [3][entries] int64 in device memory, the same layout and arithmetic as the CPU sum
// (hessian_exact_inline.h), so a GPU sum downloads into HessianExactSum::from_limbs and ranks
// sum the normalized limbs with an integer all-reduce (NCCL int64), in any grouping.
//
//   hessian_exact_add_cuda(d_gram, d*d, d_limbs, d_status, stream);     // limbs += fixed(gram)
//   hessian_exact_normalize_cuda(d_limbs, d*d, stream);                 // before a reduce
//   hessian_exact_round_cuda(d_limbs, d*d, d_sum, d_status, stream);    // fp32 sum, as rounded()
//   hessian_exact_status_check(status_downloaded);                      // hessian_exact.h
//
// *status (device int) gains the ExactStatus bits of any entry: the host checks it once the
// stream is done. The CPU reference is HessianExactSum (add_sum, normalized_limbs, rounded), bit
// for bit. Calls only enqueue on `stream`. Tests: tests/quant/test_hessian_exact_cuda.cu.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace dsv4::quant {

// limbs[k·entries + i] += addend k of gram[i]. Up to 2^20 adds between normalizations.
void hessian_exact_add_cuda(const float* gram, int64_t entries, int64_t* limbs, int* status, CUstream_st* stream);
void hessian_exact_normalize_cuda(int64_t* limbs, int64_t entries, CUstream_st* stream);
// sum[i] = the fp32 rounding of entry i's exact value (HessianExactSum::rounded's sum).
void hessian_exact_round_cuda(const int64_t* limbs, int64_t entries, float* sum, int* status, CUstream_st* stream);

}  // namespace dsv4::quant

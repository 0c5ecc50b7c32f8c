// hessian_cuda.h: the GPTQ Hessian sum S += Xᵀ X on tensor cores (CUDA builds; issue 8): X in
// bf16, S in fp32, through cuBLAS GemmEx (bf16 inputs, CUBLAS_COMPUTE_32F). The CPU reference is
// HessianAccumulator::add on the same (bf16-valued) rows; H = 2·S/n is applied at finalize, as
// there. Products of bf16 values are exact in fp32, so GPU and CPU differ only by the order of
// the fp32 sums (tests state the tolerance).
//
//   hessian_sum_cuda(cublas, d_x, tokens, d, d_s, stream);                    // one input
//   hessian_sum_batched_cuda(cublas, d_xs, tokens, d, d_ss, experts, stream); // experts of equal tokens
//   hessian_finalize_cuda(d_s, tokens, d, d_h, stream);                       // H = 2·S/n, as finalize()
//
// All pointers are device pointers; calls only enqueue on `stream`. The batched form is the
// all-experts case (every expert's w2 input has the layer's token count): one strided-batched
// GEMM over `count` inputs [tokens, d] laid out back to back, into `count` sums [d, d].
// Tests: tests/quant/test_hessian_cuda.cu; throughput: bench/hessian_throughput.cu.
#pragma once

#include <cstdint>

struct CUstream_st;
struct cublasContext;

namespace dsv4::quant {

using DeviceStream = CUstream_st*;   // cudaStream_t
using BlasHandle = cublasContext*;   // cublasHandle_t

// s[d, d] += xᵀ x for x [tokens, d] row-major bf16 bits, rows `ld` elements apart (0: d).
void hessian_sum_cuda(BlasHandle blas, const uint16_t* x, int64_t tokens, int64_t d, float* s, DeviceStream stream,
                      int64_t ld = 0);

// The same for fp32 rows (SGEMM, no TF32): the routing-weighted w2 inputs, whose scaled rows are
// not bf16 values.
void hessian_sum_f32_cuda(BlasHandle blas, const float* x, int64_t tokens, int64_t d, float* s, DeviceStream stream);

// s[b] += x[b]ᵀ x[b] for b < count; x[b] = x + b·tokens·d, s[b] = s + b·d·d.
void hessian_sum_batched_cuda(BlasHandle blas, const uint16_t* x, int64_t tokens, int64_t d, float* s, int count,
                              DeviceStream stream);

// h[d, d] = (2·s)/n as HessianAccumulator::finalize computes it (bit for bit: 2·s is exact, one
// IEEE division per entry); all zero when n == 0, where `s` may be null (no tokens reached it).
// `h` may be `s` (in place).
void hessian_finalize_cuda(const float* s, int64_t tokens, int64_t d, float* h, DeviceStream stream);

}  // namespace dsv4::quant

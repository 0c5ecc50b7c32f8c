// gemm_cuda.h: the forward's linear layers on tensor cores (CUDA builds; issue 9): bf16 inputs,
// fp32 accumulation (CUBLAS_COMPUTE_32F, no TF32), output fp32 or bf16 (the fp32 sum rounded to
// nearest-even once, which is the CPU bf16 mode's bf16_round of its fp32 GEMM). Every weight the
// forward multiplies is exact in bf16 (FP8/FP4 codes × power-of-two scales, or BF16 tensors) and
// in the bf16 numeric mode so is every activation, so the products are the CPU's; only the order
// of the fp32 sums differs.
//
//   linear_bf16_cuda(blas, x, rows, in, w, out, {.y_bf16 = y}, stream);   // y = x · wᵀ
//   linear_bf16_cuda(blas, x, rows, in, w, out, {.y_f32 = y, .ldx = 4 * in}, stream);
//   linear_bf16_batched_cuda(blas, {...}, stream);                       // strided batches
//
// Row-major throughout: x [rows, in] (row stride ldx), w [out, in], y [rows, out] (row stride
// ldy). cuBLAS is column-major, so y = x · wᵀ runs as yᵀ = w · xᵀ. The calls only enqueue.
#pragma once

#include <cstdint>

struct CUstream_st;
struct cublasContext;

namespace dsv4::model {

using DeviceStream = CUstream_st*;  // cudaStream_t
using BlasHandle = cublasContext*;  // cublasHandle_t

struct GemmOut {
  float* y_f32 = nullptr;      // exactly one of y_f32 / y_bf16
  uint16_t* y_bf16 = nullptr;
  int64_t ldx = 0;             // 0: in
  int64_t ldy = 0;             // 0: out
  bool accumulate = false;     // y += x · wᵀ (fp32 output only)
};

void linear_bf16_cuda(BlasHandle blas, const uint16_t* x, int64_t rows, int64_t in, const uint16_t* w,
                      int64_t out, const GemmOut& y, DeviceStream stream);

// `count` independent products y[b] = x[b] · w[b]ᵀ with x[b] = x + b·stride_x (stride 0 shares
// one input), w[b] = w + b·stride_w, y[b] = y + b·stride_y (elements).
struct GemmBatch {
  const uint16_t* x = nullptr;
  int64_t rows = 0, in = 0, out = 0;
  const uint16_t* w = nullptr;
  GemmOut y;
  int64_t stride_x = 0, stride_w = 0, stride_y = 0;
  int count = 1;
};
void linear_bf16_batched_cuda(BlasHandle blas, const GemmBatch& batch, DeviceStream stream);

}  // namespace dsv4::model

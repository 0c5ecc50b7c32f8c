// gemm_cuda.cu: bf16 × bf16 → fp32/bf16 linear layers through cuBLAS (see gemm_cuda.h).
#include "model/gemm_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>

#include "common/check.h"

namespace dsv4::model {
namespace {

struct Resolved {
  void* y;
  cudaDataType_t type;
  int ldx, ldy;
};

Resolved resolve(int64_t rows, int64_t in, int64_t out, const GemmOut& y) {
  const int64_t ldx = y.ldx ? y.ldx : in, ldy = y.ldy ? y.ldy : out;
  DSV4_CHECK_IN("gemm", (y.y_f32 != nullptr) != (y.y_bf16 != nullptr), "exactly one of the fp32 and bf16 outputs");
  DSV4_CHECK_IN("gemm", !y.accumulate || y.y_f32 != nullptr, "accumulation needs the fp32 output");
  DSV4_CHECK_IN("gemm",
                rows >= 0 && in > 0 && out > 0 && ldx >= in && ldy >= out && rows <= INT_MAX && ldx <= INT_MAX &&
                    ldy <= INT_MAX && out <= INT_MAX,
                "linear [%lld, %lld] x [%lld, %lld]ᵀ with ldx %lld, ldy %lld", static_cast<long long>(rows),
                static_cast<long long>(in), static_cast<long long>(out), static_cast<long long>(in),
                static_cast<long long>(ldx), static_cast<long long>(ldy));
  return {y.y_f32 ? static_cast<void*>(y.y_f32) : static_cast<void*>(y.y_bf16),
          y.y_f32 ? CUDA_R_32F : CUDA_R_16BF, static_cast<int>(ldx), static_cast<int>(ldy)};
}

}  // namespace

void linear_bf16_cuda(BlasHandle blas, const uint16_t* x, int64_t rows, int64_t in, const uint16_t* w,
                      int64_t out, const GemmOut& y, DeviceStream stream) {
  GemmBatch b{.x = x, .rows = rows, .in = in, .out = out, .w = w, .y = y};
  linear_bf16_batched_cuda(blas, b, stream);
}

void linear_bf16_batched_cuda(BlasHandle blas, const GemmBatch& b, DeviceStream stream) {
  const Resolved r = resolve(b.rows, b.in, b.out, b.y);
  DSV4_CHECK_IN("gemm", b.count >= 0, "batch of %d products", b.count);
  if (b.rows == 0 || b.count == 0) return;
  const float one = 1.0f, zero = 0.0f;
  DSV4_CUBLAS_CHECK(cublasSetStream(blas, stream));
  // Column-major view: yᵀ [out, rows] = w [out, in] (stored as wᵀ col-major, so OP_T) · xᵀ [in, rows].
  const int m = static_cast<int>(b.out), n = static_cast<int>(b.rows), k = static_cast<int>(b.in);
  const float* beta = b.y.accumulate ? &one : &zero;
  if (b.count == 1) {
    DSV4_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, b.w, CUDA_R_16BF, k, b.x,
                                   CUDA_R_16BF, r.ldx, beta, r.y, r.type, r.ldy, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
    return;
  }
  DSV4_CUBLAS_CHECK(cublasGemmStridedBatchedEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, b.w, CUDA_R_16BF, k,
                                               b.stride_w, b.x, CUDA_R_16BF, r.ldx, b.stride_x, beta, r.y, r.type,
                                               r.ldy, b.stride_y, b.count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace dsv4::model

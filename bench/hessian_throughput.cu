// hessian_throughput.cu: tensor-core Hessian accumulation against the cuBLAS GEMM ceiling
// (issue 8, goal ≥ 60%). TFLOP/s = 2·tokens·d² per Hessian / time; mean of 10 calls after 2
// warm-ups.
//
//   bench_hessian_throughput
//
// Cases (DSV4-Flash, DESIGN §5): the shared w1/w3 Hessian of a layer, 49,152 tokens × 4096; the
// 256 routed experts' w2 Hessians in all-experts mode, 2048 wide, per 4096-token chunk, as one
// strided-batched GEMM and as 256 separate GEMMs; the ceiling is an 8192³ bf16 GEMM into fp32.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>

#include "bench/cuda_timing.h"
#include "common/check.h"
#include "quant/hessian_cuda.h"

namespace {

// Pseudo-random bf16 in about [-2, 2) (a hash of the index): tensor-core clocks and power depend
// on the data, so constant inputs would flatter the numbers.
__global__ void fill_random_bf16(uint16_t* x, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ static_cast<uint32_t>(i >> 32) * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    // sign, exponent 126..128 (0.5..4 scale), 7 random mantissa bits
    x[i] = static_cast<uint16_t>((h & 0x8000u) | ((126u + (h >> 20) % 3u) << 7) | (h & 0x7fu));
  }
}

double mean_ms(const auto& f, cudaStream_t s) { return cuda_mean_ms(f, s, 2, 10); }

}  // namespace

int main() {
  try {
    cudaStream_t s = bench_device_stream();
    cublasHandle_t blas;
    DSV4_CUBLAS_CHECK(cublasCreate(&blas));
    DSV4_CUBLAS_CHECK(cublasSetStream(blas, s));

    const size_t x_bytes = size_t{256} * 4096 * 2048 * 2, s_bytes = size_t{256} * 2048 * 2048 * 4;
    uint16_t* x = nullptr;
    float* h = nullptr;
    DSV4_CUDA_CHECK(cudaMalloc(&x, x_bytes));
    DSV4_CUDA_CHECK(cudaMalloc(&h, s_bytes));
    fill_random_bf16<<<4096, 256, 0, s>>>(x, x_bytes / 2);
    DSV4_CUDA_CHECK_LAUNCH();
    DSV4_CUDA_CHECK(cudaMemset(h, 0, s_bytes));

    // Ceiling: C[8192, 8192] fp32 = A·B, bf16 inputs, fp32 compute (A, B from the x buffer).
    const int n = 8192;
    const float one = 1.0f, zero = 0.0f;
    const double ceil_ms = mean_ms([&] {
      cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_T, n, n, n, &one, x, CUDA_R_16BF, n, x + size_t{n} * n, CUDA_R_16BF, n,
                   &zero, h, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }, s);
    const double ceil_tf = 2.0 * n * n * static_cast<double>(n) / (ceil_ms * 1e-3) / 1e12;
    std::printf("%-52s %9.3f ms %7.1f TFLOP/s\n", "ceiling: GemmEx 8192^3 bf16 -> fp32", ceil_ms, ceil_tf);
    auto report = [&](const char* name, double flops, double ms) {
      const double tf = flops / (ms * 1e-3) / 1e12;
      std::printf("%-52s %9.3f ms %7.1f TFLOP/s %6.1f%% of ceiling\n", name, ms, tf, 100.0 * tf / ceil_tf);
    };

    // The shared w1/w3 Hessian: 49,152 tokens x 4096 (uses the first 402 MB of x).
    report("shared w1/w3 H: 49152 x 4096", 2.0 * 49152 * 4096.0 * 4096,
           mean_ms([&] { dsv4::quant::hessian_sum_cuda(blas, x, 49152, 4096, h, s); }, s));
    // 256 experts' w2 Hessians, one 4096-token chunk each.
    report("256 w2 H, 4096 tokens x 2048, strided batched", 256 * 2.0 * 4096 * 2048.0 * 2048,
           mean_ms([&] { dsv4::quant::hessian_sum_batched_cuda(blas, x, 4096, 2048, h, 256, s); }, s));
    report("256 w2 H, 4096 tokens x 2048, one GEMM each", 256 * 2.0 * 4096 * 2048.0 * 2048, mean_ms([&] {
             for (int e = 0; e < 256; ++e) {
               dsv4::quant::hessian_sum_cuda(blas, x + static_cast<size_t>(e) * 4096 * 2048, 4096, 2048,
                                             h + static_cast<size_t>(e) * 2048 * 2048, s);
             }
           }, s));
    cublasDestroy(blas);
    cudaFree(x);
    cudaFree(h);
    cudaStreamDestroy(s);
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

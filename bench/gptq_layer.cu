// gptq_layer.cu: the GPU GPTQ solve of one DSV4-Flash MoE layer in all-experts mode (issue 8,
// goal ≤ 2 s on one H100): 512 matrices [2048, 4096] (w1/w3 of 256 experts) sharing ONE
// Hessian 4096², and 256 matrices [4096, 2048] (w2) each with its own Hessian 2048²; W4A16
// (INT4 symmetric, group 128, bf16 scales), act-order static, block 128.
//
//   bench_gptq_layer [CHUNK [STREAMS]]   # matrices per batched sweep (default 64; memory ≈ 4·CHUNK·32 MiB),
//                                        # host threads/streams for the Cholesky chains (default 8)
//   BENCH_KERNEL_ONLY=1 bench_gptq_layer   # the in-block kernels alone (no between-block SGEMM)
//
// Inputs are generated on the device (pseudo-random weights; Hessians XᵀX of random bf16 X with
// 8192 tokens); qparams from the GPU min-max observer (quant/observer_cuda.h). Times: the Cholesky chains (cuSOLVER fp64),
// the permutation, the sweeps (in-block kernel + SGEMM), each synchronised and summed. The
// Cholesky chains of the per-matrix Hessians run on 8 streams (gptq_prepare_many_cuda).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/device_arena.h"
#include "quant/gptq_cuda.h"
#include "quant/hessian_cuda.h"
#include "quant/observer_cuda.h"
#include "quant/quant_args.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

__device__ uint32_t mix(uint64_t i, uint32_t seed) {
  uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ static_cast<uint32_t>(i >> 32) * 40503u ^ seed * 97531u;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return h;
}
__global__ void fill_weights(float* w, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    w[i] = (static_cast<float>(mix(i, seed) % 20001) - 10000.0f) * 2e-6f;  // ≈ U(-0.02, 0.02)
  }
}
__global__ void fill_bf16(uint16_t* x, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t h = mix(i, seed);
    x[i] = static_cast<uint16_t>((h & 0x8000u) | ((126u + (h >> 20) % 3u) << 7) | (h & 0x7fu));
  }
}
struct Part {
  double chol = 0, permute = 0, sweep = 0;
};

// Solves `count` matrices [rows, cols] in chunks; `shared` one H for all, else one H each.
Part solve_family(cublasHandle_t blas, cusolverDnHandle_t solver, int count, int64_t rows, int64_t cols, bool shared,
                  int chunk, uint32_t seed, int streams) {
  Part t;
  const dsv4::quant::QuantArgs args = dsv4::quant::quant_args_preset("W4A16");
  dsv4::quant::GptqOptions opts;
  const int64_t tokens = 8192, groups = cols / 128;
  uint16_t* x = nullptr;
  float *h = nullptr, *u = nullptr, *w = nullptr, *wp = nullptr, *deq = nullptr, *err = nullptr, *scale = nullptr, *zp = nullptr;
  int32_t *codes = nullptr, *qcol = nullptr, *ocol = nullptr;
  double* loss = nullptr;
  const size_t per = static_cast<size_t>(rows * cols);
  const int nh = shared ? 1 : chunk;
  dsv4::DeviceArena arena(dsv4::quant::observer_cuda_scratch_bytes(args, chunk, rows, cols));
  DSV4_CUDA_CHECK(cudaMalloc(&x, static_cast<size_t>(tokens * cols) * 2));
  DSV4_CUDA_CHECK(cudaMalloc(&h, static_cast<size_t>(nh) * cols * cols * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&u, static_cast<size_t>(nh) * cols * cols * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&w, per * chunk * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&wp, per * chunk * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&deq, per * chunk * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&codes, per * chunk * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&err, static_cast<size_t>(chunk * rows * 128) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&scale, static_cast<size_t>(chunk * rows * groups) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&zp, static_cast<size_t>(chunk * rows * groups) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&qcol, static_cast<size_t>(nh * cols) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&ocol, static_cast<size_t>(nh * cols) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&loss, static_cast<size_t>(chunk) * 8));
  std::vector<dsv4::quant::GptqPrepared> prep(static_cast<size_t>(nh));
  for (int done = 0; done < count; done += chunk) {
    const int n = std::min(chunk, count - done);
    // Hessians: one (first chunk only when shared) or one per matrix, prepared on 8 streams.
    if (!shared || done == 0) {
      const int hn = shared ? 1 : n;
      std::vector<const float*> hp;
      for (int i = 0; i < hn; ++i) {
        fill_bf16<<<1024, 256>>>(x, static_cast<size_t>(tokens * cols), seed + 1000 + done + i);
        float* hi = h + static_cast<size_t>(i) * cols * cols;
        DSV4_CUDA_CHECK(cudaMemset(hi, 0, static_cast<size_t>(cols * cols) * 4));
        dsv4::quant::hessian_sum_cuda(blas, x, tokens, cols, hi, nullptr);
        hp.push_back(hi);
      }
      DSV4_CUDA_CHECK(cudaDeviceSynchronize());
      auto c0 = Clock::now();
      const std::vector<dsv4::quant::GptqPrepared> got =
          dsv4::quant::gptq_prepare_many_cuda(hp.data(), hn, cols, opts, dsv4::quant::ActOrder::kStatic, u, streams);
      DSV4_CUDA_CHECK(cudaDeviceSynchronize());
      t.chol += since(c0);
      for (int i = 0; i < hn; ++i) {
        prep[static_cast<size_t>(i)] = got[static_cast<size_t>(i)];
        std::vector<int32_t> q(static_cast<size_t>(cols));
        for (int64_t j = 0; j < cols; ++j) q[static_cast<size_t>(j)] = prep[static_cast<size_t>(i)].perm[static_cast<size_t>(j)] / 128;
        DSV4_CUDA_CHECK(cudaMemcpy(qcol + i * cols, q.data(), static_cast<size_t>(cols) * 4, cudaMemcpyHostToDevice));
        DSV4_CUDA_CHECK(cudaMemcpy(ocol + i * cols, prep[static_cast<size_t>(i)].perm.data(), static_cast<size_t>(cols) * 4,
                                   cudaMemcpyHostToDevice));
      }
    }
    fill_weights<<<4096, 256>>>(w, per * n, seed + done);
    DSV4_CUDA_CHECK(cudaMemset(loss, 0, static_cast<size_t>(chunk) * 8));
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    auto p0 = Clock::now();
    dsv4::quant::observer_qparams_cuda(args, w, n, rows, cols, nullptr, {scale, zp, nullptr, nullptr}, arena, nullptr);
    for (int i = 0; i < n; ++i) {
      dsv4::quant::gptq_permute_cuda(w + per * i, 1, rows, cols, prep[static_cast<size_t>(shared ? 0 : i)], wp + per * i, nullptr);
    }
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    t.permute += since(p0);
    dsv4::quant::GptqSweep s;
    s.count = n;
    s.rows = rows;
    s.cols = cols;
    s.w = wp;
    s.u = u;
    s.u_stride = shared ? 0 : cols * cols;
    s.scale = scale;
    s.zero_point = zp;
    s.scale_rows = rows;
    s.scale_cols = groups;
    s.qcol = qcol;
    s.out_col = ocol;
    s.col_map_stride = shared ? 0 : cols;
    s.qmin = args.qmin();
    s.qmax = args.qmax();
    s.bf16_dequant = true;
    s.codes = codes;
    s.dequant = deq;
    s.loss = loss;
    s.err = err;
    // BENCH_KERNEL_ONLY=1 skips the between-block SGEMMs (identity_u), to split the sweep's time.
    const char* kernel_only = std::getenv("BENCH_KERNEL_ONLY");
    s.identity_u = kernel_only != nullptr && std::string(kernel_only) == "1";
    auto s0 = Clock::now();
    dsv4::quant::gptq_sweep_cuda(blas, s, nullptr);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    t.sweep += since(s0);
  }
  for (void* p : {static_cast<void*>(x), static_cast<void*>(h), static_cast<void*>(u), static_cast<void*>(w),
                  static_cast<void*>(wp), static_cast<void*>(deq), static_cast<void*>(codes), static_cast<void*>(err),
                  static_cast<void*>(scale), static_cast<void*>(zp), static_cast<void*>(qcol), static_cast<void*>(ocol),
                  static_cast<void*>(loss)}) {
    cudaFree(p);
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int chunk = argc > 1 ? std::atoi(argv[1]) : 64;
    const int streams = argc > 2 ? std::atoi(argv[2]) : 8;
    cudaDeviceProp prop{};
    DSV4_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, chunk %d matrices, %d Cholesky streams\n", prop.name, chunk, streams);
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    DSV4_CUBLAS_CHECK(cublasCreate(&blas));
    DSV4_CUSOLVER_CHECK(cusolverDnCreate(&solver));
    solve_family(blas, solver, chunk, 2048, 4096, true, chunk, 7, streams);  // warm-up: library init, kernels
    const Part a = solve_family(blas, solver, 512, 2048, 4096, true, chunk, 11, streams);
    const Part b = solve_family(blas, solver, 256, 4096, 2048, false, chunk, 13, streams);
    // FP32-class work: sweep ≈ rows·cols² (between-block GEMMs, 2 FLOP per MAC over the upper
    // half) + rows·cols·128 (in-block); Cholesky chain ≈ (4/3)·n³ fp64 per distinct H.
    const double sweep_a = 512.0 * (2048.0 * 4096 * 4096 + 2048.0 * 4096 * 128);
    const double sweep_b = 256.0 * (4096.0 * 2048 * 2048 + 4096.0 * 2048 * 128);
    const double chol = 4.0 / 3.0 * (4096.0 * 4096 * 4096 + 256.0 * 2048 * 2048 * 2048);
    const double total = a.chol + a.permute + a.sweep + b.chol + b.permute + b.sweep;
    std::printf("w1/w3: 512 x [2048, 4096], one H: cholesky %.3f s, qparams+permute %.3f s, sweep %.3f s (%.1f TFLOP/s)\n",
                a.chol, a.permute, a.sweep, sweep_a / a.sweep / 1e12);
    std::printf("w2:    256 x [4096, 2048], own H: cholesky %.3f s, qparams+permute %.3f s, sweep %.3f s (%.1f TFLOP/s)\n",
                b.chol, b.permute, b.sweep, sweep_b / b.sweep / 1e12);
    std::printf("layer: %.3f s for 768 matrices; sweep work %.1f TFLOP, Cholesky chains %.2f TFLOP (fp64)\n", total,
                (sweep_a + sweep_b) / 1e12, chol / 1e12);
    cublasDestroy(blas);
    cusolverDnDestroy(solver);
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

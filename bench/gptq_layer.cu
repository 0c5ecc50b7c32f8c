// gptq_layer.cu: the GPU GPTQ solve of one DSV4-Flash MoE layer in all-experts mode (issue 8,
// goal ≤ 2 s on one H100): 512 matrices [2048, 4096] (w1/w3 of 256 experts) sharing ONE
// Hessian 4096², and 256 matrices [4096, 2048] (w2) each with its own Hessian 2048²; W4A16
// (INT4 symmetric, group 128, bf16 scales), act-order static, block 128.
//
//   bench_gptq_layer [CHUNK]             # matrices per batched sweep (default 64; memory ≈ 4·CHUNK·32 MiB)
//   BENCH_KERNEL_ONLY=1 bench_gptq_layer   # the in-block kernels alone (no between-block SGEMM)
//   BENCH_DUMP=DIR bench_gptq_layer        # also write inputs and results for bench/peer_gptq_layer.py
//   BENCH_SWEEP=sliced|rowwise             # the in-block kernel (default: the pipeline's, kBatchSweep)
//   BENCH_UPDATE=fp32|tf32x3               # the between-block update (default: the pipeline's, kBatchUpdate)
//   BENCH_STORE=scattered|sweep_order      # where results are stored (default: the pipeline's, kBatchStore)
//
// Inputs are generated on the device (pseudo-random weights rounded to bf16 values, as a
// checkpoint's are; Hessians XᵀX of random bf16 X with 8192 tokens, not timed); qparams from the GPU min-max observer (quant/observer_cuda.h). Times,
// each phase synchronised and summed: the Cholesky factorisations (gptq_prepare_many_cuda,
// batched fp64), qparams + permutation, the sweeps (in-block kernel + SGEMM).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/gptq_layer_dump.h"
#include "common/check.h"
#include "common/device_arena.h"
#include "quant/gptq_batch_cuda.h"
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
    const float v = (static_cast<float>(mix(i, seed) % 20001) - 10000.0f) * 2e-6f;  // ≈ U(-0.02, 0.02)
    uint32_t b = __float_as_uint(v);
    b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;  // round to the nearest bf16, ties to even
    w[i] = __uint_as_float(b);
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

void sync() { DSV4_CUDA_CHECK(cudaStreamSynchronize(nullptr)); }  // legacy stream only: never waits for side streams

struct Family {
  const char* name;  // the dump's file prefix
  int count;
  int64_t rows, cols;
  bool shared;  // one H for all matrices, else one each
  uint32_t seed;
  int hessians() const { return shared ? 1 : count; }
};

// The family's Hessians XᵀX of random bf16 X (8192 tokens), on the device, not timed.
struct Hessians {
  float* h = nullptr;
  float* u = nullptr;
  std::vector<const float*> ptrs;
  std::vector<dsv4::quant::GptqPrepared> prep;
  std::unique_ptr<dsv4::DeviceArena> arena;  // the preparation's scratch, allocated up front
};
Hessians make_hessians(cublasHandle_t blas, const Family& f, GptqLayerDump* dump) {
  const int64_t tokens = 8192, n = f.cols;
  Hessians hs;
  uint16_t* x = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&x, static_cast<size_t>(tokens * n) * 2));
  DSV4_CUDA_CHECK(cudaMalloc(&hs.h, static_cast<size_t>(f.hessians()) * n * n * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&hs.u, static_cast<size_t>(f.hessians()) * n * n * 4));
  DSV4_CUDA_CHECK(cudaMemset(hs.h, 0, static_cast<size_t>(f.hessians()) * n * n * 4));
  for (int i = 0; i < f.hessians(); ++i) {
    fill_bf16<<<1024, 256>>>(x, static_cast<size_t>(tokens * n), f.seed + 1000 + i);
    float* hi = hs.h + static_cast<size_t>(i) * n * n;
    dsv4::quant::hessian_sum_cuda(blas, x, tokens, n, hi, nullptr);
    hs.ptrs.push_back(hi);
  }
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  cudaFree(x);
  if (dump != nullptr) dump->hessians(f.name, hs.h, std::min(f.hessians(), dump->count()), n);
  hs.arena = std::make_unique<dsv4::DeviceArena>(dsv4::quant::gptq_prepare_many_scratch_bytes(f.hessians(), n));
  return hs;
}

// Every distinct H's Cholesky factorisation, batched.
void prepare(cublasHandle_t blas, cusolverDnHandle_t solver, Hessians& hs, const Family& f) {
  hs.prep = dsv4::quant::gptq_prepare_many_cuda(blas, solver, hs.ptrs.data(), f.hessians(), f.cols,
                                                dsv4::quant::GptqOptions{}, dsv4::quant::ActOrder::kStatic, hs.u,
                                                *hs.arena, nullptr);
  sync();
}

struct SweepChoice {
  dsv4::quant::GptqSweepKernel kernel = dsv4::quant::kBatchSweep;
  dsv4::quant::GptqUpdate update = dsv4::quant::kBatchUpdate;
  dsv4::quant::GptqStore store = dsv4::quant::kBatchStore;
};
// BENCH_SWEEP and BENCH_UPDATE, for A/B runs against the pipeline's defaults.
SweepChoice sweep_choice() {
  SweepChoice c;
  const char* k = std::getenv("BENCH_SWEEP");
  const char* u = std::getenv("BENCH_UPDATE");
  if (k != nullptr && std::string(k) == "sliced") c.kernel = dsv4::quant::GptqSweepKernel::kSliced;
  if (k != nullptr && std::string(k) == "rowwise") c.kernel = dsv4::quant::GptqSweepKernel::kRowwise;
  if (u != nullptr && std::string(u) == "fp32") c.update = dsv4::quant::GptqUpdate::kFp32;
  if (u != nullptr && std::string(u) == "tf32x3") c.update = dsv4::quant::GptqUpdate::kTf32x3;
  const char* st = std::getenv("BENCH_STORE");
  if (st != nullptr && std::string(st) == "scattered") c.store = dsv4::quant::GptqStore::kScattered;
  if (st != nullptr && std::string(st) == "sweep_order") c.store = dsv4::quant::GptqStore::kSweepOrder;
  return c;
}

// Observer, permutation and sweep of the family's matrices in chunks, on the legacy stream.
void sweep_family(cublasHandle_t blas, const Family& f, const Hessians& hs, int chunk, Part& t, GptqLayerDump* dump) {
  const dsv4::quant::QuantArgs args = dsv4::quant::quant_args_preset("W4A16");
  const int64_t rows = f.rows, cols = f.cols, groups = cols / 128;
  const size_t per = static_cast<size_t>(rows * cols);
  float *w = nullptr, *wp = nullptr, *deq = nullptr, *err = nullptr, *scale = nullptr, *zp = nullptr;
  int32_t *codes = nullptr, *qcol = nullptr, *ocol = nullptr;
  double* loss = nullptr;
  dsv4::DeviceArena arena(dsv4::quant::observer_cuda_scratch_bytes(args, chunk, rows, cols));
  DSV4_CUDA_CHECK(cudaMalloc(&w, per * chunk * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&wp, per * chunk * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&deq, per * chunk * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&codes, per * chunk * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&err, static_cast<size_t>(chunk * rows * 256) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&scale, static_cast<size_t>(chunk * rows * groups) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&zp, static_cast<size_t>(chunk * rows * groups) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&qcol, static_cast<size_t>(f.hessians() * cols) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&ocol, static_cast<size_t>(f.hessians() * cols) * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&loss, static_cast<size_t>(chunk) * 8));
  const SweepChoice choice = sweep_choice();
  float* upd = nullptr;
  if (choice.update == dsv4::quant::GptqUpdate::kTf32x3) {
    DSV4_CUDA_CHECK(cudaMalloc(&upd, dsv4::quant::gptq_sweep_update_scratch_floats(chunk, rows, cols, 128, f.shared) * 4));
  }
  for (int i = 0; i < f.hessians(); ++i) {
    const std::vector<int32_t>& perm = hs.prep[static_cast<size_t>(i)].perm;
    std::vector<int32_t> q(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) q[static_cast<size_t>(j)] = perm[static_cast<size_t>(j)] / 128;
    DSV4_CUDA_CHECK(cudaMemcpy(qcol + i * cols, q.data(), static_cast<size_t>(cols) * 4, cudaMemcpyHostToDevice));
    DSV4_CUDA_CHECK(cudaMemcpy(ocol + i * cols, perm.data(), static_cast<size_t>(cols) * 4, cudaMemcpyHostToDevice));
  }
  for (int done = 0; done < f.count; done += chunk) {
    const int n = std::min(chunk, f.count - done);
    const int64_t h0 = f.shared ? 0 : done;  // this chunk's first Hessian
    fill_weights<<<4096, 256>>>(w, per * n, f.seed + done);
    DSV4_CUDA_CHECK(cudaMemsetAsync(loss, 0, static_cast<size_t>(chunk) * 8, nullptr));
    sync();
    auto p0 = Clock::now();
    dsv4::quant::observer_qparams_cuda(args, w, n, rows, cols, nullptr, {scale, zp, nullptr, nullptr}, arena, nullptr);
    if (f.shared) {  // one permutation for the whole chunk
      dsv4::quant::gptq_permute_cuda(w, n, rows, cols, hs.prep[0], wp, nullptr);
    } else {
      for (int i = 0; i < n; ++i) {
        dsv4::quant::gptq_permute_cuda(w + per * i, 1, rows, cols, hs.prep[static_cast<size_t>(h0 + i)], wp + per * i,
                                       nullptr);
      }
    }
    sync();
    t.permute += since(p0);
    dsv4::quant::GptqSweep s;
    s.count = n;
    s.rows = rows;
    s.cols = cols;
    s.w = wp;
    s.u = hs.u + h0 * cols * cols;
    s.u_stride = f.shared ? 0 : cols * cols;
    s.scale = scale;
    s.zero_point = zp;
    s.scale_rows = rows;
    s.scale_cols = groups;
    s.qcol = qcol + h0 * cols;
    s.out_col = ocol + h0 * cols;
    s.col_map_stride = f.shared ? 0 : cols;
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
    s.kernel = choice.kernel;
    s.update = choice.update;
    s.update_scratch = upd;
    s.store = choice.store;
    auto s0 = Clock::now();
    dsv4::quant::gptq_sweep_cuda(blas, s, nullptr);
    sync();
    t.sweep += since(s0);
    if (dump != nullptr) dump->chunk(f.name, done, n, rows, cols, w, codes, deq, scale, loss);
  }
  for (void* p : {static_cast<void*>(w), static_cast<void*>(wp), static_cast<void*>(deq), static_cast<void*>(codes),
                  static_cast<void*>(err), static_cast<void*>(scale), static_cast<void*>(zp), static_cast<void*>(qcol),
                  static_cast<void*>(ocol), static_cast<void*>(loss), static_cast<void*>(upd)}) {
    cudaFree(p);
  }
}

void free_hessians(Hessians& hs) {
  cudaFree(hs.h);
  cudaFree(hs.u);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int chunk = argc > 1 ? std::atoi(argv[1]) : 64;
    cudaDeviceProp prop{};
    DSV4_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, chunk %d matrices\n", prop.name, chunk);
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    DSV4_CUBLAS_CHECK(cublasCreate(&blas));
    DSV4_CUSOLVER_CHECK(cusolverDnCreate(&solver));
    const Family fa{"a", 512, 2048, 4096, true, 11}, fb{"b", 256, 4096, 2048, false, 13};
    // BENCH_DUMP=DIR: the first matrices' inputs and results and every matrix's loss (not timed).
    const char* dump_dir = std::getenv("BENCH_DUMP");
    std::unique_ptr<GptqLayerDump> dump;
    if (dump_dir != nullptr && *dump_dir != 0) dump = std::make_unique<GptqLayerDump>(dump_dir, chunk);
    {  // warm-up: library init, kernels
      const Family warm{"warm", chunk, 2048, 4096, true, 7};
      Hessians hw = make_hessians(blas, warm, nullptr);
      Part pw;
      prepare(blas, solver, hw, warm);
      sweep_family(blas, warm, hw, chunk, pw, nullptr);
      free_hessians(hw);
    }
    Hessians ha = make_hessians(blas, fa, dump.get()), hb = make_hessians(blas, fb, dump.get());
    Part a, b;
    auto c0 = Clock::now();
    prepare(blas, solver, ha, fa);
    a.chol = since(c0);
    sweep_family(blas, fa, ha, chunk, a, dump.get());
    c0 = Clock::now();
    prepare(blas, solver, hb, fb);
    b.chol = since(c0);
    sweep_family(blas, fb, hb, chunk, b, dump.get());
    free_hessians(ha);
    free_hessians(hb);
    // FP32-class work: sweep ≈ rows·cols² (between-block GEMMs, 2 FLOP per MAC over the upper
    // half) + rows·cols·128 (in-block); Cholesky (potrf + trtri) ≈ (2/3)·n³ fp64 per distinct H.
    const double sweep_a = 512.0 * (2048.0 * 4096 * 4096 + 2048.0 * 4096 * 128);
    const double sweep_b = 256.0 * (4096.0 * 2048 * 2048 + 4096.0 * 2048 * 128);
    const double chol = 2.0 / 3.0 * (4096.0 * 4096 * 4096 + 256.0 * 2048 * 2048 * 2048);  // potrf + trtri
    const double total = a.chol + a.permute + a.sweep + b.chol + b.permute + b.sweep;
    std::printf("w1/w3: 512 x [2048, 4096], one H: cholesky %.3f s, qparams+permute %.3f s, sweep %.3f s (%.1f TFLOP/s)\n",
                a.chol, a.permute, a.sweep, sweep_a / a.sweep / 1e12);
    std::printf("w2:    256 x [4096, 2048], own H: cholesky %.3f s, qparams+permute %.3f s, sweep %.3f s (%.1f TFLOP/s)\n",
                b.chol, b.permute, b.sweep, sweep_b / b.sweep / 1e12);
    std::printf("layer: %.3f s for 768 matrices; sweep work %.1f TFLOP, Cholesky chains %.2f TFLOP (fp64)\n",
                total, (sweep_a + sweep_b) / 1e12, chol / 1e12);
    if (dump) dump->finish();
    cublasDestroy(blas);
    cusolverDnDestroy(solver);
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

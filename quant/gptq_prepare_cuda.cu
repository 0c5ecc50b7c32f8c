// gptq_prepare_cuda.cu: GPTQ's preparation on the GPU, one Hessian or a batch (see gptq_cuda.h):
// the plan of gptq_prepare.h (act-order, dead columns, damping schedule, the one policy the CPU's
// gptq_solve follows too), then the damped Cholesky chain to the upper factor U of H⁻¹ in fp64.
// The sweep that uses U is gptq_cuda.cu.
#include "quant/gptq_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "quant/cholesky_batched_cuda.h"
#include "quant/gptq_prepare.h"
#include "quant/stream_scratch_cuda.h"

namespace dsv4::quant {
namespace {

// The Cholesky chain runs on the reversed matrix: with J the reversal permutation and
// J·Hp·J = M·Mᵀ (M lower), Hp = R·Rᵀ for the upper R = J·M·J, so Hp⁻¹ = R⁻ᵀ·R⁻¹ and
// U = R⁻¹ = J·M⁻¹·J is the upper Cholesky factor of Hp⁻¹ (unique with a positive diagonal):
// one potrf and one trtri, 2n³/3 flops against the reference chain's (potrf, potri, potrf) 4n³/3.
// The same U in exact arithmetic; the fp64 roundings differ at ~1e-15, far below U's fp32 ones.

// J·Hp·J with hp[i][j] = h[perm[i]][perm[j]] in fp64; the diagonal: 0 -> 1 (dead column), then
// + damp.
__global__ void build_damped_reversed_kernel(const float* h, const int32_t* perm, int64_t n, double damp, double* hp) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n * n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = x / n, j = x % n;
    double v = h[static_cast<int64_t>(perm[i]) * n + perm[j]];
    if (i == j) {
      if (v == 0.0) v = 1.0;
      v += damp;
    }
    hp[(n - 1 - i) * n + (n - 1 - j)] = v;
  }
}

// u (row-major, upper) = J·M⁻¹·J from M⁻¹ (column-major, lower), rounded to fp32: u[i][c] =
// M⁻¹[n-1-i][n-1-c], stored at column n-1-c, row n-1-i.
__global__ void upper_from_reversed_inverse_kernel(const double* minv, int64_t n, float* u) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n * n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = x / n, c = x % n;
    u[x] = c >= i ? static_cast<float>(minv[(n - 1 - c) * n + (n - 1 - i)]) : 0.0f;
  }
}

// The batched forms: matrix t of a batch reads h[t] with perm + t·n and damp[t], and writes its
// U to u + index[t]·n².
__global__ void build_damped_reversed_batched_kernel(const float* const* h, const int32_t* perm, const double* damp,
                                                     int count, int64_t n, double* hp) {
  // Grid (rows, matrices), threads across a row's columns: no 64-bit division per element.
  const int64_t t = blockIdx.y;
  const int32_t* pt = perm + t * n;
  const float* ht = h[t];
  double* out = hp + t * n * n;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* hrow = ht + static_cast<int64_t>(pt[i]) * n;
    double* orow = out + (n - 1 - i) * n + (n - 1);
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
      double v = hrow[pt[j]];
      if (i == j) {
        if (v == 0.0) v = 1.0;
        v += damp[t];
      }
      orow[-j] = v;
    }
  }
}

// Through 32×32 shared-memory tiles, so both the column-major reads of M⁻¹ and the row-major
// writes of U are coalesced (the element-wise form read with a stride of n doubles). Grid:
// (tiles, tiles, count), 32×8 threads.
__global__ void upper_from_reversed_inverse_batched_kernel(const double* minv, const int32_t* index, int64_t n,
                                                           float* u) {
  __shared__ float tile[32][33];
  const int64_t t = blockIdx.z, i0 = static_cast<int64_t>(blockIdx.y) * 32, c0 = static_cast<int64_t>(blockIdx.x) * 32;
  const double* m = minv + t * n * n;
  for (int dc = threadIdx.y; dc < 32; dc += blockDim.y) {  // u(i0 + tx, c0 + dc) = M⁻¹[n-1-i][n-1-c]
    const int64_t i = i0 + threadIdx.x, c = c0 + dc;
    tile[dc][threadIdx.x] = i < n && c < n ? static_cast<float>(m[(n - 1 - c) * n + (n - 1 - i)]) : 0.0f;
  }
  __syncthreads();
  float* ut = u + static_cast<int64_t>(index[t]) * n * n;
  for (int di = threadIdx.y; di < 32; di += blockDim.y) {
    const int64_t i = i0 + di, c = c0 + threadIdx.x;
    if (i < n && c < n) ut[i * n + c] = c >= i ? tile[threadIdx.x][di] : 0.0f;
  }
}

__global__ void identity_kernel(int64_t n, float* u) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n * n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    u[x] = x / n == x % n ? 1.0f : 0.0f;
  }
}

// info[0] = 1 when any entry is not finite: cuSOLVER's potrf info misses some indefinite
// matrices (an off-diagonal 2×2 minor with eigenvalue -2 "succeeded" with NaNs on H100).
__global__ void flag_nonfinite_kernel(const double* m, int64_t n, int* info) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!isfinite(m[x])) info[0] = 1;
  }
}

// Whether H holds no tokens, from its diagonal alone: H is a Gram matrix, so a zero diagonal means
// H = 0 (the CPU reference scans all of H; reading only the diagonal spares copying H down).
bool diag_all_zero(const std::vector<float>& diag) {
  return std::all_of(diag.begin(), diag.end(), [](float d) { return d == 0.0f; });
}

// One factorisation attempt on J·(H + damp)·J: potrf, then trtri of the factor (L⁻¹ in place,
// the one-matrix form of cholesky_inverse_lower_batched_cuda; CPU twin
// cholesky_inverse_lower_reference); false when not positive definite.
bool cholesky_inverse_lower_cusolver(SolverHandle solver, double* a, int64_t n, cudaStream_t stream) {
  const int ni = static_cast<int>(n);
  int lwork = 0;
  size_t trtri_device = 0, trtri_host = 0;
  DSV4_CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(solver, CUBLAS_FILL_MODE_LOWER, ni, a, ni, &lwork));
  DSV4_CUSOLVER_CHECK(cusolverDnXtrtri_bufferSize(solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, a,
                                                  n, &trtri_device, &trtri_host));
  StreamScratch<double> work(static_cast<size_t>(lwork), stream);
  StreamScratch<char> trtri_work(trtri_device, stream);
  std::vector<char> trtri_host_work(std::max<size_t>(trtri_host, 1));
  StreamScratch<int> info(3, stream);
  DSV4_CUDA_CHECK(cudaMemsetAsync(info.p + 2, 0, sizeof(int), stream));
  // Both steps are queued and their infos read once (one synchronisation per attempt): a failed
  // potrf makes trtri compute garbage, which is discarded with the attempt.
  DSV4_CUSOLVER_CHECK(cusolverDnDpotrf(solver, CUBLAS_FILL_MODE_LOWER, ni, a, ni, work.p, lwork, info.p));
  DSV4_CUSOLVER_CHECK(cusolverDnXtrtri(solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, a, n,
                                       trtri_work.p, trtri_device, trtri_host_work.data(), trtri_host, info.p + 1));
  flag_nonfinite_kernel<<<grid_blocks(n * n), 256, 0, stream>>>(a, n * n, info.p + 2);
  DSV4_CUDA_CHECK_LAUNCH();
  int host_info[3] = {1, 1, 1};
  DSV4_CUDA_CHECK(cudaMemcpyAsync(host_info, info.p, sizeof host_info, cudaMemcpyDeviceToHost, stream));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host_info[0] == 0 && host_info[1] == 0 && host_info[2] == 0;
}

}  // namespace

GptqPrepared gptq_prepare_cuda(SolverHandle solver, const float* h, int64_t cols, const GptqOptions& opts,
                               ActOrder order, float* u, DeviceStream stream) {
  opts.check();
  DSV4_CHECK_IN("gptq", cols > 0 && cols <= 65536, "GPU GPTQ of %lld columns", static_cast<long long>(cols));
  DSV4_CHECK_IN("gptq", order != ActOrder::kGroup, "act-order group runs on the CPU path");
  const cudaStream_t s = stream;
  DSV4_CUSOLVER_CHECK(cusolverDnSetStream(solver, s));
  const int64_t n = cols;
  std::vector<float> diag(static_cast<size_t>(n));
  DSV4_CUDA_CHECK(cudaMemcpy2DAsync(diag.data(), sizeof(float), h, static_cast<size_t>(n + 1) * sizeof(float),
                                    sizeof(float), static_cast<size_t>(n), cudaMemcpyDeviceToHost, s));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(s));

  const GptqPreparePlan plan = gptq_prepare_plan(diag, order, diag_all_zero(diag));
  GptqPrepared p = plan.prepared;
  if (plan.no_tokens) {
    identity_kernel<<<grid_blocks(n * n), 256, 0, s>>>(n, u);
    DSV4_CUDA_CHECK_LAUNCH();
    return p;
  }

  StreamScratch<int32_t> perm(static_cast<size_t>(n), s);
  DSV4_CUDA_CHECK(cudaMemcpyAsync(perm.p, p.perm.data(), static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, s));
  StreamScratch<double> a(static_cast<size_t>(n * n), s);
  for (const GptqDampingStep& step : gptq_damping_schedule(opts, plan.diag_mean)) {
    build_damped_reversed_kernel<<<grid_blocks(n * n), 256, 0, s>>>(h, perm.p, n, step.damp, a.p);
    DSV4_CUDA_CHECK_LAUNCH();
    if (cholesky_inverse_lower_cusolver(solver, a.p, n, s)) {
      upper_from_reversed_inverse_kernel<<<grid_blocks(n * n), 256, 0, s>>>(a.p, n, u);
      DSV4_CUDA_CHECK_LAUNCH();
      gptq_damping_record(p, opts, &step);
      return p;
    }
  }
  gptq_damping_record(p, opts, nullptr);
  identity_kernel<<<grid_blocks(n * n), 256, 0, s>>>(n, u);
  DSV4_CUDA_CHECK_LAUNCH();
  return p;
}

namespace {
// Hessians per batch: up to 64, two fp64 copies each within ~4 GiB.
int prepare_batch(int count, int64_t n) {
  const int64_t fit = std::clamp<int64_t>((int64_t{4} << 30) / (2 * n * n * 8), 1, 64);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(fit, count)));
}
}  // namespace

size_t gptq_prepare_many_scratch_bytes(int count, int64_t cols) {
  if (count <= 1) return 0;
  const size_t b = static_cast<size_t>(prepare_batch(count, cols)), n = static_cast<size_t>(cols);
  const auto up = [](size_t x) { return (x + DeviceArena::kAlign - 1) / DeviceArena::kAlign * DeviceArena::kAlign; };
  return 2 * up(b * n * n * 8) + up(b * n * 4) + up(b * 4) + up(b * 4) + up(b * 8) + up(b * sizeof(void*)) +
         cholesky_inverse_lower_batched_scratch_bytes(static_cast<int>(b));
}

std::vector<GptqPrepared> gptq_prepare_many_cuda(BlasHandle blas, SolverHandle solver, const float* const* h, int count,
                                                 int64_t cols, const GptqOptions& opts, ActOrder order, float* u,
                                                 DeviceArena& arena, DeviceStream stream) {
  opts.check();
  DSV4_CHECK_IN("gptq", count >= 0, "%d Hessians", count);
  DSV4_CHECK_IN("gptq", cols > 0 && cols <= 65536, "GPU GPTQ of %lld columns", static_cast<long long>(cols));
  DSV4_CHECK_IN("gptq", order != ActOrder::kGroup, "act-order group runs on the CPU path");
  std::vector<GptqPrepared> out(static_cast<size_t>(count));
  if (count == 0) return out;
  const cudaStream_t s = stream;
  const int64_t n = cols, nn = n * n;
  if (count == 1) {  // one Hessian (the shared w1/w3 one): cuSOLVER's potrf + trtri are 3x faster than the batched steps
    out[0] = gptq_prepare_cuda(solver, h[0], cols, opts, order, u, s);
    return out;
  }
  // Every diagonal in one round trip, then the plans on the host.
  std::vector<std::vector<float>> diag(static_cast<size_t>(count), std::vector<float>(static_cast<size_t>(n)));
  for (int i = 0; i < count; ++i) {
    DSV4_CUDA_CHECK(cudaMemcpy2DAsync(diag[static_cast<size_t>(i)].data(), sizeof(float), h[i],
                                      static_cast<size_t>(n + 1) * sizeof(float), sizeof(float), static_cast<size_t>(n),
                                      cudaMemcpyDeviceToHost, s));
  }
  DSV4_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<GptqPreparePlan> plans;
  std::vector<int32_t> todo;  // Hessians to factorise
  for (int i = 0; i < count; ++i) {
    plans.push_back(gptq_prepare_plan(diag[static_cast<size_t>(i)], order, diag_all_zero(diag[static_cast<size_t>(i)])));
    out[static_cast<size_t>(i)] = plans.back().prepared;
    if (plans.back().no_tokens) {
      identity_kernel<<<grid_blocks(nn), 256, 0, s>>>(n, u + i * nn);
      DSV4_CUDA_CHECK_LAUNCH();
    } else {
      todo.push_back(i);
    }
  }
  const int batch = prepare_batch(count, n);
  ArenaScope scope(arena);
  double* a = arena.take<double>(static_cast<size_t>(batch * nn), "GPTQ batched Hessians (fp64)");
  double* inv = arena.take<double>(static_cast<size_t>(batch * nn), "GPTQ batched inverse factors (fp64)");
  int32_t* perm = arena.take<int32_t>(static_cast<size_t>(batch * n), "GPTQ batched permutations");
  int32_t* index = arena.take<int32_t>(static_cast<size_t>(batch), "GPTQ batch index");
  int* failed = arena.take<int>(static_cast<size_t>(batch), "GPTQ batch failures");
  double* damp = arena.take<double>(static_cast<size_t>(batch), "GPTQ batch damping");
  const float** hptr = arena.take<const float*>(static_cast<size_t>(batch), "GPTQ batch Hessian pointers");
  std::vector<int32_t> retry;  // not positive definite at the first damping: one at a time, escalating
  for (size_t b0 = 0; b0 < todo.size(); b0 += static_cast<size_t>(batch)) {
    const int m = static_cast<int>(std::min(todo.size() - b0, static_cast<size_t>(batch)));
    std::vector<int32_t> perms, idx(todo.begin() + static_cast<long>(b0), todo.begin() + static_cast<long>(b0) + m);
    std::vector<GptqDampingStep> firsts;  // the schedule's first step: later ones run one at a time below
    std::vector<double> damps;
    std::vector<const float*> hs;
    for (int32_t i : idx) {
      const GptqPreparePlan& pl = plans[static_cast<size_t>(i)];
      perms.insert(perms.end(), pl.prepared.perm.begin(), pl.prepared.perm.end());
      firsts.push_back(gptq_damping_schedule(opts, pl.diag_mean).front());
      damps.push_back(firsts.back().damp);
      hs.push_back(h[i]);
    }
    DSV4_CUDA_CHECK(cudaMemcpyAsync(perm, perms.data(), perms.size() * 4, cudaMemcpyHostToDevice, s));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(index, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice, s));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(damp, damps.data(), damps.size() * 8, cudaMemcpyHostToDevice, s));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(hptr, hs.data(), hs.size() * sizeof(const float*), cudaMemcpyHostToDevice, s));
    build_damped_reversed_batched_kernel<<<dim3(static_cast<unsigned>(std::min<int64_t>(n, 65535)), static_cast<unsigned>(m)),
                                           256, 0, s>>>(hptr, perm, damp, m, n, a);
    DSV4_CUDA_CHECK_LAUNCH();
    cholesky_inverse_lower_batched_cuda(blas, solver, a, inv, m, n, failed, arena, s);
    const unsigned tiles = static_cast<unsigned>((n + 31) / 32);
    upper_from_reversed_inverse_batched_kernel<<<dim3(tiles, tiles, static_cast<unsigned>(m)), dim3(32, 8), 0, s>>>(
        inv, index, n, u);
    DSV4_CUDA_CHECK_LAUNCH();
    std::vector<int> bad(static_cast<size_t>(m));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(bad.data(), failed, bad.size() * sizeof(int), cudaMemcpyDeviceToHost, s));
    DSV4_CUDA_CHECK(cudaStreamSynchronize(s));  // also keeps the host vectors above alive until copied
    for (int t = 0; t < m; ++t) {
      GptqPrepared& p = out[static_cast<size_t>(idx[static_cast<size_t>(t)])];
      if (bad[static_cast<size_t>(t)] != 0) {
        retry.push_back(idx[static_cast<size_t>(t)]);
      } else {
        gptq_damping_record(p, opts, &firsts[static_cast<size_t>(t)]);
      }
    }
  }
  for (int32_t i : retry) out[static_cast<size_t>(i)] = gptq_prepare_cuda(solver, h[i], cols, opts, order, u + i * nn, s);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(s));
  return out;
}


}  // namespace dsv4::quant

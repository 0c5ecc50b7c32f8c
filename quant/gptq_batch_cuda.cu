// gptq_batch_cuda.cu: gptq_solve_batch_cuda (see gptq_batch_cuda.h).
#include "quant/gptq_batch_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <memory>

#include <cublas_v2.h>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "common/parallel.h"
#include "quant/observer.h"
#include "quant/quantizer.h"

namespace dsv4::quant {
namespace {

template <typename T>
struct Device {
  T* p = nullptr;
  explicit Device(size_t n) { DSV4_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); }
  ~Device() { cudaFree(p); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
};

__global__ void diff_kernel(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = a[i] - b[i];
  }
}

// *out += Σ x·y in fp64.
__global__ void dot_kernel(const float* x, const float* y, int64_t n, double* out) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    acc += static_cast<double>(x[i]) * y[i];
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (threadIdx.x % 32 == 0) atomicAdd(out, acc);
}

// *out += tr(X H Xᵀ) for X [rows, cols] row-major, H [cols, cols] symmetric: T = X·H (TF32 GEMM,
// fp32 accumulate) into tmp, then Σ T∘X.
void quad_form_cuda(BlasHandle blas, const float* x, const float* h, int64_t rows, int64_t cols, float* tmp, double* out,
                    DeviceStream stream) {
  const float one = 1.0f, zero = 0.0f;
  DSV4_CUBLAS_CHECK(cublasSetStream(blas, stream));
  const int n = static_cast<int>(cols), m = static_cast<int>(rows);
  // Column-major: Tᵀ [cols, rows] = H [cols, cols] · Xᵀ [cols, rows].
  DSV4_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, n, &one, h, CUDA_R_32F, n, x, CUDA_R_32F, n, &zero,
                                 tmp, CUDA_R_32F, n, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  dot_kernel<<<grid_blocks(rows * cols, 256, 1024), 256, 0, stream>>>(tmp, x, rows * cols, out);
  DSV4_CUDA_CHECK_LAUNCH();
}

}  // namespace

std::vector<GptqResult> gptq_solve_batch_cuda(BlasHandle blas, SolverHandle solver, const QuantArgs& args,
                                              const std::vector<const float*>& weights,
                                              const std::vector<const float*>& hessians, int64_t rows, int64_t cols,
                                              const GptqOptions& opts, DeviceStream stream, int chunk,
                                              GptqBatchErrors* errors, int threads) {
  const std::string why = gptq_cuda_unsupported(args, opts);
  DSV4_CHECK_IN("gptq", why.empty(), "GPU GPTQ: %s", why.c_str());
  const int count = static_cast<int>(weights.size());
  const bool shared = hessians.size() == 1;
  DSV4_CHECK_IN("gptq", shared || static_cast<int>(hessians.size()) == count,
                "%zu Hessians for %d matrices (one shared, or one each)", hessians.size(), count);
  std::vector<GptqResult> out(static_cast<size_t>(count));
  if (errors) {
    errors->rel_error.assign(static_cast<size_t>(count), 0.0);
    errors->rtn_rel_error.assign(static_cast<size_t>(count), 0.0);
  }
  if (count == 0) return out;
  chunk = std::max(1, std::min(chunk, count));
  const size_t per = static_cast<size_t>(rows * cols), hh = static_cast<size_t>(cols * cols);
  const int nh = shared ? 1 : chunk;

  Device<float> h(hh * nh), u(hh * nh), w(per * chunk), wp(per * chunk), deq(per * chunk);
  Device<int32_t> codes(per * chunk), qcol(static_cast<size_t>(cols) * nh), ocol(static_cast<size_t>(cols) * nh);
  Device<float> err(static_cast<size_t>(chunk) * rows * 2 * opts.block_size);
  Device<double> loss(static_cast<size_t>(chunk));
  Device<double> traces(3);  // tr(ΔHΔᵀ), tr(WHWᵀ), tr(ΔᵣHΔᵣᵀ) of one matrix
  std::unique_ptr<Device<float>> tmp, orig;  // the error statistics' scratch [rows, cols]
  if (errors) {
    tmp = std::make_unique<Device<float>>(per);
    orig = std::make_unique<Device<float>>(per * chunk);
  }
  std::vector<std::vector<float>> rtn(static_cast<size_t>(errors ? chunk : 0));
  int64_t scale_rows = 0, scale_cols = 0;
  qparams_shape(args, rows, cols, &scale_rows, &scale_cols);
  const size_t cells = static_cast<size_t>(scale_rows * scale_cols);
  Device<float> scale(cells * chunk), zp(cells * chunk);
  DeviceArena arena(std::max<size_t>(gptq_prepare_many_scratch_bytes(nh, cols), DeviceArena::kAlign));

  std::vector<GptqPrepared> prepared;
  auto prepare = [&](int first, int n) {  // Hessians [first, first + n) into h/u slots 0..n-1
    std::vector<const float*> ptrs;
    for (int i = 0; i < n; ++i) {
      DSV4_CUDA_CHECK(cudaMemcpyAsync(h.p + i * hh, hessians[static_cast<size_t>(first + i)], hh * sizeof(float),
                                      cudaMemcpyHostToDevice, stream));
      ptrs.push_back(h.p + i * hh);
    }
    prepared = gptq_prepare_many_cuda(blas, solver, ptrs.data(), n, cols, opts, opts.actorder, u.p, arena, stream);
  };
  if (shared) prepare(0, 1);

  std::vector<float> host_scale(cells * chunk), host_zp(cells * chunk);
  std::vector<int32_t> host_qcol(static_cast<size_t>(cols) * nh), host_ocol(static_cast<size_t>(cols) * nh);
  for (int first = 0; first < count; first += chunk) {
    const int n = std::min(chunk, count - first);
    if (!shared) prepare(first, n);
    // Host: every matrix's qparams (and RTN for the statistics), in parallel.
    parallel_for(static_cast<size_t>(n), threads, [&](size_t k) {
      const int i = static_cast<int>(k);
      GptqResult& r = out[static_cast<size_t>(first + i)];
      const float* wi = weights[static_cast<size_t>(first + i)];
      r.qparams = observer_qparams(args, wi, rows, cols);
      for (size_t c = 0; c < cells; ++c) {
        host_scale[i * cells + c] = qparams_effective_scale(r.qparams, static_cast<int64_t>(c));
        host_zp[i * cells + c] = r.qparams.zero_point[c];
      }
      if (errors) rtn[k] = quantizer_rtn_with(args, r.qparams, wi).dequant;
    });
    for (int i = 0; i < n; ++i) {
      GptqResult& r = out[static_cast<size_t>(first + i)];
      const GptqPrepared& p = prepared[static_cast<size_t>(shared ? 0 : i)];
      if (i == 0 || !shared) {
        const std::vector<int32_t> q = gptq_qparam_columns(args, r.qparams, p);
        std::copy(q.begin(), q.end(), host_qcol.begin() + (shared ? 0 : i) * cols);
        std::copy(p.perm.begin(), p.perm.end(), host_ocol.begin() + (shared ? 0 : i) * cols);
      }
      DSV4_CUDA_CHECK(cudaMemcpyAsync(w.p + i * per, weights[static_cast<size_t>(first + i)], per * sizeof(float),
                                      cudaMemcpyHostToDevice, stream));
      if (errors) DSV4_CUDA_CHECK(cudaMemcpyAsync(orig->p + i * per, w.p + i * per, per * 4, cudaMemcpyDeviceToDevice, stream));
      gptq_permute_cuda(w.p + i * per, 1, rows, cols, p, wp.p + i * per, stream);
      r.dampening_frac_used = p.dampening_frac_used;
      r.damp = p.damp;
      r.damping_escalations = p.damping_escalations;
      r.fallback = p.fallback;
      r.dead_columns = static_cast<int64_t>(p.dead.size());
      r.actorder_used = opts.actorder;
    }
    DSV4_CUDA_CHECK(cudaMemcpyAsync(scale.p, host_scale.data(), cells * n * sizeof(float), cudaMemcpyHostToDevice, stream));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(zp.p, host_zp.data(), cells * n * sizeof(float), cudaMemcpyHostToDevice, stream));
    const size_t maps = static_cast<size_t>(cols) * (shared ? 1 : n);
    DSV4_CUDA_CHECK(cudaMemcpyAsync(qcol.p, host_qcol.data(), maps * 4, cudaMemcpyHostToDevice, stream));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(ocol.p, host_ocol.data(), maps * 4, cudaMemcpyHostToDevice, stream));
    DSV4_CUDA_CHECK(cudaMemsetAsync(loss.p, 0, static_cast<size_t>(n) * sizeof(double), stream));
    // Matrices whose Hessian fell back to RTN sweep with the identity U (no between-block update);
    // a chunk mixing both runs as two sweeps.
    auto sweep = [&](int b0, int nb, bool identity) {
      if (nb == 0) return;
      GptqSweep s;
      s.count = nb;
      s.rows = rows;
      s.cols = cols;
      s.block_size = opts.block_size;
      s.w = wp.p + b0 * per;
      s.u = u.p + (shared ? 0 : b0 * hh);
      s.u_stride = shared ? 0 : static_cast<int64_t>(hh);
      s.scale = scale.p + b0 * cells;
      s.zero_point = zp.p + b0 * cells;
      s.scale_rows = scale_rows;
      s.scale_cols = scale_cols;
      s.qcol = qcol.p + (shared ? 0 : b0 * cols);
      s.out_col = ocol.p + (shared ? 0 : b0 * cols);
      s.col_map_stride = shared ? 0 : cols;
      s.qmin = args.qmin();
      s.qmax = args.qmax();
      s.bf16_dequant = args.scale_dtype == ScaleDType::kModel;
      s.codes = codes.p + b0 * per;
      s.dequant = deq.p + b0 * per;
      s.loss = loss.p + b0;
      s.err = err.p + static_cast<size_t>(b0) * rows * 2 * opts.block_size;
      s.identity_u = identity;
      gptq_sweep_cuda(blas, s, stream);
    };
    auto is_rtn = [&](int i) {
      const GptqFallback f = prepared[static_cast<size_t>(shared ? 0 : i)].fallback;
      return f == GptqFallback::kRtnNoTokens || f == GptqFallback::kRtnCholeskyFailed;
    };
    for (int b0 = 0; b0 < n;) {  // runs of equal fallback kind
      int b1 = b0 + 1;
      while (b1 < n && is_rtn(b1) == is_rtn(b0)) ++b1;
      sweep(b0, b1 - b0, is_rtn(b0));
      b0 = b1;
    }
    if (errors) {  // the statistics, one matrix at a time (w, wp are free after the sweep)
      for (int i = 0; i < n; ++i) {
        const float* hi = h.p + (shared ? 0 : i) * hh;
        const float* wi = orig->p + i * per;
        float* delta = wp.p + i * per;
        DSV4_CUDA_CHECK(cudaMemsetAsync(traces.p, 0, 3 * sizeof(double), stream));
        diff_kernel<<<grid_blocks(per, 256, 1 << 16), 256, 0, stream>>>(wi, deq.p + i * per, per, delta);
        quad_form_cuda(blas, delta, hi, rows, cols, tmp->p, traces.p, stream);
        quad_form_cuda(blas, wi, hi, rows, cols, tmp->p, traces.p + 1, stream);
        DSV4_CUDA_CHECK(cudaMemcpyAsync(w.p + i * per, rtn[static_cast<size_t>(i)].data(), per * 4, cudaMemcpyHostToDevice,
                                        stream));
        diff_kernel<<<grid_blocks(per, 256, 1 << 16), 256, 0, stream>>>(wi, w.p + i * per, per, delta);
        quad_form_cuda(blas, delta, hi, rows, cols, tmp->p, traces.p + 2, stream);
        double t[3];
        DSV4_CUDA_CHECK(cudaMemcpyAsync(t, traces.p, sizeof t, cudaMemcpyDeviceToHost, stream));
        DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
        errors->rel_error[static_cast<size_t>(first + i)] = t[1] == 0.0 ? 0.0 : t[0] / t[1];
        errors->rtn_rel_error[static_cast<size_t>(first + i)] = t[1] == 0.0 ? 0.0 : t[2] / t[1];
      }
    }
    std::vector<double> host_loss(static_cast<size_t>(n));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(host_loss.data(), loss.p, n * sizeof(double), cudaMemcpyDeviceToHost, stream));
    for (int i = 0; i < n; ++i) {
      GptqResult& r = out[static_cast<size_t>(first + i)];
      r.codes.resize(per);
      r.dequant.resize(per);
      DSV4_CUDA_CHECK(cudaMemcpyAsync(r.codes.data(), codes.p + i * per, per * 4, cudaMemcpyDeviceToHost, stream));
      DSV4_CUDA_CHECK(cudaMemcpyAsync(r.dequant.data(), deq.p + i * per, per * 4, cudaMemcpyDeviceToHost, stream));
    }
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int i = 0; i < n; ++i) out[static_cast<size_t>(first + i)].loss = host_loss[static_cast<size_t>(i)] / 2.0;
  }
  return out;
}

}  // namespace dsv4::quant

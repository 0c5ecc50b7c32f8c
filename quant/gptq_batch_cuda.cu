// gptq_batch_cuda.cu: gptq_solve_batch_cuda (see gptq_batch_cuda.h).
#include "quant/gptq_batch_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <cublas_v2.h>

#include "common/check.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "common/parallel.h"
#include "common/pinned_host.h"
#include "quant/hessian_cuda.h"
#include "quant/observer_cuda.h"
#include "quant/pack_cuda.h"
#include "quant/quantizer.h"
#include "quant/quantizer_cuda.h"

namespace dsv4::quant {
namespace {

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

// *out += Σ (w − q)² over the columns that are not dead (dead[j] == 0), in fp64: one block per row.
__global__ void live_square_sum_kernel(const float* w, const float* q, int64_t rows, int cols, const uint8_t* dead,
                                       double* out) {
  double acc = 0.0;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      const double d = static_cast<double>(w[r * cols + j]) - q[r * cols + j];
      if (!dead[j]) acc += d * d;
    }
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (threadIdx.x % 32 == 0) atomicAdd(out, acc);
}

// tr(ΔHΔᵀ) of a GPTQ result without a GEMM. The sweep's errors e (one per weight) satisfy
// Δ = e·U row by row, with U = chol((H + λI)⁻¹) upper over the live columns (dead ones have e = 0
// and Δ = 0 in the sweep), so ΔH'Δᵀ = e·U·H'·Uᵀ·eᵀ = Σe² (U·H'·Uᵀ = I), and
// tr(ΔHΔᵀ) = Σe² − λ·Σ_live Δ², exactly in exact arithmetic. Σe² is the sweep's loss sum (before
// llm-compressor's halving). The fp32 sweep makes Σe² about 1e-6 relative off; when the damping
// term takes more than half of Σe², the subtraction would magnify that, so the caller measures
// tr(ΔHΔᵀ) by the quad form instead (kMaxDampShare).
constexpr double kMaxDampShare = 0.5;
double trace_from_sweep(double sum_e2, double damp, double live_square_sum) {
  return sum_e2 - damp * live_square_sum;
}
bool trace_from_sweep_is_accurate(double sum_e2, double damp, double live_square_sum) {
  return damp * live_square_sum <= kMaxDampShare * sum_e2;
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

size_t round_up(size_t b) { return (b + DeviceArena::kAlign - 1) / DeviceArena::kAlign * DeviceArena::kAlign; }

// The batch's buffers for chunks of `chunk` matrices, in take order; sizes() and take() share the
// list so gptq_batch_scratch_bytes is what the call takes.
struct BatchBuffers {
  float *h = nullptr, *u = nullptr, *w = nullptr, *wp = nullptr, *deq = nullptr, *err = nullptr;
  float *scale = nullptr, *zp = nullptr, *tmp = nullptr, *update = nullptr;
  int32_t *codes = nullptr, *qcol = nullptr, *ocol = nullptr, *rtn_codes = nullptr;
  uint8_t *e8m0 = nullptr, *dead = nullptr;  // dead: [nh][cols] 1 for a dead column (original order)
  double *loss = nullptr, *traces = nullptr;  // traces: [chunk][3] tr(ΔHΔᵀ), tr(WHWᵀ), tr(ΔᵣHΔᵣᵀ)

  template <typename Fn>  // fn(pointer slot, bytes, name)
  void each(const QuantArgs& args, int64_t rows, int64_t cols, const GptqOptions& opts, bool shared, int chunk,
            bool errors, Fn&& fn) {
    const size_t per = static_cast<size_t>(rows * cols), hh = static_cast<size_t>(cols * cols);
    const size_t nh = shared ? 1 : static_cast<size_t>(chunk), n = static_cast<size_t>(chunk);
    int64_t scale_rows = 0, scale_cols = 0;
    qparams_shape(args, rows, cols, &scale_rows, &scale_cols);
    const size_t cells = static_cast<size_t>(scale_rows * scale_cols) * n;
    fn(reinterpret_cast<void**>(&h), hh * nh * 4, "GPTQ batch: Hessians");
    fn(reinterpret_cast<void**>(&u), hh * nh * 4, "GPTQ batch: U factors");
    fn(reinterpret_cast<void**>(&w), per * n * 4, "GPTQ batch: weights");
    fn(reinterpret_cast<void**>(&wp), per * n * 4, "GPTQ batch: permuted weights");
    fn(reinterpret_cast<void**>(&deq), per * n * 4, "GPTQ batch: dequantized weights");
    fn(reinterpret_cast<void**>(&codes), per * n * 4, "GPTQ batch: codes");
    fn(reinterpret_cast<void**>(&err), n * static_cast<size_t>(rows) * 2 * opts.block_size * 4, "GPTQ batch: block errors");
    fn(reinterpret_cast<void**>(&scale), cells * 4, "GPTQ batch: scales");
    fn(reinterpret_cast<void**>(&zp), cells * 4, "GPTQ batch: zero points");
    fn(reinterpret_cast<void**>(&e8m0), cells, "GPTQ batch: e8m0 scales");
    fn(reinterpret_cast<void**>(&qcol), static_cast<size_t>(cols) * nh * 4, "GPTQ batch: qparam columns");
    fn(reinterpret_cast<void**>(&ocol), static_cast<size_t>(cols) * nh * 4, "GPTQ batch: column order");
    fn(reinterpret_cast<void**>(&loss), n * 8, "GPTQ batch: losses");
    if (kBatchUpdate == GptqUpdate::kTf32x3) {
      fn(reinterpret_cast<void**>(&update), gptq_sweep_update_scratch_floats(chunk, rows, cols, opts.block_size, shared) * 4,
         "GPTQ batch: split update operands");
    }
    if (errors) {
      fn(reinterpret_cast<void**>(&traces), n * 3 * 8, "GPTQ batch: error traces");
      fn(reinterpret_cast<void**>(&dead), static_cast<size_t>(cols) * nh, "GPTQ batch: dead columns");
      fn(reinterpret_cast<void**>(&tmp), per * 4, "GPTQ batch: error scratch");
      fn(reinterpret_cast<void**>(&rtn_codes), per * 4, "GPTQ batch: RTN codes");
    }
  }
};

size_t transient_bytes(const QuantArgs& args, int64_t rows, int64_t cols, bool shared, int chunk) {
  return std::max(observer_cuda_scratch_bytes(args, chunk, rows, cols),
                  gptq_prepare_many_scratch_bytes(shared ? 1 : chunk, cols));
}

// Bytes of one matrix's encoded tensors, per layout entry.
std::vector<size_t> encoded_bytes(const std::vector<EncodedTensor>& layout) {
  std::vector<size_t> out;
  for (const EncodedTensor& t : layout) out.push_back(encoded_tensor_bytes(t));
  return out;
}

// The encoder's own scratch (its status slots) and alignment, on top of the outputs.
constexpr size_t kEncodeSlack = 1 << 20;

}  // namespace

size_t gptq_batch_scratch_bytes(const QuantArgs& args, int64_t rows, int64_t cols, const GptqOptions& opts,
                                bool shared_hessian, int chunk, bool errors, const PackFormat* encode) {
  size_t bytes = 0;
  BatchBuffers b;
  b.each(args, rows, cols, opts, shared_hessian, chunk, errors,
         [&](void**, size_t n, const char*) { bytes += round_up(std::max<size_t>(n, 1)); });
  size_t transient = transient_bytes(args, rows, cols, shared_hessian, chunk);
  if (encode) {
    size_t enc = kEncodeSlack;
    for (size_t n : encoded_bytes(compressed_module_layout(*encode, args, rows, cols, false))) {
      enc += round_up(n * static_cast<size_t>(chunk));
    }
    transient = std::max(transient, enc);
  }
  return bytes + transient;
}

std::vector<GptqResult> gptq_solve_batch_cuda(BlasHandle blas, SolverHandle solver, const QuantArgs& args,
                                              const GptqBatchIo& io, int count,
                                              const std::vector<const float*>& hessians, int64_t rows, int64_t cols,
                                              const GptqOptions& opts, DeviceStream stream, DeviceArena& arena,
                                              int chunk, GptqBatchErrors* errors) {
  const std::string why = gptq_cuda_unsupported(args, opts);
  DSV4_CHECK_IN("gptq", why.empty(), "GPU GPTQ: %s", why.c_str());
  DSV4_CHECK_IN("gptq", static_cast<bool>(io.load), "GPU GPTQ batch without a weight loader");
  const bool shared = hessians.size() == 1;
  DSV4_CHECK_IN("gptq", shared || static_cast<int>(hessians.size()) == count,
                "%zu Hessians for %d matrices (one shared, or one each)", hessians.size(), count);
  const bool device_sums = !io.hessian_sum_tokens.empty();
  DSV4_CHECK_IN("gptq", !device_sums || io.hessian_sum_tokens.size() == hessians.size(),
                "%zu token counts for %zu device Hessian sums", io.hessian_sum_tokens.size(), hessians.size());
  std::vector<GptqResult> out(static_cast<size_t>(count));
  if (errors) {
    errors->rel_error.assign(static_cast<size_t>(count), 0.0);
    errors->rtn_rel_error.assign(static_cast<size_t>(count), 0.0);
  }
  if (count == 0) return out;
  chunk = std::max(1, std::min(chunk, count));
  DSV4_CHECK_IN("gptq", !io.encode || io.encoded, "GPU GPTQ batch: encoding asked without an output");
  const PackFormat* encode = io.encode ? &*io.encode : nullptr;
  const size_t free_bytes = arena.capacity() - arena.used();
  while (chunk > 1 && gptq_batch_scratch_bytes(args, rows, cols, opts, shared, chunk, errors, encode) > free_bytes) {
    --chunk;
  }
  std::vector<EncodedTensor> layout;
  if (encode) {
    layout = compressed_module_layout(*encode, args, rows, cols, false);
    io.encoded->assign(static_cast<size_t>(count), {});
  }
  const std::vector<size_t> layout_bytes = encoded_bytes(layout);
  const size_t per = static_cast<size_t>(rows * cols), hh = static_cast<size_t>(cols * cols);

  ArenaScope scope(arena);
  BatchBuffers b;
  b.each(args, rows, cols, opts, shared, chunk, errors != nullptr,
         [&](void** slot, size_t n, const char* what) { *slot = arena.take_bytes(std::max<size_t>(n, 1), what); });
  int64_t scale_rows = 0, scale_cols = 0;
  qparams_shape(args, rows, cols, &scale_rows, &scale_cols);
  const size_t cells = static_cast<size_t>(scale_rows * scale_cols);
  const bool e8m0 = args.scale_dtype == ScaleDType::kE8m0;
  QParams grid;  // shape only: which qparam column a weight column uses
  grid.rows = rows, grid.cols = cols, grid.scale_rows = scale_rows, grid.scale_cols = scale_cols;

  std::vector<GptqPrepared> prepared;
  std::vector<int32_t> host_qcol, host_ocol;
  std::vector<uint8_t> host_dead;
  auto prepare = [&](int first, int n) {  // Hessians [first, first + n) into h/u slots 0..n-1, their column maps
    std::vector<const float*> ptrs;
    for (int i = 0; i < n; ++i) {
      const size_t j = static_cast<size_t>(first + i);
      if (device_sums) {
        hessian_finalize_cuda(hessians[j], io.hessian_sum_tokens[j], cols, b.h + i * hh, stream);
      } else {
        DSV4_CUDA_CHECK(cudaMemcpyAsync(b.h + i * hh, hessians[j], hh * sizeof(float), cudaMemcpyHostToDevice, stream));
      }
      ptrs.push_back(b.h + i * hh);
    }
    prepared = gptq_prepare_many_cuda(blas, solver, ptrs.data(), n, cols, opts, opts.actorder, b.u, arena, stream);
    host_qcol.clear();
    host_ocol.clear();
    for (const GptqPrepared& p : prepared) {
      const std::vector<int32_t> q = gptq_qparam_columns(args, grid, p);
      host_qcol.insert(host_qcol.end(), q.begin(), q.end());
      host_ocol.insert(host_ocol.end(), p.perm.begin(), p.perm.end());
    }
    DSV4_CUDA_CHECK(cudaMemcpyAsync(b.qcol, host_qcol.data(), host_qcol.size() * 4, cudaMemcpyHostToDevice, stream));
    // The host vectors stay untouched until the next prepare, which follows the chunk's synchronisation.
    DSV4_CUDA_CHECK(cudaMemcpyAsync(b.ocol, host_ocol.data(), host_ocol.size() * 4, cudaMemcpyHostToDevice, stream));
    if (errors) {
      host_dead.assign(static_cast<size_t>(cols) * prepared.size(), 0);
      for (size_t i = 0; i < prepared.size(); ++i) {
        for (const int32_t j : prepared[i].dead) host_dead[i * static_cast<size_t>(cols) + static_cast<size_t>(j)] = 1;
      }
      DSV4_CUDA_CHECK(cudaMemcpyAsync(b.dead, host_dead.data(), host_dead.size(), cudaMemcpyHostToDevice, stream));
    }
  };
  if (shared) prepare(0, 1);

  std::vector<float> host_scale(cells * chunk), host_zp(cells * chunk);
  std::vector<uint8_t> host_e8m0(e8m0 ? cells * chunk : 0);
  std::vector<double> host_loss(static_cast<size_t>(chunk)), host_traces(static_cast<size_t>(3 * chunk));
  auto qp_of = [&](int i) {
    return QParamsCuda{b.scale + i * cells, b.zp + i * cells, b.e8m0 + i * cells, nullptr};
  };
  for (int first = 0; first < count; first += chunk) {
    const int n = std::min(chunk, count - first);
    if (!shared) prepare(first, n);
    for (int i = 0; i < n; ++i) io.load(first + i, b.w + i * per, stream);
    // The up-front qparams of every matrix, from its original weight (gptq_solve's observer).
    observer_qparams_cuda(args, b.w, n, rows, cols, nullptr, qp_of(0), arena, stream);
    for (int i = 0; i < n; ++i) gptq_permute_cuda(b.w + i * per, 1, rows, cols, prepared[shared ? 0 : i], b.wp + i * per, stream);
    DSV4_CUDA_CHECK(cudaMemsetAsync(b.loss, 0, static_cast<size_t>(n) * sizeof(double), stream));
    // Matrices whose Hessian fell back to RTN sweep with the identity U (no between-block update);
    // a chunk mixing both runs as two sweeps.
    auto sweep = [&](int b0, int nb, bool identity) {
      GptqSweep s;
      s.count = nb;
      s.rows = rows;
      s.cols = cols;
      s.block_size = opts.block_size;
      s.w = b.wp + b0 * per;
      s.u = b.u + (shared ? 0 : b0 * hh);
      s.u_stride = shared ? 0 : static_cast<int64_t>(hh);
      s.scale = b.scale + b0 * cells;  // integer schemes: the stored scale is the effective one
      s.zero_point = b.zp + b0 * cells;
      s.scale_rows = scale_rows;
      s.scale_cols = scale_cols;
      s.qcol = b.qcol + (shared ? 0 : b0 * cols);
      s.out_col = b.ocol + (shared ? 0 : b0 * cols);
      s.col_map_stride = shared ? 0 : cols;
      s.qmin = args.qmin();
      s.qmax = args.qmax();
      s.bf16_dequant = args.scale_dtype == ScaleDType::kModel;
      s.codes = b.codes + b0 * per;
      s.dequant = b.deq + b0 * per;
      s.loss = b.loss + b0;
      s.err = b.err + static_cast<size_t>(b0) * rows * 2 * opts.block_size;
      s.identity_u = identity;
      s.kernel = kBatchSweep;
      s.update = kBatchUpdate;
      s.update_scratch = b.update;
      s.store = kBatchStore;
      gptq_sweep_cuda(blas, s, stream);
    };
    auto is_rtn = [&](int i) {
      const GptqFallback f = prepared[static_cast<size_t>(shared ? 0 : i)].fallback;
      return f == GptqFallback::kRtnNoTokens || f == GptqFallback::kRtnCholeskyFailed;
    };
    // tr(ΔHΔᵀ) of matrix i from its sweep (trace_from_sweep), or by the quad form when the damping
    // term would cancel most of Σe² (rare: heavy escalation); called after the chunk's synchronisation.
    auto sweep_trace = [&](int i, double live_square_sum) {
      const double sum_e2 = host_loss[static_cast<size_t>(i)], damp = prepared[static_cast<size_t>(shared ? 0 : i)].damp;
      if (trace_from_sweep_is_accurate(sum_e2, damp, live_square_sum)) return trace_from_sweep(sum_e2, damp, live_square_sum);
      float* delta = b.wp + i * per;
      diff_kernel<<<grid_blocks(per, 256, 1 << 16), 256, 0, stream>>>(b.w + i * per, b.deq + i * per, per, delta);
      DSV4_CUDA_CHECK(cudaMemsetAsync(b.traces + 3 * i, 0, sizeof(double), stream));
      quad_form_cuda(blas, delta, b.h + (shared ? 0 : i) * hh, rows, cols, b.tmp, b.traces + 3 * i, stream);
      double quad = 0.0;
      DSV4_CUDA_CHECK(cudaMemcpyAsync(&quad, b.traces + 3 * i, sizeof(double), cudaMemcpyDeviceToHost, stream));
      DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
      return quad;
    };
    for (int b0 = 0; b0 < n;) {  // runs of equal fallback kind
      int b1 = b0 + 1;
      while (b1 < n && is_rtn(b1) == is_rtn(b0)) ++b1;
      sweep(b0, b1 - b0, is_rtn(b0));
      b0 = b1;
    }
    if (io.store) {
      for (int i = 0; i < n; ++i) io.store(first + i, b.deq + i * per, stream);
    }
    if (encode) {  // the encoder waits for the stream once (its range verdict); then the tensors come down
      ArenaScope enc_scope(arena);
      std::vector<void*> outputs;
      for (size_t k = 0; k < layout.size(); ++k) outputs.push_back(arena.take_bytes(layout_bytes[k] * n, layout[k].name));
      compressed_module_encode_cuda(*encode, args, qp_of(0), b.codes, n, rows, cols, outputs, arena, stream);
      size_t total = 0;
      for (size_t k = 0; k < layout.size(); ++k) total += layout_bytes[k] * n;
      if (io.staging && total <= io.staging->size()) {  // one pinned copy per tensor kind, unpacked on all cores
        std::vector<size_t> at(layout.size(), 0);
        for (size_t k = 0, off = 0; k < layout.size(); off += layout_bytes[k] * n, ++k) {
          at[k] = off;
          DSV4_CUDA_CHECK(cudaMemcpyAsync(io.staging->data() + off, outputs[k], layout_bytes[k] * n,
                                          cudaMemcpyDeviceToHost, stream));
        }
        DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
        parallel_for(static_cast<size_t>(n), 0, [&](size_t i) {
          std::vector<EncodedTensor>& mine = (*io.encoded)[first + i];
          mine = layout;
          for (size_t k = 0; k < layout.size(); ++k) {
            mine[k].bytes.resize(layout_bytes[k]);
            std::memcpy(mine[k].bytes.data(), io.staging->data() + at[k] + i * layout_bytes[k], layout_bytes[k]);
          }
        });
      } else {
        for (int i = 0; i < n; ++i) {
          std::vector<EncodedTensor>& mine = (*io.encoded)[static_cast<size_t>(first + i)];
          mine = layout;
          for (size_t k = 0; k < layout.size(); ++k) {
            mine[k].bytes.resize(layout_bytes[k]);
            DSV4_CUDA_CHECK(cudaMemcpyAsync(mine[k].bytes.data(),
                                            static_cast<const char*>(outputs[k]) + i * layout_bytes[k], layout_bytes[k],
                                            cudaMemcpyDeviceToHost, stream));
          }
        }
      }
      // No wait here: whatever takes the outputs' memory next runs after these copies on `stream`.
    }
    if (errors) {  // the statistics, enqueued matrix by matrix (wp is free after the sweep)
      DSV4_CUDA_CHECK(cudaMemsetAsync(b.traces, 0, static_cast<size_t>(3 * n) * sizeof(double), stream));
      for (int i = 0; i < n; ++i) {
        const float* hi = b.h + (shared ? 0 : i) * hh;
        const float* wi = b.w + i * per;
        float* delta = b.wp + i * per;
        double* t = b.traces + 3 * i;
        if (is_rtn(i) || !errors->trace_from_sweep) {  // (no sweep identity without a factorisation)
          diff_kernel<<<grid_blocks(per, 256, 1 << 16), 256, 0, stream>>>(wi, b.deq + i * per, per, delta);
          quad_form_cuda(blas, delta, hi, rows, cols, b.tmp, t, stream);
        } else {  // Σ_live Δ², for trace_from_sweep
          live_square_sum_kernel<<<static_cast<unsigned>(std::min<int64_t>(rows, 1 << 16)), 256, 0, stream>>>(
              wi, b.deq + i * per, rows, static_cast<int>(cols), b.dead + (shared ? 0 : i) * cols, t);
          DSV4_CUDA_CHECK_LAUNCH();
        }
        quad_form_cuda(blas, wi, hi, rows, cols, b.tmp, t + 1, stream);
        quantizer_quantize_cuda(args, wi, 1, rows, cols, qp_of(i), b.rtn_codes, delta, stream,
                                kPeerRtnArith);  // the peer's RTN, same qparams
        diff_kernel<<<grid_blocks(per, 256, 1 << 16), 256, 0, stream>>>(wi, delta, per, delta);
        quad_form_cuda(blas, delta, hi, rows, cols, b.tmp, t + 2, stream);
      }
      DSV4_CUDA_CHECK(cudaMemcpyAsync(host_traces.data(), b.traces, static_cast<size_t>(3 * n) * sizeof(double),
                                      cudaMemcpyDeviceToHost, stream));
    }
    DSV4_CUDA_CHECK(cudaMemcpyAsync(host_loss.data(), b.loss, n * sizeof(double), cudaMemcpyDeviceToHost, stream));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(host_scale.data(), b.scale, cells * n * 4, cudaMemcpyDeviceToHost, stream));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(host_zp.data(), b.zp, cells * n * 4, cudaMemcpyDeviceToHost, stream));
    if (e8m0) DSV4_CUDA_CHECK(cudaMemcpyAsync(host_e8m0.data(), b.e8m0, cells * n, cudaMemcpyDeviceToHost, stream));
    for (int i = 0; i < n; ++i) {
      GptqResult& r = out[static_cast<size_t>(first + i)];
      if (io.host_codes) {
        r.codes.resize(per);
        DSV4_CUDA_CHECK(cudaMemcpyAsync(r.codes.data(), b.codes + i * per, per * 4, cudaMemcpyDeviceToHost, stream));
      }
      if (io.host_dequant) {
        r.dequant.resize(per);
        DSV4_CUDA_CHECK(cudaMemcpyAsync(r.dequant.data(), b.deq + i * per, per * 4, cudaMemcpyDeviceToHost, stream));
      }
    }
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int i = 0; i < n; ++i) {
      GptqResult& r = out[static_cast<size_t>(first + i)];
      const GptqPrepared& p = prepared[static_cast<size_t>(shared ? 0 : i)];
      r.qparams = grid;
      r.qparams.scale.assign(host_scale.begin() + i * cells, host_scale.begin() + (i + 1) * cells);
      r.qparams.zero_point.assign(host_zp.begin() + i * cells, host_zp.begin() + (i + 1) * cells);
      if (e8m0) r.qparams.scale_e8m0.assign(host_e8m0.begin() + i * cells, host_e8m0.begin() + (i + 1) * cells);
      r.loss = host_loss[static_cast<size_t>(i)] / 2.0;
      r.dampening_frac_used = p.dampening_frac_used;
      r.damp = p.damp;
      r.damping_escalations = p.damping_escalations;
      r.fallback = p.fallback;
      r.dead_columns = static_cast<int64_t>(p.dead.size());
      r.actorder_used = opts.actorder;
      if (errors) {
        double* t = host_traces.data() + 3 * i;
        if (!is_rtn(i) && errors->trace_from_sweep) t[0] = sweep_trace(i, t[0]);
        errors->rel_error[static_cast<size_t>(first + i)] = t[1] == 0.0 ? 0.0 : t[0] / t[1];
        errors->rtn_rel_error[static_cast<size_t>(first + i)] = t[1] == 0.0 ? 0.0 : t[2] / t[1];
      }
    }
  }
  return out;
}

std::vector<GptqResult> gptq_solve_batch_cuda(BlasHandle blas, SolverHandle solver, const QuantArgs& args,
                                              const std::vector<const float*>& weights,
                                              const std::vector<const float*>& hessians, int64_t rows, int64_t cols,
                                              const GptqOptions& opts, DeviceStream stream, int chunk,
                                              GptqBatchErrors* errors) {
  const int count = static_cast<int>(weights.size());
  chunk = std::max(1, std::min(chunk, count));
  DeviceArena arena(std::max<size_t>(
      gptq_batch_scratch_bytes(args, rows, cols, opts, hessians.size() == 1, chunk, errors != nullptr),
      DeviceArena::kAlign));
  GptqBatchIo io;
  const size_t bytes = static_cast<size_t>(rows * cols) * sizeof(float);
  io.load = [&](int i, float* dst, DeviceStream s) {
    DSV4_CUDA_CHECK(cudaMemcpyAsync(dst, weights[static_cast<size_t>(i)], bytes, cudaMemcpyHostToDevice, s));
  };
  return gptq_solve_batch_cuda(blas, solver, args, io, count, hessians, rows, cols, opts, stream, arena, chunk, errors);
}

}  // namespace dsv4::quant

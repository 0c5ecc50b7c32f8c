// test_gptq_cuda.cu: the batched GPU GPTQ (quant/gptq_cuda.h) against gptq_solve, the CPU
// reference, on random weights and correlated Hessians drawn fresh each run (CUDA build; skips
// without a device unless DSV4_REQUIRE_GPU=1). The qparams are the CPU observer's, so the
// comparison isolates the Cholesky chain and the sweep (the GPU observer has its own test,
// test_quantizer_cuda.cu).
// Stated tolerances:
//   - diagonal H (U diagonal: the between-block SGEMM adds exact zeros) and zero-token H (RTN):
//     codes, dequantized values and fallbacks identical to the CPU; the loss within 1e-6
//     (the GPU sums (diff/d)² from the fp32 quotient, the CPU from an fp64 one);
//   - correlated H: U within 1e-4 of the largest |U| entry; at most 1% of codes differ (the
//     SGEMM's summation order flips a rounding now and then; the measured fraction is printed);
//     loss within 1% of the CPU's; dead columns and damping identical;
//   - Hessians prepared batched: U within 4 fp32 ulps of max |U| of one-at-a-time; the
//     escalation path (indefinite H) and the zero-token path bitwise equal.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/check.h"
#include "common/device_arena.h"
#include "common/pinned_host.h"
#include "quant/compressed_module.h"
#include "quant/gptq.h"
#include "quant/gptq_batch_cuda.h"
#include "quant/gptq_cuda.h"
#include "quant/gptq_prepare.h"
#include "quant/hessian.h"
#include "quant/observer.h"
#include "quant/quant_scheme.h"
#include "quant/quantizer.h"
#include "tests/cuda_handles.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"

namespace dsv4::quant {
namespace {

std::vector<float> normal(size_t n, float sigma) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(fresh_rng());
  return v;
}

// H = 2/n Σ xxᵀ of correlated activations (a random mix of fewer latent channels), with column
// `dead` never active; diagonal-only when `diagonal`.
std::vector<float> make_hessian(int64_t cols, int dead, bool diagonal) {
  const int64_t tokens = 3 * cols, latent = cols / 2;
  const std::vector<float> z = normal(static_cast<size_t>(tokens * latent), 1.0f);
  const std::vector<float> mix = normal(static_cast<size_t>(latent * cols), 1.0f / std::sqrt(float(latent)));
  std::vector<float> x(static_cast<size_t>(tokens * cols), 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < latent; ++k) {
      const float zk = z[static_cast<size_t>(t * latent + k)];
      for (int64_t c = 0; c < cols; ++c) x[static_cast<size_t>(t * cols + c)] += zk * mix[static_cast<size_t>(k * cols + c)];
    }
    x[static_cast<size_t>(t * cols + 5)] *= 10.0f;  // an outlier channel
    if (dead >= 0) x[static_cast<size_t>(t * cols + dead)] = 0.0f;
  }
  HessianAccumulator acc(cols);
  acc.add(x.data(), tokens);
  std::vector<float> h = acc.finalize().h;
  if (diagonal) {
    for (int64_t i = 0; i < cols; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        if (i != j) h[static_cast<size_t>(i * cols + j)] = 0.0f;
      }
    }
  }
  return h;
}

struct GpuResult {
  std::vector<int32_t> codes;
  std::vector<float> dequant;
  std::vector<double> loss;
  std::vector<GptqPrepared> prepared;
  std::vector<float> u0;  // the first matrix's U
};

// Solves `ws.size()` matrices on the GPU; hs holds one H (shared) or one per matrix.
// `kernel` and `update` pick the sweep's in-block kernel and between-block update.
GpuResult gpu_solve(const QuantArgs& args, const std::vector<std::vector<float>>& ws,
                    const std::vector<std::vector<float>>& hs, int64_t rows, int64_t cols, const GptqOptions& opts,
                    GptqSweepKernel kernel = GptqSweepKernel::kSliced, GptqUpdate update = GptqUpdate::kFp32,
                    GptqStore store = GptqStore::kScattered) {
  CudaBlasSolver hd;
  const int count = static_cast<int>(ws.size());
  const bool shared = hs.size() == 1;
  const int nh = static_cast<int>(hs.size());
  DeviceBuffer<float> u(static_cast<size_t>(nh * cols * cols)), w(static_cast<size_t>(count * rows * cols));
  GpuResult out;
  std::vector<int32_t> qcol, out_col;
  std::vector<float> scale, zp;
  int64_t scale_rows = 0, scale_cols = 0;
  for (int i = 0; i < nh; ++i) {
    DeviceBuffer<float> h(hs[static_cast<size_t>(i)]);
    out.prepared.push_back(gptq_prepare_cuda(hd.solver, h.p, cols, opts, opts.actorder, u.p + i * cols * cols, nullptr));
  }
  for (int b = 0; b < count; ++b) {
    const GptqPrepared& p = out.prepared[static_cast<size_t>(shared ? 0 : b)];
    DeviceBuffer<float> wb(ws[static_cast<size_t>(b)]);
    gptq_permute_cuda(wb.p, 1, rows, cols, p, w.p + b * rows * cols, nullptr);
    const QParams qp = observer_qparams(args, ws[static_cast<size_t>(b)].data(), rows, cols);
    scale_rows = qp.scale_rows;
    scale_cols = qp.scale_cols;
    for (int64_t c = 0; c < qp.scale_rows * qp.scale_cols; ++c) {
      scale.push_back(qparams_effective_scale(qp, c));
      zp.push_back(qp.zero_point[static_cast<size_t>(c)]);
    }
    if (b == 0 || !shared) {
      const std::vector<int32_t> q = gptq_qparam_columns(args, qp, p);
      qcol.insert(qcol.end(), q.begin(), q.end());
      out_col.insert(out_col.end(), p.perm.begin(), p.perm.end());
    }
  }
  DeviceBuffer<float> d_scale(scale), d_zp(zp);
  DeviceBuffer<int32_t> d_qcol(qcol), d_out(out_col), codes(static_cast<size_t>(count * rows * cols));
  DeviceBuffer<float> deq(static_cast<size_t>(count * rows * cols)), err(static_cast<size_t>(count * rows * 2 * opts.block_size));
  DeviceBuffer<double> loss(std::vector<double>(static_cast<size_t>(count), 0.0));
  GptqSweep s;
  s.count = count;
  s.rows = rows;
  s.cols = cols;
  s.block_size = opts.block_size;
  s.w = w.p;
  s.u = u.p;
  s.u_stride = shared ? 0 : cols * cols;
  s.scale = d_scale.p;
  s.zero_point = d_zp.p;
  s.scale_rows = scale_rows;
  s.scale_cols = scale_cols;
  s.qcol = d_qcol.p;
  s.out_col = d_out.p;
  s.col_map_stride = shared ? 0 : cols;
  s.qmin = args.qmin();
  s.qmax = args.qmax();
  s.bf16_dequant = args.scale_dtype == ScaleDType::kModel;
  s.codes = codes.p;
  s.dequant = deq.p;
  s.loss = loss.p;
  s.err = err.p;
  s.identity_u = out.prepared[0].fallback == GptqFallback::kRtnNoTokens ||
                 out.prepared[0].fallback == GptqFallback::kRtnCholeskyFailed;
  s.kernel = kernel;
  s.update = update;
  s.store = store;
  DeviceBuffer<float> scratch(gptq_sweep_update_scratch_floats(count, rows, cols, opts.block_size, shared));
  s.update_scratch = scratch.p;
  gptq_sweep_cuda(hd.blas, s, nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  out.codes = codes.get();
  out.dequant = deq.get();
  out.loss = loss.get();
  std::vector<float> all_u = u.get();
  out.u0.assign(all_u.begin(), all_u.begin() + cols * cols);
  return out;
}

QuantArgs w4a16() { return quant_scheme_preset("W4A16").weights; }

struct Compared {
  size_t codes_differing = 0, dequant_mismatch = 0;
};

// Compares matrix b of the GPU result with gptq_solve of (w, h).
Compared compare(const QuantArgs& args, const GpuResult& g, int b, const std::vector<float>& w,
                 const std::vector<float>& h, int64_t rows, int64_t cols, const GptqOptions& opts, double loss_tol) {
  const GptqResult cpu = gptq_solve(args, w.data(), rows, cols, h.data(), opts);
  const GptqPrepared& p = g.prepared[std::min<size_t>(static_cast<size_t>(b), g.prepared.size() - 1)];
  EXPECT_EQ(p.fallback, cpu.fallback);
  EXPECT_EQ(static_cast<int64_t>(p.dead.size()), cpu.dead_columns);
  EXPECT_EQ(p.damping_escalations, cpu.damping_escalations);
  Compared c;
  const size_t off = static_cast<size_t>(b * rows * cols);
  for (size_t i = 0; i < cpu.codes.size(); ++i) {
    c.codes_differing += g.codes[off + i] != cpu.codes[i];
    c.dequant_mismatch += g.codes[off + i] == cpu.codes[i] && g.dequant[off + i] != cpu.dequant[i];
  }
  EXPECT_EQ(c.dequant_mismatch, 0u) << "equal codes must dequantize equally";
  EXPECT_NEAR(g.loss[static_cast<size_t>(b)] / 2.0, cpu.loss, loss_tol * std::max(1e-30, cpu.loss));
  return c;
}

TEST(GptqCuda, DiagonalHessianEqualsCpuExactly) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t rows = 200, cols = 384;  // rows not a multiple of the CTA's 128; 3 column blocks
  const QuantArgs args = w4a16();
  const GptqOptions opts;  // actorder static
  const std::vector<float> h = make_hessian(cols, 17, true);
  std::vector<std::vector<float>> ws = {normal(static_cast<size_t>(rows * cols), 0.02f),
                                        normal(static_cast<size_t>(rows * cols), 0.05f)};
  const GpuResult g = gpu_solve(args, ws, {h}, rows, cols, opts);
  for (int b = 0; b < 2; ++b) {
    const Compared c = compare(args, g, b, ws[static_cast<size_t>(b)], h, rows, cols, opts, 1e-6);
    EXPECT_EQ(c.codes_differing, 0u) << "matrix " << b;
  }
}

TEST(GptqCuda, ZeroTokenHessianIsRtnExactly) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t rows = 64, cols = 256;
  const QuantArgs args = w4a16();
  const std::vector<float> h(static_cast<size_t>(cols * cols), 0.0f);
  const std::vector<std::vector<float>> ws = {normal(static_cast<size_t>(rows * cols), 0.03f)};
  const GpuResult g = gpu_solve(args, ws, {h}, rows, cols, GptqOptions{});
  EXPECT_EQ(g.prepared[0].fallback, GptqFallback::kRtnNoTokens);
  const Compared c = compare(args, g, 0, ws[0], h, rows, cols, GptqOptions{}, 1e-6);
  EXPECT_EQ(c.codes_differing, 0u);
}

TEST(GptqCuda, CorrelatedHessiansMatchCpuUpToSummationOrder) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t rows = 256, cols = 512;
  const QuantArgs args = w4a16();
  for (const ActOrder order : {ActOrder::kStatic, ActOrder::kNone}) {
    GptqOptions opts;
    opts.actorder = order;
    // Shared H (the all-experts w1/w3 case) and one H per matrix (w2).
    const std::vector<float> shared_h = make_hessian(cols, 40, false);
    std::vector<std::vector<float>> ws, own_h;
    for (int b = 0; b < 3; ++b) {
      ws.push_back(normal(static_cast<size_t>(rows * cols), 0.02f * (b + 1)));
      own_h.push_back(make_hessian(cols, b == 1 ? 7 : -1, false));
    }
    for (const bool shared : {true, false}) {
      const GpuResult g = gpu_solve(args, ws, shared ? std::vector<std::vector<float>>{shared_h} : own_h, rows, cols, opts);
      // U against the CPU reference of the same preparation (act-order, dead columns, damping).
      const std::vector<float>& h0 = shared ? shared_h : own_h[0];
      std::vector<float> u_cpu(static_cast<size_t>(cols * cols));
      const GptqPrepared cpu = gptq_prepare_reference(h0.data(), cols, opts, order, u_cpu.data());
      ASSERT_EQ(cpu.perm, g.prepared[0].perm) << "act-order permutation";
      double umax = 0, udiff = 0;
      for (size_t i = 0; i < u_cpu.size(); ++i) {
        umax = std::max(umax, std::fabs(static_cast<double>(u_cpu[i])));
        udiff = std::max(udiff, std::fabs(static_cast<double>(u_cpu[i]) - g.u0[i]));
      }
      EXPECT_LE(udiff, 1e-4 * umax) << "U";
      size_t differing = 0;
      for (int b = 0; b < 3; ++b) {
        differing += compare(args, g, b, ws[static_cast<size_t>(b)], shared ? shared_h : own_h[static_cast<size_t>(b)],
                             rows, cols, opts, 1e-2).codes_differing;
      }
      const double frac = static_cast<double>(differing) / static_cast<double>(3 * rows * cols);
      std::printf("actorder %s, %s H: %zu of %lld codes differ from the CPU (%.4f%%)\n",
                  std::string(actorder_name(order)).c_str(), shared ? "shared" : "per-matrix", differing,
                  static_cast<long long>(3 * rows * cols), 100.0 * frac);
      EXPECT_LE(frac, 0.01);
    }
  }
}

// The rowwise in-block kernel against the sliced one on the same inputs, each storing its results
// scattered or in sweep order: codes and dequantized values bit for bit (the same operations in
// the same order per weight); the loss, summed by atomics in another order, within 1e-12. Rows not
// a multiple of either kernel's CTA (300: a partial second CTA of 256 rows), four blocks (two
// pairs), act-order static (a block's columns use scattered qparam groups and output columns),
// shared and per-matrix U, and a channel-strategy scheme.
TEST(GptqCuda, RowwiseKernelEqualsSlicedBitForBit) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t rows = 300, cols = 512;
  std::vector<std::vector<float>> ws, own_h;
  for (int b = 0; b < 2; ++b) {
    ws.push_back(normal(static_cast<size_t>(rows * cols), 0.03f));
    own_h.push_back(make_hessian(cols, b == 1 ? 11 : -1, false));
  }
  for (const char* scheme : {"W4A16", "W8A16"}) {
    const QuantArgs args = quant_scheme_preset(scheme).weights;
    for (const bool shared : {true, false}) {
      const std::vector<std::vector<float>> hs = shared ? std::vector<std::vector<float>>{own_h[0]} : own_h;
      const GpuResult sliced = gpu_solve(args, ws, hs, rows, cols, GptqOptions{}, GptqSweepKernel::kSliced);
      for (const GptqSweepKernel kernel : {GptqSweepKernel::kSliced, GptqSweepKernel::kRowwise}) {
        for (const GptqStore store : {GptqStore::kScattered, GptqStore::kSweepOrder}) {
          if (kernel == GptqSweepKernel::kSliced && store == GptqStore::kScattered) continue;  // the reference
          const GpuResult other = gpu_solve(args, ws, hs, rows, cols, GptqOptions{}, kernel, GptqUpdate::kFp32, store);
          const std::string what = std::string(scheme) + (shared ? ", shared H" : ", own H") +
                                   (kernel == GptqSweepKernel::kRowwise ? ", rowwise" : ", sliced") +
                                   (store == GptqStore::kSweepOrder ? ", sweep order" : ", scattered");
          ASSERT_EQ(sliced.u0, other.u0) << "the same U in both runs";
          size_t codes = 0, deq = 0;
          for (size_t i = 0; i < sliced.codes.size(); ++i) {
            codes += sliced.codes[i] != other.codes[i];
            deq += std::memcmp(&sliced.dequant[i], &other.dequant[i], sizeof(float)) != 0;
          }
          EXPECT_EQ(codes, 0u) << what;
          EXPECT_EQ(deq, 0u) << what;
          for (size_t b = 0; b < 2; ++b) EXPECT_NEAR(other.loss[b], sliced.loss[b], 1e-12 * sliced.loss[b]) << what;
        }
      }
    }
  }
}

// The 3xTF32 between-block update against the CPU reference, under the SGEMM's bounds (at most 1%
// of codes differ, loss within 1%); how far each update is from the CPU, and from each other, is
// printed.
TEST(GptqCuda, Tf32x3UpdateMatchesCpuWithinTheBound) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t rows = 256, cols = 640;  // five blocks: two pairs and a last single block
  const QuantArgs args = w4a16();
  const GptqOptions opts;
  std::vector<std::vector<float>> ws, own_h;
  for (int b = 0; b < 3; ++b) {
    ws.push_back(normal(static_cast<size_t>(rows * cols), 0.02f * (b + 1)));
    own_h.push_back(make_hessian(cols, b == 2 ? 3 : -1, false));
  }
  for (const bool shared : {true, false}) {
    const std::vector<std::vector<float>> hs = shared ? std::vector<std::vector<float>>{own_h[0]} : own_h;
    const GpuResult fp32 = gpu_solve(args, ws, hs, rows, cols, opts, GptqSweepKernel::kRowwise, GptqUpdate::kFp32);
    const GpuResult x3 = gpu_solve(args, ws, hs, rows, cols, opts, GptqSweepKernel::kRowwise, GptqUpdate::kTf32x3);
    size_t vs_cpu = 0, fp32_vs_cpu = 0, vs_fp32 = 0;
    for (int b = 0; b < 3; ++b) {
      const std::vector<float>& h = shared ? own_h[0] : own_h[static_cast<size_t>(b)];
      vs_cpu += compare(args, x3, b, ws[static_cast<size_t>(b)], h, rows, cols, opts, 1e-2).codes_differing;
      fp32_vs_cpu += compare(args, fp32, b, ws[static_cast<size_t>(b)], h, rows, cols, opts, 1e-2).codes_differing;
    }
    for (size_t i = 0; i < x3.codes.size(); ++i) vs_fp32 += x3.codes[i] != fp32.codes[i];
    const double n = static_cast<double>(3 * rows * cols);
    std::printf("%s H: 3xTF32 differs from the CPU in %zu codes (%.4f%%), SGEMM in %zu (%.4f%%); 3xTF32 vs SGEMM %zu\n",
                shared ? "shared" : "per-matrix", vs_cpu, 100.0 * vs_cpu / n, fp32_vs_cpu, 100.0 * fp32_vs_cpu / n,
                vs_fp32);
    EXPECT_LE(vs_cpu / n, 0.01);
  }
}

// The batch's tr(ΔHΔᵀ) comes from the sweep (Σe² − λ·Σ_live Δ²) unless the damping term takes
// most of Σe², where it is measured by the quad form: both paths against the CPU's fp64
// gptq_rel_error, with dead columns (which the identity leaves out) in every Hessian.
TEST(GptqCuda, ErrorStatisticsFromTheSweepMatchCpuAtAnyDamping) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t rows = 128, cols = 384;
  const QuantArgs args = w4a16();
  CudaBlasSolver hd;
  std::vector<std::vector<float>> ws, hs;
  std::vector<const float*> w_ptrs, h_ptrs;
  for (int i = 0; i < 3; ++i) {
    ws.push_back(normal(static_cast<size_t>(rows * cols), 0.02f));
    hs.push_back(make_hessian(cols, 20 + i, false));
  }
  for (int i = 0; i < 3; ++i) w_ptrs.push_back(ws[static_cast<size_t>(i)].data()), h_ptrs.push_back(hs[static_cast<size_t>(i)].data());
  for (const float frac : {0.01f, 0.1f, 10.0f}) {  // 10: λ ≫ H, the quad-form path
    GptqOptions opts;
    opts.dampening_frac = frac;
    GptqBatchErrors errors;
    errors.trace_from_sweep = true;
    const std::vector<GptqResult> got =
        gptq_solve_batch_cuda(hd.blas, hd.solver, args, w_ptrs, h_ptrs, rows, cols, opts, nullptr, 3, &errors);
    for (int i = 0; i < 3; ++i) {
      const size_t k = static_cast<size_t>(i);
      const double want = gptq_rel_error(ws[k].data(), got[k].dequant.data(), rows, cols, hs[k].data());
      EXPECT_EQ(got[k].dead_columns, 1) << i;
      EXPECT_NEAR(errors.rel_error[k], want, 1e-2 * want) << "dampening_frac " << frac << ", matrix " << i;
    }
  }
}

// Batched preparation vs one at a time: the same plans; U equal up to fp64 rounding (the
// blocked batched Cholesky sums in another order: at most 4 fp32 ulps of the largest |U| entry);
// Hessians that are not positive definite (one caught only by the non-finite check) take the
// one-at-a-time escalation path and match it bit for bit; a zero-token Hessian gets the identity.
TEST(GptqCuda, BatchedPreparationEqualsOneAtATime) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t cols = 384;  // three 128-column Cholesky blocks
  const int count = 5;
  std::vector<std::vector<float>> hs;
  for (int i = 0; i < count; ++i) hs.push_back(make_hessian(cols, i == 2 ? 9 : -1, false));
  std::vector<float> indefinite(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i) indefinite[static_cast<size_t>(i * cols + i)] = 1.0f;
  std::vector<float> negative = indefinite;
  indefinite[1] = indefinite[static_cast<size_t>(cols)] = 3.0f;  // minor [[1, 3], [3, 1]]: eigenvalue -2
  hs.push_back(indefinite);
  negative[static_cast<size_t>(7 * cols + 7)] = -0.5f;  // damping 0.01 and 0.1 fail, 1.0 succeeds (test_gptq.cpp)
  hs.push_back(negative);
  hs.push_back(std::vector<float>(static_cast<size_t>(cols * cols), 0.0f));  // a zero-token one
  CudaBlasSolver hd;
  std::vector<float> all;
  for (const auto& h : hs) all.insert(all.end(), h.begin(), h.end());
  DeviceBuffer<float> d_h(all), u_many(all.size()), u_one(static_cast<size_t>(cols * cols));
  std::vector<const float*> ptrs;
  for (size_t i = 0; i < hs.size(); ++i) ptrs.push_back(d_h.p + i * static_cast<size_t>(cols * cols));
  DeviceArena arena(gptq_prepare_many_scratch_bytes(static_cast<int>(hs.size()), cols));
  const std::vector<GptqPrepared> many = gptq_prepare_many_cuda(hd.blas, hd.solver, ptrs.data(), static_cast<int>(hs.size()), cols,
                                                                GptqOptions{}, ActOrder::kStatic, u_many.p, arena, nullptr);
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_GT(arena.high_water(), 0u);
  const std::vector<float> um = u_many.get();
  for (size_t i = 0; i < hs.size(); ++i) {
    const GptqPrepared one = gptq_prepare_cuda(hd.solver, ptrs[i], cols, GptqOptions{}, ActOrder::kStatic, u_one.p, nullptr);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(many[i].perm, one.perm) << i;
    EXPECT_EQ(many[i].dead, one.dead) << i;
    EXPECT_EQ(many[i].fallback, one.fallback) << i;
    EXPECT_EQ(many[i].damping_escalations, one.damping_escalations) << i;
    EXPECT_EQ(many[i].damp, one.damp) << i;
    const std::vector<float> uo = u_one.get();
    float umax = 0.0f, udiff = 0.0f;
    size_t same = 0;
    for (size_t e = 0; e < uo.size(); ++e) {
      const float m = um[i * static_cast<size_t>(cols * cols) + e];
      umax = std::max(umax, std::fabs(uo[e]));
      udiff = std::max(udiff, std::fabs(uo[e] - m));
      same += uo[e] == m;
    }
    if (one.fallback == GptqFallback::kNone) {
      EXPECT_LE(udiff, 4.0f * std::ldexp(umax, -23)) << "U of Hessian " << i;
      std::printf("Hessian %zu: %.2f%% of U entries bitwise equal, max |diff| %.3g of max |U| %.3g\n", i,
                  100.0 * static_cast<double>(same) / static_cast<double>(uo.size()), udiff, umax);
    } else {
      EXPECT_EQ(same, uo.size()) << "U of Hessian " << i << " (fallback path)";
    }
  }
  EXPECT_NE(many[static_cast<size_t>(count)].fallback, GptqFallback::kNone);  // the indefinite ones escalated
  EXPECT_EQ(many[static_cast<size_t>(count + 1)].fallback, GptqFallback::kDampingRaised);
  EXPECT_EQ(many[static_cast<size_t>(count + 1)].damping_escalations, 2);
  EXPECT_EQ(many.back().fallback, GptqFallback::kRtnNoTokens);
}

// The host-in, host-out batch the pipeline uses: one shared H (chunked: 5 matrices in chunks of
// 2) and one H each (a zero-token H among them, whose matrix is RTN), against gptq_solve.
TEST(GptqCuda, SolveBatchMatchesGptqSolve) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t rows = 96, cols = 256;
  const QuantArgs args = w4a16();
  const GptqOptions opts;
  CudaBlasSolver hd;
  std::vector<std::vector<float>> ws;
  for (int i = 0; i < 5; ++i) ws.push_back(normal(static_cast<size_t>(rows * cols), 0.03f));
  std::vector<const float*> w_ptrs;
  for (const auto& w : ws) w_ptrs.push_back(w.data());
  std::vector<std::vector<float>> hs = {make_hessian(cols, 3, false)};
  for (int i = 1; i < 5; ++i) hs.push_back(i == 2 ? std::vector<float>(static_cast<size_t>(cols * cols), 0.0f)
                                                  : make_hessian(cols, 0, false));
  for (const bool shared : {true, false}) {
    std::vector<const float*> h_ptrs;
    for (int i = 0; i < (shared ? 1 : 5); ++i) h_ptrs.push_back(hs[static_cast<size_t>(i)].data());
    GptqBatchErrors errors;
    const std::vector<GptqResult> got = gptq_solve_batch_cuda(hd.blas, hd.solver, args, w_ptrs, h_ptrs, rows, cols, opts,
                                                              nullptr, /*chunk=*/2, &errors);
    ASSERT_EQ(got.size(), 5u);
    size_t differ = 0;
    for (int i = 0; i < 5; ++i) {
      const std::vector<float>& h = hs[static_cast<size_t>(shared ? 0 : i)];
      const GptqResult cpu = gptq_solve(args, ws[static_cast<size_t>(i)].data(), rows, cols, h.data(), opts);
      const GptqResult& g = got[static_cast<size_t>(i)];
      EXPECT_EQ(g.fallback, cpu.fallback) << i;
      EXPECT_EQ(g.dead_columns, cpu.dead_columns) << i;
      EXPECT_EQ(g.qparams.scale, cpu.qparams.scale) << i;
      EXPECT_EQ(g.qparams.zero_point, cpu.qparams.zero_point) << i;
      // The GPU's dequantized weight is the CPU dequantization of its codes, bit for bit: what a
      // rank that receives the encoded tensors, or a replay, rebuilds (encoded_linear_decode).
      EXPECT_TRUE(gptq_dequant_with_g_idx(args, g.qparams, g.codes, g.g_idx) == g.dequant) << i;
      EXPECT_NEAR(g.loss, cpu.loss, 1e-3 * std::max(1e-30, cpu.loss)) << i;
      for (size_t k = 0; k < cpu.codes.size(); ++k) differ += g.codes[k] != cpu.codes[k];
      if (cpu.fallback == GptqFallback::kRtnNoTokens) EXPECT_EQ(g.codes, cpu.codes) << "RTN is exact";
      // The GPU's TF32 statistics against the CPU's fp64 ones (about 1e-3 relative).
      const RtnResult rtn = quantizer_rtn(args, ws[static_cast<size_t>(i)].data(), rows, cols, kPeerRtnArith);
      const double rel = gptq_rel_error(ws[static_cast<size_t>(i)].data(), g.dequant.data(), rows, cols, h.data());
      const double rtn_rel = gptq_rel_error(ws[static_cast<size_t>(i)].data(), rtn.dequant.data(), rows, cols, h.data());
      if (cpu.fallback == GptqFallback::kRtnNoTokens) {
        EXPECT_EQ(errors.rel_error[static_cast<size_t>(i)], 0.0) << i;  // tr(WHWᵀ) = 0
      } else {
        EXPECT_NEAR(errors.rel_error[static_cast<size_t>(i)], rel, 1e-2 * rel) << i;
        EXPECT_NEAR(errors.rtn_rel_error[static_cast<size_t>(i)], rtn_rel, 1e-2 * rtn_rel) << i;
        EXPECT_LT(errors.rel_error[static_cast<size_t>(i)], errors.rtn_rel_error[static_cast<size_t>(i)]) << i;
      }
    }
    EXPECT_LE(differ, static_cast<size_t>(5 * rows * cols) / 100) << (shared ? "shared H" : "one H each");
  }
  // Encoded on the GPU (the pipeline's path): compressed_module_encode's bytes for the same codes
  // and qparams, through a pinned buffer and without one; the stored dequant equals the result's.
  for (const bool pinned : {false, true}) {
    std::vector<std::vector<EncodedTensor>> encoded;
    PinnedHostBuffer staging(pinned ? 8u << 20 : 0);
    const size_t per = static_cast<size_t>(rows * cols);
    std::vector<std::vector<float>> stored(5, std::vector<float>(per));
    GptqBatchIo io;
    io.load = [&](int i, float* dst, DeviceStream st) {
      ASSERT_EQ(cudaMemcpyAsync(dst, w_ptrs[static_cast<size_t>(i)], per * 4, cudaMemcpyHostToDevice, st), cudaSuccess);
    };
    io.store = [&](int i, const float* d, DeviceStream st) {
      ASSERT_EQ(cudaMemcpyAsync(stored[static_cast<size_t>(i)].data(), d, per * 4, cudaMemcpyDeviceToHost, st),
                cudaSuccess);
    };
    io.encode = PackFormat::kPackQuantized;
    io.encoded = &encoded;
    io.staging = pinned ? &staging : nullptr;
    DeviceArena arena(gptq_batch_scratch_bytes(args, rows, cols, opts, true, 2, false, &*io.encode));
    const std::vector<GptqResult> got = gptq_solve_batch_cuda(hd.blas, hd.solver, args, io, 5, {hs[0].data()}, rows,
                                                              cols, opts, nullptr, arena, /*chunk=*/2);
    ASSERT_EQ(encoded.size(), 5u);
    for (int i = 0; i < 5; ++i) {
      const GptqResult& g = got[static_cast<size_t>(i)];
      const std::vector<EncodedTensor> want =
          compressed_module_encode(PackFormat::kPackQuantized, args, g.qparams, g.codes, {}, rows, cols);
      ASSERT_EQ(encoded[static_cast<size_t>(i)].size(), want.size());
      for (size_t k = 0; k < want.size(); ++k) {
        EXPECT_EQ(encoded[static_cast<size_t>(i)][k].name, want[k].name);
        EXPECT_TRUE(encoded[static_cast<size_t>(i)][k].bytes == want[k].bytes) << want[k].name << " of matrix " << i;
      }
      EXPECT_EQ(stored[static_cast<size_t>(i)], g.dequant) << i;
    }
  }
}

// Pass A's device sums, finalized on the GPU (GptqBatchIo::hessian_sum_tokens), solve exactly as
// the host-finalized Hessians do: the same H bits, so the same codes, dequant and loss; a null sum
// of 0 tokens is the no-tokens RTN fallback.
TEST(GptqCuda, DeviceHessianSumsSolveAsHostFinalizedOnes) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const int64_t rows = 64, cols = 256;
  const QuantArgs args = w4a16();
  const GptqOptions opts;
  CudaBlasSolver hd;
  const int count = 4;
  std::vector<std::vector<float>> ws;
  std::vector<HessianAccumulator> sums;
  for (int i = 0; i < count; ++i) {
    ws.push_back(normal(static_cast<size_t>(rows * cols), 0.03f));
    sums.emplace_back(cols);
    if (i == 2) continue;  // no tokens
    const int64_t tokens = 100 + 37 * i;
    const std::vector<float> x = normal(static_cast<size_t>(tokens * cols), 1.0f);
    sums.back().add(x.data(), tokens);
  }
  std::vector<std::vector<float>> finalized;
  std::vector<const float*> host_h, device_h;
  std::vector<int64_t> tokens;
  std::vector<float*> device_memory;
  const size_t hh = static_cast<size_t>(cols * cols);
  for (const HessianAccumulator& acc : sums) {
    finalized.push_back(acc.finalize().h);
    host_h.push_back(finalized.back().data());
    tokens.push_back(acc.num_tokens());
    float* d = nullptr;
    if (acc.num_tokens() > 0) {
      DSV4_CUDA_CHECK(cudaMalloc(&d, hh * 4));
      DSV4_CUDA_CHECK(cudaMemcpy(d, acc.sum().data(), hh * 4, cudaMemcpyHostToDevice));
      device_memory.push_back(d);
    }
    device_h.push_back(d);
  }
  const size_t per = static_cast<size_t>(rows * cols);
  auto run = [&](bool device) {
    GptqBatchIo io;
    io.load = [&](int i, float* dst, DeviceStream st) {
      ASSERT_EQ(cudaMemcpyAsync(dst, ws[static_cast<size_t>(i)].data(), per * 4, cudaMemcpyHostToDevice, st), cudaSuccess);
    };
    if (device) io.hessian_sum_tokens = tokens;
    DeviceArena arena(gptq_batch_scratch_bytes(args, rows, cols, opts, false, 2, false));
    return gptq_solve_batch_cuda(hd.blas, hd.solver, args, io, count, device ? device_h : host_h, rows, cols, opts,
                                 nullptr, arena, /*chunk=*/2);
  };
  const std::vector<GptqResult> want = run(false), got = run(true);
  for (int i = 0; i < count; ++i) {
    const GptqResult &w = want[static_cast<size_t>(i)], &g = got[static_cast<size_t>(i)];
    EXPECT_EQ(g.fallback, w.fallback) << i;
    EXPECT_EQ(g.codes, w.codes) << i;
    EXPECT_TRUE(g.dequant == w.dequant) << i;
    // The loss is summed with fp64 atomics, in whatever order the blocks finish.
    EXPECT_NEAR(g.loss, w.loss, 1e-12 * w.loss) << i;
  }
  EXPECT_EQ(got[2].fallback, GptqFallback::kRtnNoTokens);
  GptqBatchIo bad;
  bad.load = [](int, float*, DeviceStream) {};
  bad.hessian_sum_tokens = {1, 2};  // 2 counts for 4 Hessians
  DeviceArena arena(1 << 20);
  EXPECT_THROW(gptq_solve_batch_cuda(hd.blas, hd.solver, args, bad, count, device_h, rows, cols, opts, nullptr, arena),
               Error);
  for (float* d : device_memory) cudaFree(d);
}

TEST(GptqCuda, BadArgumentsAreErrors) {
  GptqSweep s;
  s.count = 1;
  s.rows = 4;
  s.cols = 8;
  s.block_size = 256;
  EXPECT_THROW(gptq_sweep_cuda(nullptr, s, nullptr), Error);
  s.block_size = 128;
  EXPECT_THROW(gptq_sweep_cuda(nullptr, s, nullptr), Error);  // null buffers
  EXPECT_THROW(gptq_prepare_cuda(nullptr, nullptr, 8, GptqOptions{}, ActOrder::kGroup, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace dsv4::quant

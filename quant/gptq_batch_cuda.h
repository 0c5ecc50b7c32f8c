// gptq_batch_cuda.h: gptq_solve (quant/gptq.h) for many matrices of one shape on the GPU, from and
// to host memory (CUDA builds; issue 9): the pipeline's GPU solve. Per matrix the CPU observer's
// up-front qparams (observer_qparams on the original weight, as gptq_solve does for act-order
// none/static); per distinct Hessian one preparation (gptq_prepare_many_cuda: act-order, dead
// columns, damping with escalation, U); then permutation and the batched sweep of
// quant/gptq_cuda.h, in chunks of matrices. Results are gptq_solve's fields: qparams, codes and
// dequant in the original column order, llm-compressor's loss, damping and fallback.
//
//   if (gptq_cuda_unsupported(args, opts).empty()) {   // quant/gptq.h
//     std::vector<GptqResult> r = gptq_solve_batch_cuda(blas, solver, args, weights, {h_shared}, rows, cols, opts);
//   }
//
// `hessians` holds one H shared by every matrix (all-experts w1/w3) or one per matrix (w2), each
// [cols, cols] finalized (2/n Σ xxᵀ). Codes agree with gptq_solve except where the between-block
// SGEMM's summation order rounds a code the other way (tests/quant/test_gptq_cuda.cu bounds it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/gptq_cuda.h"

namespace dsv4::quant {

// The pipeline's quality statistics, per matrix: tr(ΔHΔᵀ)/tr(WHWᵀ) (gptq_rel_error) for the GPTQ
// result and for RTN with the same qparams. On the GPU they are TF32 GEMMs with fp64 sums (about
// 1e-3 relative; the CPU's fp64 loops cost O(rows·cols²) per matrix, hours at full width).
struct GptqBatchErrors {
  std::vector<double> rel_error, rtn_rel_error;
};

// `threads` host threads compute the observers (and RTN for the errors); errors may be null.
std::vector<GptqResult> gptq_solve_batch_cuda(BlasHandle blas, SolverHandle solver, const QuantArgs& args,
                                              const std::vector<const float*>& weights,
                                              const std::vector<const float*>& hessians, int64_t rows, int64_t cols,
                                              const GptqOptions& opts, DeviceStream stream, int chunk = 32,
                                              GptqBatchErrors* errors = nullptr, int threads = 0);

}  // namespace dsv4::quant

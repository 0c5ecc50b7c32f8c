// gptq_batch_cuda.h: gptq_solve (quant/gptq.h) for many matrices of one shape on the GPU (CUDA
// builds; issue 9): the pipeline's GPU solve. Per matrix the up-front qparams from the GPU observer
// (observer_qparams_cuda: min-max bit for bit the CPU's; MSE up to ties, observer_cuda.h); per
// distinct Hessian one preparation (gptq_prepare_many_cuda: act-order, dead columns, damping with
// escalation, U); then permutation and the batched sweep of quant/gptq_cuda.h, in chunks of
// matrices. Results are gptq_solve's fields: qparams, codes and dequant in the original column
// order, llm-compressor's loss, damping and fallback.
//
// Weights come in and results go out through GptqBatchIo, so a caller whose weights already live
// on the device (the pipeline's decoded block) never copies them through the host:
//
//   GptqBatchIo io;
//   io.load = [&](int i, float* dst, DeviceStream s) { /* matrix i, fp32 [rows, cols], to dst */ };
//   io.store = [&](int i, const float* dequant, DeviceStream s) { /* e.g. into pass B's weights */ };
//   std::vector<GptqResult> r = gptq_solve_batch_cuda(blas, solver, args, io, count, {h}, rows, cols,
//                                                     opts, stream, arena);
//
// `hessians` holds one H shared by every matrix (all-experts w1/w3) or one per matrix (w2), each
// [cols, cols]: finalized host matrices (2/n Σ xxᵀ), or device sums (GptqBatchIo::hessian_sum_tokens). Codes agree with gptq_solve except where the
// between-block SGEMM's summation order rounds a code the other way (tests/quant/test_gptq_cuda.cu
// bounds it). Every buffer comes from the arena; the chunk shrinks to what it holds.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "quant/compressed_module.h"
#include "quant/gptq_cuda.h"

namespace dsv4 {
class PinnedHostBuffer;
}

namespace dsv4::quant {

// The pipeline's quality statistics, per matrix: tr(ΔHΔᵀ)/tr(WHWᵀ) (gptq_rel_error) for the GPTQ
// result and for RTN with the same qparams. On the GPU, tr(WHWᵀ) and the RTN trace are TF32 GEMMs
// with fp64 sums (about 1e-3 relative; the CPU's fp64 loops cost O(rows·cols²) per matrix, hours
// at full width); the GPTQ trace is a quad form too, or (trace_from_sweep) comes from the sweep's
// own errors (Σe² − λ·Σ_live Δ², no GEMM; gptq_batch_cuda.cu says why it is exact), with the quad
// form where damping dominates Σe².
struct GptqBatchErrors {
  std::vector<double> rel_error, rtn_rel_error;
  // Input: the GPTQ trace from the sweep's errors (true) or always by the quad form (false, what
  // the pipeline runs until the sweep form is measured on a GPU).
  bool trace_from_sweep = false;
};

struct GptqBatchIo {
  // Writes matrix i's weight (fp32 [rows, cols], original column order) to device `dst`,
  // enqueued on `stream`. Required.
  std::function<void(int i, float* dst, DeviceStream stream)> load;
  // Optional: matrix i's dequantized result (device fp32 [rows, cols], original order), valid on
  // `stream` until the batch's next chunk is loaded.
  std::function<void(int i, const float* dequant, DeviceStream stream)> store;
  bool host_codes = true;    // fill GptqResult::codes
  bool host_dequant = true;  // fill GptqResult::dequant
  // When set: every matrix's compressed-tensors tensors in this format, encoded on the GPU
  // (quant/pack_cuda.h, byte for byte compressed_module_encode's) into (*encoded)[i], so the
  // codes need not come to the host.
  std::optional<PackFormat> encode;
  std::vector<std::vector<EncodedTensor>>* encoded = nullptr;
  // Optional pinned buffer (common/pinned_host.h) the encoded tensors come down through, when a
  // chunk's fit in it.
  PinnedHostBuffer* staging = nullptr;
  // When not empty (one entry per Hessian): `hessians` are DEVICE pointers to unscaled sums
  // Σ xxᵀ over this many rows each (pass A's device statistics, calib/layer_stats_cuda.h),
  // finalized on the GPU as HessianAccumulator::finalize does (hessian_finalize_cuda; a null
  // pointer with 0 rows is an all-zero H). Otherwise they are finalized host matrices.
  std::vector<int64_t> hessian_sum_tokens;
};

// The sweep the pipeline's batches run (quant/gptq_cuda.h). Measured on an H100 (bench_gptq_layer,
// docs/PERFORMANCE.md): the rowwise kernel takes the sliced one's time (0.78 s for the w1/w3 in-block
// sweeps either way), so the sliced one stays; the 3xTF32 update took the bench's layer from 1.98 to
// 1.82 s, but stays off here until the GPU suite (world-size invariance, resume) has run with it;
// the sweep-order store is not measured yet.
inline constexpr GptqSweepKernel kBatchSweep = GptqSweepKernel::kSliced;
inline constexpr GptqUpdate kBatchUpdate = GptqUpdate::kFp32;
inline constexpr bool kBatchTraceFromSweep = true;  // the pipeline's GptqBatchErrors::trace_from_sweep
inline constexpr GptqStore kBatchStore = GptqStore::kScattered;

// Arena bytes one call needs for chunks of `chunk` matrices.
size_t gptq_batch_scratch_bytes(const QuantArgs& args, int64_t rows, int64_t cols, const GptqOptions& opts,
                                bool shared_hessian, int chunk, bool errors, const PackFormat* encode = nullptr);

// Synchronises `stream` once per chunk (and once per Hessian batch, gptq_prepare_many_cuda). The
// chunk is at most `chunk` and shrinks until gptq_batch_scratch_bytes fits the arena's free space.
std::vector<GptqResult> gptq_solve_batch_cuda(BlasHandle blas, SolverHandle solver, const QuantArgs& args,
                                              const GptqBatchIo& io, int count,
                                              const std::vector<const float*>& hessians, int64_t rows, int64_t cols,
                                              const GptqOptions& opts, DeviceStream stream, DeviceArena& arena,
                                              int chunk = 32, GptqBatchErrors* errors = nullptr);

// Host weights in, host results out, with an arena of its own (tests, and callers without one).
std::vector<GptqResult> gptq_solve_batch_cuda(BlasHandle blas, SolverHandle solver, const QuantArgs& args,
                                              const std::vector<const float*>& weights,
                                              const std::vector<const float*>& hessians, int64_t rows, int64_t cols,
                                              const GptqOptions& opts, DeviceStream stream, int chunk = 32,
                                              GptqBatchErrors* errors = nullptr);

}  // namespace dsv4::quant

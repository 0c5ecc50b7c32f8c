// gpu_forwarder.h: the pipeline's work on one GPU (issue 9): pass A and pass B of a block over this
// rank's samples with block_forward_cuda (bf16 numeric mode), pass A's statistics through
// DeviceLayerStats straight into the pipeline's LayerStats, and batched GPTQ solves. Samples of equal length run as
// one batch. The HC states stay host fp32 between layers (bf16 values; snapshots and resume read
// them as in the CPU path) and go up and down once per pass.
//
//   std::unique_ptr<GpuForwarder> gpu = gpu_forwarder_create(config);   // throws without CUDA/GPU
//   gpu->run(weights, samples, states, &stats);                          // states[s] <- block(states[s])
//
// CPU builds link gpu_forwarder_none.cpp, whose create() explains that the build has no CUDA.
// Tests: tests/calib/test_pipeline_cuda.cu (GPU pipeline vs CPU pipeline in bf16 mode).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "calib/layer_stats.h"
#include "model/block_weights.h"
#include "model/config.h"
#include "quant/gptq.h"

namespace dsv4::calib {

class GpuForwarder {
 public:
  virtual ~GpuForwarder() = default;
  // states[s] <- block(states[s]) for every sample; with stats, pass A's taps feed it (its wanted
  // Hessians and absmax, its all-experts mode and w2 convention). Weights that are not exact in
  // bf16 (quantized weights of pass B) are rounded to bf16 for the GPU and logged.
  virtual void run(const model::BlockWeights& weights, const std::vector<std::vector<int64_t>>& samples,
                   std::vector<std::vector<float>>& states, LayerStats* stats) = 0;
  // GPTQ of matrices of one shape and scheme on this GPU (quant/gptq_batch_cuda.h), host in and
  // out: `hessians` holds one H shared by all or one per matrix. Runs between the passes, in the
  // memory kept for one block's weights (outside the arena).
  // rel_error / rtn_rel_error get tr(ΔHΔᵀ)/tr(WHWᵀ) per matrix (GptqBatchErrors).
  virtual std::vector<quant::GptqResult> gptq_batch(const quant::QuantArgs& args, const std::vector<const float*>& weights,
                                                    const std::vector<const float*>& hessians, int64_t rows,
                                                    int64_t cols, const quant::GptqOptions& opts,
                                                    std::vector<double>& rel_error, std::vector<double>& rtn_rel_error,
                                                    int threads) = 0;
  virtual uint64_t arena_bytes() const = 0;
  virtual uint64_t arena_high_water() const = 0;
};

// Takes GPU `device` and an arena of all its free memory but what one block's weights need and
// `hessian_bytes` (pass A's Hessians of the largest layer, RunEstimate::hessian_bytes_layer_peak).
// The GPU solves run in the weights' share between the passes.
std::unique_ptr<GpuForwarder> gpu_forwarder_create(const model::ModelConfig& config, uint64_t hessian_bytes,
                                                   int device = 0);

}  // namespace dsv4::calib

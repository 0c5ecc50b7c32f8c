// gpu_forwarder.h: the pipeline's work on one GPU (issue 9). It holds one block's bf16 weights on
// the device for a whole layer: decoded there from the checkpoint (pass A and the GPTQ solves read
// them; no fp32 copy of a source weight on the host), then with the solved modules' dequantized
// weights put in place (pass B). Pass A and pass B run block_forward_cuda (bf16 numeric mode);
// pass A's statistics go through DeviceLayerStats straight into the pipeline's LayerStats.
// Samples of equal length run as one batch. The HC states stay host fp32 between layers (bf16
// values; snapshots and resume read them as in the CPU path) and go up and down once per pass.
//
//   std::unique_ptr<GpuForwarder> gpu = gpu_forwarder_create(config, hessian_bytes);  // throws without CUDA/GPU
//   gpu->decode_block(checkpoint, "layers.3.", 3);
//   gpu->run(samples, states, &stats);                                    // pass A
//   gpu->gptq_batch(args, modules, {h}, rows, cols, opts, true, rel, rtn);  // solves, into the block
//   gpu->put_weight(other_module, dequant);                               // solved elsewhere
//   gpu->run(samples, states, nullptr);                                   // pass B
//
// CPU builds link gpu_forwarder_none.cpp, whose create() explains that the build has no CUDA.
// Tests: tests/calib/test_pipeline_cuda.cu (GPU pipeline vs CPU pipeline in bf16 mode).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "calib/layer_stats.h"
#include "common/safetensors.h"
#include "model/block_weights.h"
#include "model/config.h"
#include "quant/gptq.h"

namespace dsv4::calib {

class GpuForwarder {
 public:
  virtual ~GpuForwarder() = default;
  // The block the passes and solves use, replacing the previous one: decoded on the GPU from the
  // checkpoint, or uploaded from a host block (replay of committed layers, whose quantized
  // weights are rounded to bf16 and counted in the log).
  virtual void decode_block(const Checkpoint& checkpoint, const std::string& prefix, int layer) = 0;
  virtual void upload_block(const model::BlockWeights& weights) = 0;
  // Replaces a linear of the block by `w` [rows, cols] fp32 (a solved module's dequantized
  // weights), rounded to bf16 as vLLM's kernels compute with them.
  virtual void put_weight(const std::string& module, const std::vector<float>& w) = 0;
  // states[s] <- block(states[s]) for every sample; with stats, pass A's taps feed it (its wanted
  // Hessians and absmax, its all-experts mode and w2 convention).
  virtual void run(const std::vector<std::vector<int64_t>>& samples, std::vector<std::vector<float>>& states,
                   LayerStats* stats) = 0;
  // GPTQ of block linears of one shape and scheme (quant/gptq_batch_cuda.h) from the block's
  // weights; `hessians` (host) holds one H shared by all or one per module. With `into_block` each
  // module's dequantized result replaces its weights in the block (pass B). Results keep codes
  // and dequant on the host too (encoding, staging and sharing read them there).
  // rel_error / rtn_rel_error get tr(ΔHΔᵀ)/tr(WHWᵀ) per matrix (GptqBatchErrors).
  virtual std::vector<quant::GptqResult> gptq_batch(const quant::QuantArgs& args, const std::vector<std::string>& modules,
                                                    const std::vector<const float*>& hessians, int64_t rows,
                                                    int64_t cols, const quant::GptqOptions& opts, bool into_block,
                                                    std::vector<double>& rel_error,
                                                    std::vector<double>& rtn_rel_error) = 0;
  virtual uint64_t arena_bytes() const = 0;
  virtual uint64_t arena_high_water() const = 0;
};

// Takes GPU `device` and an arena of all its free memory but what one block's weights need and
// `hessian_bytes` (pass A's Hessians of the largest layer, RunEstimate::hessian_bytes_layer_peak).
// The passes' activations and the solves' buffers come from the arena, in turn.
std::unique_ptr<GpuForwarder> gpu_forwarder_create(const model::ModelConfig& config, uint64_t hessian_bytes,
                                                   int device = 0);

}  // namespace dsv4::calib

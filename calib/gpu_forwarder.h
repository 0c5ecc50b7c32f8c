// gpu_forwarder.h: the pipeline's work on one GPU (issue 9). It holds one block's bf16 weights on
// the device for a whole layer: decoded there from the checkpoint (pass A and the GPTQ solves read
// them; no fp32 copy of a source weight on the host), then with the solved modules' dequantized
// weights put in place (pass B). Pass A and pass B run block_forward_cuda (bf16 numeric mode);
// pass A's statistics go through DeviceLayerStats straight into the pipeline's LayerStats.
// Samples of equal length run as one batch (per block of samples with exact Hessian sums). The HC states live on the GPU in bf16 from the first
// layer to the last (the forward's values): the host's fp32 states come up once (load_states:
// embeddings, or a resume's snapshot) and go down only when a snapshot needs them (store_states).
//
//   GpuForwarderOptions o{.hessian_bytes = h, .state_tokens = tokens, .device = 0};
//   std::unique_ptr<GpuForwarder> gpu = gpu_forwarder_create(config, o);  // throws without CUDA/GPU
//   gpu->load_states(samples, states);
//   gpu->decode_block(checkpoint, "layers.3.", 3);
//   gpu->run(samples, &stats, false);                                     // pass A: statistics only
//                                   (with hessians_on_device the Hessian sums stay on the GPU)
//   gpu->gptq_batch(args, opts, modules, {h}, rows, cols, {.into_block = true});  // solves, into the block
//   gpu->put_encoded({{other_module, format, args, &tensors}});           // solved elsewhere
//   quant::TqResult t = gpu->turboquant_encode(module, 3, 128);          // turboquant, data-free
//   gpu->put_weight(cpu_solved_module, dequant);                          // solved on the host
//   gpu->run(samples, nullptr, true);                                     // pass B: the next input
//   gpu->store_states(states);                                            // for a snapshot
//
// CPU builds link gpu_forwarder_none.cpp, whose create() explains that the build has no CUDA.
// Tests: tests/calib/test_pipeline_cuda.cu (GPU pipeline vs CPU pipeline in bf16 mode).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "calib/layer_stats.h"
#include "common/safetensors.h"
#include "model/block_weights.h"
#include "model/config.h"
#include "quant/compressed_module.h"
#include "quant/gptq.h"
#include "quant/pack.h"
#include "quant/turboquant.h"

namespace dsv4::calib {

struct GpuGptqBatchOptions {
  bool into_block = false;  // each module's dequantized result replaces its weights in the block (pass B)
  bool host_dequant = true; // results carry the dequantized weights on the host (staging, sharing)
  std::optional<quant::PackFormat> encode;  // set: tensors encoded on the GPU, codes stay there
  // Not empty: the Hessians are pass A's device sums over this many rows each (LayerStats::
  // device_hessian), finalized on the GPU (quant::GptqBatchIo::hessian_sum_tokens).
  std::vector<int64_t> hessian_sum_tokens;
};

// A solved module's encoded tensors and the scheme they are in (GpuForwarder::put_encoded).
struct EncodedWeight {
  std::string module;
  quant::PackFormat format = quant::PackFormat::kPackQuantized;
  quant::QuantArgs args;
  const std::vector<quant::EncodedTensor>* tensors = nullptr;
};

struct GpuGptqBatchResult {
  std::vector<quant::GptqResult> results;  // codes empty when encoded on the GPU
  std::vector<std::vector<quant::EncodedTensor>> encoded;  // per module, with GpuGptqBatchOptions::encode
  std::vector<double> rel_error, rtn_rel_error;            // tr(ΔHΔᵀ)/tr(WHWᵀ) per module (GptqBatchErrors)
};

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
  // Replaces linears of the block by the decode of their compressed-tensors tensors (modules
  // another rank solved, or committed ones a replay puts back), decoded on the GPU
  // (quant/unpack_cuda.h): bit for bit put_weight of the CPU decode, without its host fp32 copy.
  // The uploads go through the pinned staging buffer in two halves, one filling (on all cores)
  // while the other uploads and decodes. Returns, per entry, whether it was put: not when its
  // tensors are not the format's GPU layout (an act-order weight_g_idx), which the caller decodes
  // on the host.
  virtual std::vector<char> put_encoded(const std::vector<EncodedWeight>& weights) = 0;
  // The HC states of `samples` (fp32 [tokens, hc_dim] each, bf16-rounded on the way up) become
  // the states on the GPU, replacing any there; samples of one length lie together.
  virtual void load_states(const std::vector<std::vector<int64_t>>& samples,
                           const std::vector<std::vector<float>>& states) = 0;
  // The states on the GPU, into host fp32 (exact: they are bf16 values), one vector per sample.
  virtual void store_states(std::vector<std::vector<float>>& states) const = 0;
  // states <- block(states) on the GPU for every sample (the samples of load_states); with stats,
  // pass A's taps feed it (its wanted Hessians and absmax, its all-experts mode and w2
  // convention). write_back = false leaves the states as they were: pass A when pass B recomputes
  // the layer's output (propagate_error) needs only the statistics. Returns the number of NaN and
  // infinite values among the block's outputs (written back or not), counted on the GPU
  // (common/finite_scan_cuda.h): the executor's scan of calib/state_finite.h.
  virtual int64_t run(const std::vector<std::vector<int64_t>>& samples, LayerStats* stats, bool write_back) = 0;
  // GPTQ of block linears of one shape and scheme (quant/gptq_batch_cuda.h) from the block's
  // weights; `hessians` holds one H shared by all or one per module: finalized host matrices, or
  // device sums (GpuGptqBatchOptions::hessian_sum_tokens).
  virtual GpuGptqBatchResult gptq_batch(const quant::QuantArgs& args, const quant::GptqOptions& opts,
                                        const std::vector<std::string>& modules,
                                        const std::vector<const float*>& hessians, int64_t rows, int64_t cols,
                                        const GpuGptqBatchOptions& batch) = 0;
  // The turboquant profile's data-free encode of a block linear (quant/turboquant_cuda.h) from the
  // block's weights (the source's exact values: bf16 holds an FP8/MXFP4 decode exactly): indices,
  // corrected norms and dequant on the host, bit for bit quant::tq_quantize of the CPU's weight.
  virtual quant::TqResult turboquant_encode(const std::string& module, int bits, int group_size) = 0;
  virtual uint64_t arena_bytes() const = 0;
  virtual uint64_t arena_high_water() const = 0;
  virtual uint64_t kept_bytes() const = 0;  // planned outside the arena: block, Hessians, states, workspace
};

struct GpuForwarderOptions {
  uint64_t hessian_bytes = 0;  // pass A's Hessians of the largest layer on the GPU (GpuMemoryPlan::hessians)
  int64_t state_tokens = 0;    // tokens over this rank's samples: the HC states held on the GPU
  int device = 0;
  // Pass A's Hessian sums stay on the GPU (DeviceLayerStats::download_into with sums_stay): the
  // LayerStats owns them there, its reduce needs a communicator that takes device buffers, and
  // gptq_batch reads them there.
  bool hessians_on_device = false;
  // Samples per forward call (forward_sample_block): > 0, blocks of that many samples by global
  // index (from first_sample, the index of load_states' first sample), each block's samples of
  // one length in one call; 0, all the rank's samples of one length in one call.
  int64_t sample_block = 0;
  int64_t first_sample = 0;
  // Bytes the forwarder may take on the GPU, kept memory and arena together (0: all free memory).
  // Set when ranks share a GPU (--gpu-memory): each arena otherwise takes the GPU's free memory.
  uint64_t memory_limit = 0;
};

// Takes GPU `device`, the memory gpu_memory_plan keeps (one block's weights, the Hessians, the
// states) and an arena of all the rest (or of the rest of `memory_limit`): the passes'
// activations and the solves' buffers come from it, in turn.
std::unique_ptr<GpuForwarder> gpu_forwarder_create(const model::ModelConfig& config, const GpuForwarderOptions& options);

}  // namespace dsv4::calib

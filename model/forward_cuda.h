// forward_cuda.h: one DeepSeek-V4 block on the GPU (CUDA builds; issue 9), the bf16 numeric mode
// of model/block.h for a batch of equal-length sequences laid out back to back: weights in bf16
// (exact for the release's FP8/FP4/BF16 tensors), activations and the HC state in bf16, HC,
// Sinkhorn, router, softmax and sink math in fp32, GEMMs with fp32 accumulation.
//
//   DeviceBlockWeights w = block_weights_upload(cpu_weights, config);
//   DeviceRopeTable rope(rope_table_build(config, rope_is_compressed(w.spec), T));
//   CudaForwardContext ctx{.stream = s, .blas = blas, .arena = &arena, .taps = &sink, .prefix = "layers.3."};
//   block_forward_cuda(w, config, rope.view(), X, ids, sequences, T, X_next, ctx);
//
// Taps (DeviceTapSink) see what the CPU taps see (model/taps.h), as device bf16 rows: the same
// events and module lists, x with a row stride (wo_a's group slices), and in all-experts mode the
// routed w2 inputs arrive in batches of experts (`batch` > 1, modules[b] = the consumer of batch
// element b). Differences from the CPU forward are the order of fp32 sums (GEMMs, attention) and
// the last bits of expf/log1pf; tests/model/test_block_cuda.cu states the tolerances.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/block_weights.h"
#include "model/config.h"
#include "model/gemm_cuda.h"
#include "model/hc_cuda.h"
#include "model/ops_cuda.h"

namespace dsv4 {
class DeviceArena;
}

namespace dsv4 {
class PinnedHostBuffer;
}

namespace dsv4::model {

struct DeviceLinear {
  std::string name;
  int64_t out = 0, in = 0;
  const uint16_t* w = nullptr;  // [out, in] bf16
};

struct DeviceCompressor {
  DeviceLinear wkv, wgate;        // [series·dim, D]
  const float* ape = nullptr;     // [ratio, series·dim]
  const float* norm = nullptr;    // [dim]
  int ratio = 0, series = 1;
  int64_t dim = 0;
};

struct DeviceAttention {
  DeviceLinear wq_a, wq_b, wkv, wo_a, wo_b;
  const float* q_norm = nullptr;
  const float* kv_norm = nullptr;
  const float* sink = nullptr;   // [H]
  std::optional<DeviceCompressor> compressor;
  struct Indexer {
    DeviceLinear wq_b, weights_proj;
    DeviceCompressor compressor;
  };
  std::optional<Indexer> indexer;
};

struct DeviceMoe {
  DeviceLinear gate;                  // [E, D]
  const float* bias = nullptr;        // [E] learned routing, else null
  const int64_t* tid2eid = nullptr;   // [vocab, k] hash routing, else null
  int64_t tid2eid_rows = 0;
  const uint16_t* shared_w13 = nullptr;  // [2I, D]: w1 rows then w3 rows; null without shared expert
  const uint16_t* shared_w2 = nullptr;   // [D, I]
  const uint16_t* w13 = nullptr;         // [E, 2I, D]
  const uint16_t* w2 = nullptr;          // [E, D, I]
};

struct DeviceBlockWeights {
  std::string prefix;
  int layer = 0;
  LayerSpec spec;
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  DeviceHc hc_attn, hc_ffn;
  DeviceAttention attn;
  DeviceMoe ffn;
  uint64_t bytes = 0;                          // device memory held
  uint64_t rounded = 0;                        // linear values rounded to bf16 (upload with rounding)
  std::vector<std::shared_ptr<void>> memory;   // owns the allocations
};

// Uploads a block decoded on the CPU. Every linear must be exact in bf16 (release weights are);
// a value that is not is an error naming the tensor, unless round_to_bf16 (quantized weights in
// pass B: INT4 codes times a bf16 scale can need 11 significant bits; vLLM's kernels dequantize in
// bf16 too), which rounds to nearest-even and counts them in `rounded`. Routed experts are decoded
// one at a time.
DeviceBlockWeights block_weights_upload(const BlockWeights& weights, const ModelConfig& config,
                                        bool round_to_bf16 = false);
// The same block decoded on the GPU from the checkpoint: FP8/MXFP4 linears are uploaded as stored
// and decoded there (no fp32 copy on the host), BF16 ones copied; the small tensors (norms, HC,
// sink, ape, router bias, tid2eid) load through block_weights_load. Artifact layouts
// (config.linear_decoder) decode on the CPU. Bitwise the same weights as block_weights_upload.
// With a pinned `staging` buffer the routed experts' bytes go up in chunks that fill it, copied
// into it on all cores (pageable copies of 768 linears one by one are several times slower).
DeviceBlockWeights block_weights_decode_cuda(const Checkpoint& checkpoint, const ModelConfig& config,
                                             const std::string& prefix, int layer,
                                             PinnedHostBuffer* staging = nullptr);

// A linear of a device block by its release module name ("layers.3.attn.wq_a",
// "layers.3.ffn.experts.7.w2", "layers.3.ffn.shared_experts.w1"): its bf16 matrix [rows, cols],
// writable, because pass B of the pipeline puts the solved weights in place (the allocations are
// the block's own). Throws naming the module when the block has no such linear.
struct DeviceMatrix {
  uint16_t* w = nullptr;
  int64_t rows = 0, cols = 0;
};
DeviceMatrix device_block_matrix(DeviceBlockWeights& weights, const ModelConfig& config, const std::string& module);

struct DeviceTapEvent {
  std::vector<std::string> modules;
  const uint16_t* x = nullptr;           // device bf16 [batch][rows, cols], row stride ld
  int64_t rows = 0, cols = 0, ld = 0;
  int batch = 1;
  int64_t batch_stride = 0;              // elements between batch elements
  int group = -1;                        // wo_a output group
  int expert = -1;                       // routed expert (the first of a batch)
  const int32_t* token_rows = nullptr;   // device [rows] layer-input row of each row, or null
  const float* row_weights = nullptr;    // device [batch][rows] routing weights (routed w2), or null
};

class DeviceTapSink {
 public:
  virtual ~DeviceTapSink() = default;
  // Runs on the host while the forward enqueues; x is valid on ctx.stream until the forward's next
  // enqueue on it, so a sink enqueues its own work on that stream (or synchronises).
  virtual void on_tap(const DeviceTapEvent& event) = 0;
  virtual void on_expert_tokens(const std::string& block_prefix, int expert, int64_t count) {}
};

struct CudaForwardContext {
  DeviceStream stream = nullptr;
  BlasHandle blas = nullptr;
  DeviceArena* arena = nullptr;   // scratch for every activation of the block
  DeviceTapSink* taps = nullptr;
  std::string prefix;             // "layers.3." (tap module names)
  bool all_experts = false;
  int expert_batch = 0;           // experts per all-experts batch; 0: as many as the arena allows
  std::string module(const char* suffix) const { return prefix + suffix; }
};

// state, next_state: [sequences·tokens, n, D] bf16; token_ids: device [sequences·tokens] (hash
// routing). The rope table must cover `tokens` positions.
void block_forward_cuda(const DeviceBlockWeights& w, const ModelConfig& config, const DeviceRope& rope,
                        const uint16_t* state, const int64_t* token_ids, int64_t sequences, int64_t tokens,
                        uint16_t* next_state, const CudaForwardContext& ctx);

// The sub-layers (block_cuda.cu calls them; tests may too). x: [sequences·tokens, D] bf16.
void attention_forward_cuda(const DeviceAttention& w, const ModelConfig& config, const LayerSpec& spec,
                            const DeviceRope& rope, const uint16_t* x_attn, int64_t sequences, int64_t tokens,
                            uint16_t* out, const CudaForwardContext& ctx);
void moe_forward_cuda(const DeviceMoe& w, const ModelConfig& config, const LayerSpec& spec, const uint16_t* x_ffn,
                      const int64_t* token_ids, int64_t tokens, uint16_t* out, const CudaForwardContext& ctx);

}  // namespace dsv4::model

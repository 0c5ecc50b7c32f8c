// layer_stats_cuda.h: pass A of one block on the GPU (CUDA builds; issue 9): what LayerStats
// (calib/layer_stats.h) collects from the CPU forward's taps, collected from the GPU forward's
// device taps (model/forward_cuda.h) without a host round trip: Hessian sums S = Σ xᵀx in fp32
// on tensor cores (quant/hessian_cuda.h, bf16 rows), input absmax, expert token counts. Same
// keys, sharing and conventions as LayerStats: wq_a/wkv share one H, wo_a one per group, in
// all-experts mode one w1/w3 H per layer (added once per pass) and each expert's w2 from its
// element of the batched dense h, the routing-weighted w2 convention in fp32 (scaled rows are not
// bf16 values, so that sum is an SGEMM). With HessianSums::kExact (issue 29) each tap's rows, one
// forward call's (the GPU forward runs a fixed block of samples per call, gpu_forwarder.h), make
// an fp32 Gram in a scratch matrix that is added to the slot's fixed-point limbs exactly
// (quant/hessian_exact_cuda.h): the sums then do not depend on which rank ran which block.
//
//   LayerStats host(all_experts, W2Input::kUnweighted);
//   host.want_hessian("layers.3.attn.wq_a", key);
//   DeviceLayerStats stats(host.wants(), W2Input::kUnweighted, HessianSums::kExact, blas, stream);
//   stats.next_pass();  ctx.taps = &stats;  block_forward_cuda(..., ctx);
//   stats.download_into(host);   // then host.reduce_to_owners(...), host.hessian(...) as before
//   stats.download_into(host, nullptr, true);   // or the sums stay on the GPU, handed to host
//
// Tests: tests/calib/test_layer_stats_cuda.cu (against LayerStats fed the same activations).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "calib/layer_stats.h"
#include "model/forward_cuda.h"

namespace dsv4 {
class PinnedHostBuffer;
}

namespace dsv4::calib {

class DeviceLayerStats final : public model::DeviceTapSink {
 public:
  DeviceLayerStats(StatsWants wants, W2Input w2_input, HessianSums sums, model::BlasHandle blas,
                   model::DeviceStream stream);
  ~DeviceLayerStats() override;
  DeviceLayerStats(const DeviceLayerStats&) = delete;
  DeviceLayerStats& operator=(const DeviceLayerStats&) = delete;

  // Marks the start of a forward pass (the all-experts w1/w3 Hessian is added once per pass).
  void next_pass() { ++pass_; }

  void on_tap(const model::DeviceTapEvent& event) override;
  void on_expert_tokens(const std::string& block_prefix, int expert, int64_t count) override;

  // Everything collected, into a host LayerStats constructed with the same mode (synchronises).
  // With `staging`, the Hessians come down through it in batches (pinned_host.h), else slot by
  // slot. With `sums_stay` they do not come down at all: `host` takes them over on the GPU
  // (LayerStats::import_device_hessian; this collector has none left), and the GPU solves
  // finalize them there (one rank, or ranks reducing over NCCL).
  void download_into(LayerStats& host, PinnedHostBuffer* staging = nullptr, bool sums_stay = false);
  uint64_t hessian_bytes() const;  // device bytes of the sums held (fp32 or limbs)
  size_t num_hessians() const { return slots_.size(); }

 private:
  struct Slot {
    DeviceMemory memory;           // the sum, [dim, dim] fp32, or exact limbs [3][dim·dim] int64
    float* s = nullptr;            // memory's fp32 sum (null for exact limbs)
    int64_t* limbs = nullptr;      // memory's limbs (null for an fp32 sum)
    int64_t adds = 0;              // exact adds since the limbs were normalized
    int64_t dim = 0;
    int64_t tokens = 0;            // rows added (unweighted)
    int64_t* counted = nullptr;    // device: rows with a nonzero routing weight (weighted w2)
    int64_t last_pass = -1;
  };
  Slot& slot_for(const HessianId& id, int64_t dim);
  float* amax_slot(const std::string& module);
  void add_rows(Slot& slot, const uint16_t* x, int64_t rows, int64_t cols, int64_t ld, const float* weights);
  float* gram_scratch(int64_t dim);  // exact sums: a zeroed fp32 [dim, dim] for one add
  // Exact sums: the limbs normalized and the add status checked (synchronises).
  void finish_exact_sums();
  void download_sums(LayerStats& host, PinnedHostBuffer* staging, const std::vector<int64_t>& counted);

  W2Input w2_input_;
  bool exact_;
  model::BlasHandle blas_;
  model::DeviceStream stream_;
  int64_t pass_ = 0;
  TapRouter taps_;
  std::map<HessianId, Slot> slots_;
  std::map<std::string, float*> amax_;             // module -> device float
  std::map<int, int64_t> expert_tokens_;
  std::vector<std::shared_ptr<void>> memory_;      // every device allocation but the sums
  float* scratch_ = nullptr;                        // fp32 rows of the weighted convention
  size_t scratch_elems_ = 0;
  float* gram_ = nullptr;                           // exact sums: one add's fp32 Gram
  size_t gram_elems_ = 0;
  int* status_ = nullptr;                           // exact sums: ExactStatus bits of every add
};

}  // namespace dsv4::calib

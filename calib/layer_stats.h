// layer_stats.h: what pass A of one block collects through the forward's taps (model/taps.h):
// the GPTQ Hessians of the modules that need one, the input absmax of modules with a static
// activation scheme, and the routed token count of every expert.
//
//   LayerStats stats(config.all_experts, W2Input::kUnweighted, HessianSums::kExact);
//   stats.want_hessian("layers.3.attn.wq_a", m.scheme->hessian);  stats.want_amax("layers.3.attn.wq_b");
//   ctx.taps = &stats;  for (sample ...) { stats.next_pass(); block_forward(..., ctx); }
//   HessianResult h = stats.hessian({key}, 4096);       // wq_a's, shared with wkv (one key)
//   HessianResult g = stats.hessian({wo_a_key, 5}, 4096);   // wo_a's output group 5
//
// Which modules share a Hessian is the plan's decision (hessian_key.h): the taps are named by
// release module, and each tap feeds the Hessian its wanted modules were planned with. The
// forward shares exactly so (wq_a and wkv are one tap; the shared expert's w1 and w3; an
// expert's w1 and w3): a Hessian fed by two different taps is an error, except the all-experts
// one, where every routed expert's w1/w3 tap repeats the whole layer input and counts once per
// forward pass. w2 takes the expert's hidden state, unweighted (as transformers and
// llm-compressor see it) or scaled by the routing weight (DeepSeek's reference, where the
// weight is applied before w2); in the weighted convention rows whose routing weight is 0
// (tokens not routed there) are not counted. With HessianSums::kExact each tap's rows (one
// sample's, on the CPU) are added as an exact fixed-point sum (quant/hessian_exact.h), so the
// Hessians, and the reduce of the ranks' partials, do not depend on which rank saw which sample.
// Tests: tests/calib/test_layer_stats.cpp, tests/calib/test_layer_stats_cuda.cu.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "calib/device_hessian_sum.h"
#include "calib/hessian_key.h"
#include "calib/recipe.h"
#include "dist/communicator.h"
#include "model/taps.h"
#include "quant/hessian.h"
#include "quant/hessian_exact.h"

namespace dsv4::calib {

// What pass A of a block is asked for.
struct StatsWants {
  std::map<std::string, HessianKey> hessians;  // release module -> the Hessian it is solved with
  std::set<std::string> amax;                   // modules with a static input-activation scale
};

// Which Hessian a tap feeds, for both collectors (this file's and layer_stats_cuda.h's): the key
// its wanted modules were planned with, and the tap's wo_a group; nullopt when no module of the
// tap is wanted. Fails where the plan and the forward disagree: modules of one tap planned with
// different keys, or one key fed by two taps (the all-experts key aside).
class TapRouter {
 public:
  TapRouter() = default;
  explicit TapRouter(StatsWants wants) : wants_(std::move(wants)) {}
  void want_hessian(const std::string& module, const HessianKey& key) { wants_.hessians[module] = key; }
  void want_amax(const std::string& module) { wants_.amax.insert(module); }
  const StatsWants& wants() const { return wants_; }
  bool wants_amax(const std::string& module) const { return wants_.amax.count(module) > 0; }
  std::optional<HessianId> route(const std::vector<std::string>& modules, int group);
  // The key a tap's wanted modules were planned with, nullopt when none is wanted; no checks.
  std::optional<HessianKey> key_of(const std::vector<std::string>& modules) const;

 private:
  StatsWants wants_;
  std::map<HessianId, std::string> fed_by_;  // the first module of the tap feeding each Hessian
};

class LayerStats final : public model::TapSink {
 public:
  LayerStats(bool all_experts, W2Input w2_input, HessianSums sums);

  void want_hessian(const std::string& module, const HessianKey& key) {
    taps_.want_hessian(module, key);
    if (heldout_) heldout_->want_hessian(module, key);
  }
  void want_amax(const std::string& module) { taps_.want_amax(module); }
  const StatsWants& wants() const { return taps_.wants(); }
  // Held-out validation (calib/heldout.h): the samples `options` holds out feed `twin` (their
  // Hessians only) instead of this; want_hessian and reduce_to_owners go to both. The CPU executor
  // asks sink_for(global sample index) per sample; the CUDA one refuses a LayerStats with a twin.
  void set_heldout(LayerStats* twin, const HeldoutOptions* options) { heldout_ = twin, heldout_options_ = options; }
  const LayerStats* heldout() const { return heldout_; }
  // GPTAQ (calibration.gptq.asymmetric, quant/gptaq.h): `twin` sums ΔX·Xᵀ of every wanted Hessian
  // (on_paired_tap, calib/paired_taps.h), normalized as H is; reduce_to_owners reduces it with H,
  // and twin.hessian(id, cols) gives the solve's 2/n ΔX·Xᵀ (not symmetric).
  void set_cross(LayerStats* twin) { cross_ = twin; }
  const LayerStats* cross() const { return cross_; }
  // After on_tap(e): e's rows (the quantized stream's X) paired with the full-precision stream's
  // rows of the same tokens, x_full [e.rows, e.cols]; adds (X̃ − X)ᵀ X to the twin's sum of the
  // Hessian e feeds (once per pass for the all-experts one, as H). layer_stats_cross.cpp.
  void on_paired_tap(const model::TapEvent& e, const float* x_full);
  // The key of the Hessian a tap feeds, nullopt when no module of it is wanted.
  std::optional<HessianKey> tap_key(const std::vector<std::string>& modules) const { return taps_.key_of(modules); }
  LayerStats& sink_for(int64_t sample);
  bool all_experts() const { return all_experts_; }
  W2Input w2_input() const { return w2_input_; }
  HessianSums sums() const { return sums_; }
  // Marks the start of a forward pass over one sample (the all-experts shared Hessian is added
  // once per pass).
  void next_pass() { ++pass_; }

  void on_tap(const model::TapEvent& event) override;
  void on_expert_tokens(const std::string& block_prefix, int expert, int64_t count) override;

  // What the GPU's pass A hands over (calib/layer_stats_cuda.h): a Hessian partial, on the host
  // (fp32 or exact, as this LayerStats' HessianSums), or left on the GPU (device_hessian_sum.h:
  // exact limbs, rounded to fp32 after the reduce), an input absmax,
  // expert counts (on_expert_tokens). Sums on the GPU are
  // reduced in place by reduce_to_owners, which takes a communicator that accepts device
  // buffers (NCCL, or one rank); the GPU solves read them through device_hessian; hessian()
  // needs them brought over first (hessians_to_host). Once one sum is on the GPU they all are:
  // Hessians only other ranks saw get device zeros.
  void import_hessian(const HessianId& id, quant::HessianAccumulator partial);
  void import_exact_hessian(const HessianId& id, quant::HessianExactSum partial);
  void import_device_hessian(const HessianId& id, DeviceHessianSum sum);
  void import_amax(const std::string& module, float amax);
  bool sums_on_device() const { return sums_on_device_; }

  // Whether any token reached this Hessian (on any rank, after the reduce).
  bool holds(const HessianId& id) const;
  // The finalized Hessian, of a module with `cols` inputs. One no token reached (an expert
  // nobody routed to, outside all-experts mode) is all zero with no_tokens set, which GPTQ turns
  // into RTN and reports. Fails for a Hessian another rank owns or one held on the GPU.
  quant::HessianResult hessian(const HessianId& id, int64_t cols) const;
  // The device sum and its token total (the caller finalizes it, hessian_finalize_cuda); sum is
  // null with 0 tokens when no token reached it. Fails for a Hessian held on the host.
  struct DeviceSum {
    const float* sum = nullptr;
    int64_t tokens = 0;
  };
  DeviceSum device_hessian(const HessianId& id, int64_t cols) const;
  bool hessian_on_device(const HessianId& id) const;
  // Brings the device sums of these keys (every group) to the host, for solves that read
  // hessian() (the CPU's); on the calling thread, which must be the GPU's.
  void hessians_to_host(const std::set<HessianKey>& keys);
  float amax(const std::string& module) const;  // 0 when never tapped
  // Routed tokens per expert index of this block (real routing), summed over the passes.
  const std::map<int, int64_t>& expert_tokens() const { return expert_tokens_; }
  // Number of distinct Hessians held (the memory the layer needs).
  size_t num_hessians() const { return slots_.size(); }
  uint64_t hessian_bytes() const;  // fp32 bytes of the Hessians held now

  // The distributed step after pass A (layer_stats_reduce.cpp): every rank holds partial sums
  // over its own samples. The ranks agree on the set of Hessians (one all-gather of their ids,
  // so a rank whose samples never reached a module still takes part), then each partial goes by
  // reduce to the one rank solving with it (all-reduce when its modules have several owners:
  // `owners`, the same on every rank, names them per key); Hessians this rank does not own are
  // freed, and asking for one afterwards is an error. Input absmax (max) and expert token counts
  // (sum) are all-reduced. The collectives are the same on every rank, in id order.
  void reduce_to_owners(dist::Communicator& comm, const std::map<HessianKey, std::set<int>>& owners,
                        int num_experts);

 private:
  struct Slot {
    std::variant<quant::HessianAccumulator, quant::HessianExactSum, DeviceHessianSum> sum;
    int64_t last_pass = -1;
    int64_t dim() const;
    int64_t tokens() const;
    uint64_t bytes() const;
    // What the reduce sums: the fp32 sum where it lives, or the exact sum's normalized limbs.
    struct Buffer {
      void* data;
      size_t count;
      dist::ElemType type;
    };
    Buffer reduce_buffer();
    void set_tokens(int64_t n);
  };
  Slot fresh_slot(int64_t dim) const;  // an empty sum of this LayerStats' kind
  // The slot of `id`; nullptr when no token reached it. Fails when another rank owns it or its
  // width is not `cols`.
  const Slot* slot_of(const HessianId& id, int64_t cols) const;
  void add_rows(Slot& slot, const model::TapEvent& e) const;
  bool all_experts_;
  W2Input w2_input_;
  HessianSums sums_;
  int64_t pass_ = 0;
  TapRouter taps_;
  std::map<HessianId, Slot> slots_;
  std::map<std::string, float> amax_;
  std::map<int, int64_t> expert_tokens_;
  std::set<HessianId> dropped_;  // freed by reduce_to_owners (another rank solves with them)
  LayerStats* heldout_ = nullptr;  // the held-out samples' statistics, when validating
  LayerStats* cross_ = nullptr;    // GPTAQ's ΔX·Xᵀ sums, keyed as the Hessians
  const HeldoutOptions* heldout_options_ = nullptr;
  bool sums_on_device_ = false;
};

}  // namespace dsv4::calib

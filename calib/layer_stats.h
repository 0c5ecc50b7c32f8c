// layer_stats.h: what pass A of one block collects through the forward's taps (model/taps.h):
// the GPTQ Hessians of the modules that need one, the input absmax of modules with a static
// activation scheme, and the routed token count of every expert.
//
//   LayerStats stats(config.all_experts, W2Input::kUnweighted);
//   stats.want_hessian("layers.3.attn.wq_a");  stats.want_amax("layers.3.attn.wq_b");
//   ctx.taps = &stats;  for (sample ...) { stats.next_pass(); block_forward(..., ctx); }
//   HessianResult h = stats.hessian("layers.3.attn.wq_a", 4096);      // shared with wkv
//   HessianResult g = stats.hessian("layers.3.attn.wo_a", 4096, 5);   // output group 5
//
// Sharing follows the taps: modules fed by one activation share one Hessian (wq_a and wkv; the
// shared expert's w1 and w3; an expert's w1 and w3). In all-experts mode every routed expert's
// w1/w3 sees the whole layer input, so the layer keeps ONE Hessian for all of them (DESIGN §2),
// accumulated once per forward pass. w2 takes the expert's hidden state, unweighted (as
// transformers and llm-compressor see it) or scaled by the routing weight (DeepSeek's
// reference, where the weight is applied before w2); in the weighted convention rows whose
// routing weight is 0 (tokens not routed there) are not counted.
// Tests: tests/calib/test_layer_stats.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "calib/recipe.h"
#include "dist/communicator.h"
#include "model/taps.h"
#include "quant/hessian.h"

namespace dsv4::calib {

// The naming both pass-A collectors share (this file and calib/layer_stats_cuda.h):
// "module" or "module#group" for a consumer, and the Hessian key of a tap event: the first
// consumer's name, or in all-experts mode "layers.L.ffn.experts.*.w13" for every routed w1/w3 tap
// without token rows (they all see the whole layer input).
std::string stats_consumer(const std::string& module, int group);
std::string stats_hessian_key(const std::string& first_module, int expert, bool has_token_rows, int group,
                              bool all_experts);
inline bool stats_is_shared_key(const std::string& key) { return key.ends_with(".ffn.experts.*.w13"); }

class LayerStats final : public model::TapSink {
 public:
  LayerStats(bool all_experts, W2Input w2_input);

  void want_hessian(const std::string& module);
  void want_amax(const std::string& module);
  const std::set<std::string>& wanted_hessians() const { return want_h_; }
  const std::set<std::string>& wanted_amax() const { return want_amax_; }
  bool all_experts() const { return all_experts_; }
  W2Input w2_input() const { return w2_input_; }
  // Marks the start of a forward pass over one sample (the all-experts shared Hessian is added
  // once per pass).
  void next_pass() { ++pass_; }

  void on_tap(const model::TapEvent& event) override;
  void on_expert_tokens(const std::string& block_prefix, int expert, int64_t count) override;

  // What the GPU's pass A hands over (calib/layer_stats_cuda.h): a Hessian partial under `key`
  // serving the module[#group] names in `consumers`, an input absmax, expert counts (on_expert_tokens).
  void import_hessian(const std::string& key, const std::vector<std::string>& consumers,
                      quant::HessianAccumulator partial);
  void import_amax(const std::string& module, float amax);
  // A Hessian partial left on the GPU (DeviceLayerStats::download_into with sums kept there): its
  // unscaled sum `device_sum` [dim, dim] fp32 stays owned by the collector and must outlive this
  // object. reduce_to_owners reduces it in place, which takes a communicator that accepts device
  // buffers (NCCL, or one rank); the GPU solves read it through device_hessian; hessian() needs
  // it brought over first (hessians_to_host). `device_alloc`/`device_upload`/`device_free`
  // (common/device.h) hold the zero sums of keys only other ranks saw.
  void import_device_hessian(const std::string& key, const std::vector<std::string>& consumers, int64_t dim,
                             int64_t tokens, float* device_sum);
  // Every Hessian of this layer stays on the GPU: keys only other ranks saw get device zeros.
  void keep_sums_on_device() { sums_on_device_ = true; }
  bool sums_on_device() const { return sums_on_device_; }

  // Finalized Hessian of a wanted module with `cols` inputs (group >= 0: that wo_a output group).
  // A module no token reached (an expert nobody routed to, outside all-experts mode) gets an
  // all-zero H with no_tokens set, which GPTQ turns into RTN and reports.
  quant::HessianResult hessian(const std::string& module, int64_t cols, int group = -1) const;
  bool has_hessian(const std::string& module, int group = -1) const;
  // The device sum serving module[#group] and its token total (the caller finalizes it,
  // hessian_finalize_cuda); sum is null with 0 tokens when no token reached the module. Fails for
  // a Hessian held on the host.
  struct DeviceSum {
    const float* sum = nullptr;
    int64_t tokens = 0;
  };
  DeviceSum device_hessian(const std::string& module, int64_t cols, int group = -1) const;
  bool hessian_on_device(const std::string& module, int group = -1) const;
  // Brings the device Hessians serving these modules (any group) to the host, for solves that
  // read hessian() (the CPU's); on the calling thread, which must be the GPU's.
  void hessians_to_host(const std::vector<std::string>& modules);
  // The key of the Hessian serving module[#group] (modules with one key share it); empty if none.
  std::string hessian_key(const std::string& module, int group = -1) const;
  float amax(const std::string& module) const;  // 0 when never tapped
  // Routed tokens per expert index of this block (real routing), summed over the passes.
  const std::map<int, int64_t>& expert_tokens() const { return expert_tokens_; }
  // Number of distinct Hessians held (the memory the layer needs).
  size_t num_hessians() const { return acc_.size(); }
  uint64_t hessian_bytes() const;  // fp32 bytes of the Hessians held now

  // The distributed step after pass A (layer_stats_reduce.cpp): every rank holds partial sums
  // over its own samples. The ranks agree on the set of Hessians (one all-gather of their key
  // maps, so a rank whose samples never reached a module still takes part), then each partial
  // goes by reduce to the one rank owning its consumers (all-reduce only when modules sharing
  // one Hessian have different owners); Hessians this rank does not own are freed, and asking
  // for one afterwards is an error. Input absmax (max) and expert token counts (sum) are
  // all-reduced. The collectives are the same on every rank, in key order.
  void reduce_to_owners(dist::Communicator& comm, const std::function<int(const std::string& module)>& owner,
                        int num_experts);

 private:
  struct Slot {
    std::unique_ptr<quant::HessianAccumulator> acc;  // on the host, or
    float* device_sum = nullptr;                      // on the GPU (import_device_hessian)
    int64_t device_dim = 0, device_tokens = 0;
    int64_t last_pass = -1;
    int64_t dim() const { return acc ? acc->dim() : device_dim; }
    int64_t tokens() const { return acc ? acc->num_tokens() : device_tokens; }
    bool held() const { return acc || device_sum; }
  };
  // The slot serving module[#group]; nullptr when no token reached it. Fails when another rank
  // owns it or its width is not `cols`.
  const Slot* slot_of(const std::string& module, int group, int64_t cols) const;
  std::string key_of(const std::string& module, const model::TapEvent& e) const;
  bool all_experts_;
  W2Input w2_input_;
  int64_t pass_ = 0;
  std::set<std::string> want_h_, want_amax_;
  std::map<std::string, Slot> acc_;           // key -> accumulator
  std::map<std::string, std::string> key_;    // module[#group] -> key
  std::map<std::string, float> amax_;
  std::map<int, int64_t> expert_tokens_;
  std::set<std::string> dropped_;             // keys freed by reduce_to_owners (not owned here)
  bool sums_on_device_ = false;
  std::vector<std::shared_ptr<void>> device_zeros_;  // device sums of keys this rank never saw
};

}  // namespace dsv4::calib

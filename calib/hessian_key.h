// hessian_key.h: which Hessian a GPTQ module is solved against, as a value. The module plan
// resolves it per module (module_plan.h, ModuleScheme::hessian); pass A's collectors
// (layer_stats.h, layer_stats_cuda.h) keep their sums under it, the reduce sends each to the
// ranks that solve with it, the solves look it up. No module name is parsed past the plan.
//
//   HessianId id{m.scheme->hessian};                  // most modules: one Hessian
//   HessianId g{m.scheme->hessian, 2};                // wo_a: output group 2's
//   log_info("%s", hessian_id_describe(id).c_str());  // "layers.3 attention input"
#pragma once

#include <cstdint>
#include <string>

#include "model/linear_role.h"

namespace dsv4::calib {

// The activations a Hessian is built from, as the forward's taps share them (model/taps.h):
// every consumer of x_attn (wq_a, wkv, the compressor's and the indexer's x projections) one;
// wq_b and indexer.wq_b (both read qr) one; the shared expert's w1/w3 one; a routed expert's
// w1/w3 one, or in all-experts mode ONE for all routed w1/w3 of the layer; every other module
// its own.
enum class HessianInput : uint8_t { kAttnInput, kQr, kSharedW13, kExpertW13, kOwn };

struct HessianKey {
  static constexpr int kAllExperts = -2;  // `expert` of the all-experts shared w1/w3 Hessian
  int layer = -1;
  HessianInput input = HessianInput::kOwn;
  model::LinearRole role = model::LinearRole::kHead;  // kOwn: the module's role; else unused
  int expert = -1;                                    // kExpertW13 and kOwn routed w2: the expert

  // Every routed expert's w1/w3 in all-experts mode: each expert's tap repeats the same rows,
  // which count once per forward pass.
  bool all_experts() const { return expert == kAllExperts; }
  auto operator<=>(const HessianKey&) const = default;
};

// One Hessian: its key and, for wo_a (one Hessian per output group), the group; else -1.
struct HessianId {
  HessianKey key;
  int group = -1;
  auto operator<=>(const HessianId&) const = default;
};

// For messages: "layers.3 attention input", "layers.3 expert 7 w1/w3", "layers.3 attn.wo_a
// group 2".
std::string hessian_id_describe(const HessianId& id);

}  // namespace dsv4::calib

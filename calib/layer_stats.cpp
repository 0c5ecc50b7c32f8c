// layer_stats.cpp: Hessians, input absmax and expert token counts from the taps (see
// layer_stats.h).
#include "calib/layer_stats.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/check.h"
#include "common/device.h"

namespace dsv4::calib {
std::string stats_consumer(const std::string& module, int group) {
  return group < 0 ? module : module + "#" + std::to_string(group);
}

std::string stats_hessian_key(const std::string& first_module, int expert, bool has_token_rows, int group,
                              bool all_experts) {
  const bool expert_w13 = expert >= 0 && (first_module.ends_with(".w1") || first_module.ends_with(".w3"));
  if (all_experts && expert_w13 && !has_token_rows) {
    return first_module.substr(0, first_module.find(".ffn.experts.")) + ".ffn.experts.*.w13";
  }
  // Modules fed by one activation share one Hessian, named after the first consumer.
  return stats_consumer(first_module, group);
}

LayerStats::LayerStats(bool all_experts, W2Input w2_input) : all_experts_(all_experts), w2_input_(w2_input) {}

void LayerStats::want_hessian(const std::string& module) { want_h_.insert(module); }
void LayerStats::want_amax(const std::string& module) { want_amax_.insert(module); }

std::string LayerStats::key_of(const std::string& module, const model::TapEvent& e) const {
  return stats_hessian_key(module, e.expert, e.token_rows != nullptr, e.group, all_experts_);
}

void LayerStats::on_tap(const model::TapEvent& e) {
  if (e.rows == 0 || e.modules.empty()) return;
  bool wants_h = false;
  for (const std::string& m : e.modules) {
    if (want_amax_.count(m)) {
      float a = 0.0f;
      for (int64_t i = 0; i < e.rows * e.cols; ++i) a = std::max(a, std::fabs(e.x[i]));
      float& slot = amax_[m];
      slot = std::max(slot, a);
    }
    wants_h = wants_h || want_h_.count(m) > 0;
  }
  if (!wants_h) return;
  const std::string key = key_of(e.modules.front(), e);
  for (const std::string& m : e.modules) key_[stats_consumer(m, e.group)] = key;
  Slot& slot = acc_[key];
  DSV4_CHECK_IN("calib", !slot.device_sum, "CPU tap for %s, whose Hessian is on the GPU", key.c_str());
  if (!slot.acc) slot.acc = std::make_unique<quant::HessianAccumulator>(e.cols);
  DSV4_CHECK_IN("calib", slot.acc->dim() == e.cols, "tap for %s has %lld columns, its Hessian %lld", key.c_str(),
                static_cast<long long>(e.cols), static_cast<long long>(slot.acc->dim()));
  const bool shared = stats_is_shared_key(key);
  if (shared && slot.last_pass == pass_) return;  // every expert repeats the same rows
  slot.last_pass = pass_;

  const bool weighted_w2 = e.row_weights != nullptr && w2_input_ == W2Input::kWeighted;
  if (!weighted_w2) {
    slot.acc->add(e.x, e.rows);
    return;
  }
  // Rows scaled by their routing weight; unrouted rows (weight 0) are not tokens of this expert.
  std::vector<float> rows;
  rows.reserve(static_cast<size_t>(e.rows * e.cols));
  int64_t n = 0;
  for (int64_t r = 0; r < e.rows; ++r) {
    const float w = e.row_weights[r];
    if (w == 0.0f) continue;
    for (int64_t c = 0; c < e.cols; ++c) rows.push_back(e.x[r * e.cols + c] * w);
    ++n;
  }
  slot.acc->add(rows.data(), n);
}

void LayerStats::import_hessian(const std::string& key, const std::vector<std::string>& consumers,
                                quant::HessianAccumulator partial) {
  Slot& slot = acc_[key];
  DSV4_CHECK_IN("calib", !slot.held(), "Hessian %s imported twice", key.c_str());
  slot.acc = std::make_unique<quant::HessianAccumulator>(std::move(partial));
  for (const std::string& c : consumers) key_[c] = key;
}

void LayerStats::import_amax(const std::string& module, float amax) {
  float& slot = amax_[module];
  slot = std::max(slot, amax);
}

void LayerStats::on_expert_tokens(const std::string&, int expert, int64_t count) { expert_tokens_[expert] += count; }

bool LayerStats::has_hessian(const std::string& module, int group) const {
  return key_.count(stats_consumer(module, group)) > 0;
}

std::string LayerStats::hessian_key(const std::string& module, int group) const {
  const auto k = key_.find(stats_consumer(module, group));
  return k == key_.end() ? std::string() : k->second;
}

const LayerStats::Slot* LayerStats::slot_of(const std::string& module, int group, int64_t cols) const {
  const auto k = key_.find(stats_consumer(module, group));
  if (k == key_.end()) return nullptr;
  DSV4_CHECK_IN("calib", !dropped_.count(k->second), "the Hessian of %s (%s) is owned by another rank", module.c_str(),
                k->second.c_str());
  const Slot& slot = acc_.at(k->second);
  DSV4_CHECK_IN("calib", slot.dim() == cols, "%s has %lld inputs but its activations have %lld columns",
                module.c_str(), static_cast<long long>(cols), static_cast<long long>(slot.dim()));
  return &slot;
}

quant::HessianResult LayerStats::hessian(const std::string& module, int64_t cols, int group) const {
  const Slot* slot = slot_of(module, group, cols);
  if (!slot) return quant::HessianAccumulator(cols).finalize();
  DSV4_CHECK_IN("calib", slot->acc != nullptr, "the Hessian of %s is on the GPU: bring it over first (hessians_to_host)",
                stats_consumer(module, group).c_str());
  return slot->acc->finalize();
}

bool LayerStats::hessian_on_device(const std::string& module, int group) const {
  const auto k = key_.find(stats_consumer(module, group));
  return k != key_.end() && !dropped_.count(k->second) && acc_.at(k->second).device_sum != nullptr;
}

LayerStats::DeviceSum LayerStats::device_hessian(const std::string& module, int64_t cols, int group) const {
  const Slot* slot = slot_of(module, group, cols);
  if (!slot) return {};
  DSV4_CHECK_IN("calib", slot->device_sum != nullptr, "the Hessian of %s is on the host, not the GPU",
                stats_consumer(module, group).c_str());
  return {slot->device_sum, slot->device_tokens};
}

void LayerStats::import_device_hessian(const std::string& key, const std::vector<std::string>& consumers, int64_t dim,
                                       int64_t tokens, float* device_sum) {
  Slot& slot = acc_[key];
  DSV4_CHECK_IN("calib", !slot.held(), "Hessian %s imported twice", key.c_str());
  DSV4_CHECK_IN("calib", device_sum != nullptr && dim > 0 && tokens >= 0, "device Hessian %s: [%lld] of %lld tokens",
                key.c_str(), static_cast<long long>(dim), static_cast<long long>(tokens));
  slot.device_sum = device_sum;
  slot.device_dim = dim;
  slot.device_tokens = tokens;
  for (const std::string& c : consumers) key_[c] = key;
  sums_on_device_ = true;
}

void LayerStats::hessians_to_host(const std::vector<std::string>& modules) {
  const std::set<std::string> wanted(modules.begin(), modules.end());
  for (const auto& [consumer, key] : key_) {
    if (!wanted.count(consumer.substr(0, consumer.find('#')))) continue;
    Slot& slot = acc_.at(key);
    if (!slot.device_sum) continue;  // on the host already, or dropped
    auto acc = std::make_unique<quant::HessianAccumulator>(slot.device_dim);
    device_download(acc->sum().data(), slot.device_sum, acc->sum().size() * sizeof(float));
    acc->set_num_tokens(slot.device_tokens);
    slot.acc = std::move(acc);
    slot.device_sum = nullptr;
  }
}

uint64_t LayerStats::hessian_bytes() const {
  uint64_t b = 0;
  for (const auto& [key, slot] : acc_) {
    if (slot.held()) b += static_cast<uint64_t>(slot.dim()) * static_cast<uint64_t>(slot.dim()) * 4;
  }
  return b;
}

float LayerStats::amax(const std::string& module) const {
  const auto it = amax_.find(module);
  return it == amax_.end() ? 0.0f : it->second;
}

}  // namespace dsv4::calib

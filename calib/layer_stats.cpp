// layer_stats.cpp: Hessians, input absmax and expert token counts from the taps (see
// layer_stats.h).
#include "calib/layer_stats.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace dsv4::calib {

std::optional<HessianId> TapRouter::route(const std::vector<std::string>& modules, int group) {
  const HessianKey* key = nullptr;
  for (const std::string& m : modules) {
    const auto it = wants_.hessians.find(m);
    if (it == wants_.hessians.end()) continue;
    DSV4_CHECK_IN("calib", !key || *key == it->second, "%s and %s read one tap but were planned with different Hessians",
                  modules.front().c_str(), m.c_str());
    key = &it->second;
  }
  if (!key) return std::nullopt;
  const HessianId id{*key, group};
  if (key->all_experts()) return id;  // every routed expert's tap repeats the layer input
  const auto [it, fresh] = fed_by_.emplace(id, modules.front());
  DSV4_CHECK_IN("calib", it->second == modules.front(),
                "the Hessian of %s (%s) is fed by two taps, %s and %s: the plan shares what the forward does not",
                modules.front().c_str(), hessian_id_describe(id).c_str(), it->second.c_str(), modules.front().c_str());
  return id;
}

int64_t LayerStats::Slot::dim() const {
  if (const auto* h = std::get_if<quant::HessianAccumulator>(&sum)) return h->dim();
  return std::get<DeviceHessianSum>(sum).dim;
}
int64_t LayerStats::Slot::tokens() const {
  if (const auto* h = std::get_if<quant::HessianAccumulator>(&sum)) return h->num_tokens();
  return std::get<DeviceHessianSum>(sum).tokens;
}
float* LayerStats::Slot::data() {
  if (auto* h = std::get_if<quant::HessianAccumulator>(&sum)) return h->sum().data();
  return std::get<DeviceHessianSum>(sum).sum();
}
void LayerStats::Slot::set_tokens(int64_t n) {
  if (auto* h = std::get_if<quant::HessianAccumulator>(&sum)) {
    h->set_num_tokens(n);
  } else {
    std::get<DeviceHessianSum>(sum).tokens = n;
  }
}

LayerStats::LayerStats(bool all_experts, W2Input w2_input) : all_experts_(all_experts), w2_input_(w2_input) {}

void LayerStats::on_tap(const model::TapEvent& e) {
  if (e.rows == 0 || e.modules.empty()) return;
  for (const std::string& m : e.modules) {
    if (!taps_.wants_amax(m)) continue;
    float a = 0.0f;
    for (int64_t i = 0; i < e.rows * e.cols; ++i) a = std::max(a, std::fabs(e.x[i]));
    float& slot = amax_[m];
    slot = std::max(slot, a);
  }
  const std::optional<HessianId> id = taps_.route(e.modules, e.group);
  if (!id) return;
  auto [it, fresh] = slots_.try_emplace(*id, Slot{quant::HessianAccumulator(e.cols)});
  Slot& slot = it->second;
  DSV4_CHECK_IN("calib", !std::holds_alternative<DeviceHessianSum>(slot.sum), "CPU tap for %s, whose Hessian is on the GPU",
                hessian_id_describe(*id).c_str());
  DSV4_CHECK_IN("calib", slot.dim() == e.cols, "tap for %s has %lld columns, its Hessian %lld",
                hessian_id_describe(*id).c_str(), static_cast<long long>(e.cols), static_cast<long long>(slot.dim()));
  if (id->key.all_experts() && slot.last_pass == pass_) return;  // every expert repeats the same rows
  slot.last_pass = pass_;
  add_rows(slot, e);
}

void LayerStats::add_rows(Slot& slot, const model::TapEvent& e) const {
  quant::HessianAccumulator& acc = std::get<quant::HessianAccumulator>(slot.sum);
  const bool weighted_w2 = e.row_weights != nullptr && w2_input_ == W2Input::kWeighted;
  if (!weighted_w2) {
    acc.add(e.x, e.rows);
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
  acc.add(rows.data(), n);
}

void LayerStats::import_hessian(const HessianId& id, quant::HessianAccumulator partial) {
  const bool fresh = slots_.try_emplace(id, Slot{std::move(partial)}).second;
  DSV4_CHECK_IN("calib", fresh, "Hessian %s imported twice", hessian_id_describe(id).c_str());
}

void LayerStats::import_device_hessian(const HessianId& id, DeviceHessianSum sum) {
  DSV4_CHECK_IN("calib", sum.memory && sum.dim > 0 && sum.tokens >= 0, "device Hessian %s: [%lld] of %lld tokens",
                hessian_id_describe(id).c_str(), static_cast<long long>(sum.dim), static_cast<long long>(sum.tokens));
  const bool fresh = slots_.try_emplace(id, Slot{std::move(sum)}).second;
  DSV4_CHECK_IN("calib", fresh, "Hessian %s imported twice", hessian_id_describe(id).c_str());
  sums_on_device_ = true;
}

void LayerStats::import_amax(const std::string& module, float amax) {
  float& slot = amax_[module];
  slot = std::max(slot, amax);
}

void LayerStats::on_expert_tokens(const std::string&, int expert, int64_t count) { expert_tokens_[expert] += count; }

bool LayerStats::holds(const HessianId& id) const { return slots_.count(id) > 0 || dropped_.count(id) > 0; }

const LayerStats::Slot* LayerStats::slot_of(const HessianId& id, int64_t cols) const {
  DSV4_CHECK_IN("calib", !dropped_.count(id), "the Hessian %s is owned by another rank", hessian_id_describe(id).c_str());
  const auto it = slots_.find(id);
  if (it == slots_.end()) return nullptr;
  DSV4_CHECK_IN("calib", it->second.dim() == cols, "a module with %lld inputs asks for Hessian %s of width %lld",
                static_cast<long long>(cols), hessian_id_describe(id).c_str(), static_cast<long long>(it->second.dim()));
  return &it->second;
}

quant::HessianResult LayerStats::hessian(const HessianId& id, int64_t cols) const {
  const Slot* slot = slot_of(id, cols);
  if (!slot) return quant::HessianAccumulator(cols).finalize();
  const auto* acc = std::get_if<quant::HessianAccumulator>(&slot->sum);
  DSV4_CHECK_IN("calib", acc != nullptr, "the Hessian %s is on the GPU: bring it over first (hessians_to_host)",
                hessian_id_describe(id).c_str());
  return acc->finalize();
}

bool LayerStats::hessian_on_device(const HessianId& id) const {
  const auto it = slots_.find(id);
  return it != slots_.end() && std::holds_alternative<DeviceHessianSum>(it->second.sum);
}

LayerStats::DeviceSum LayerStats::device_hessian(const HessianId& id, int64_t cols) const {
  const Slot* slot = slot_of(id, cols);
  if (!slot) return {};
  const auto* d = std::get_if<DeviceHessianSum>(&slot->sum);
  DSV4_CHECK_IN("calib", d != nullptr, "the Hessian %s is on the host, not the GPU", hessian_id_describe(id).c_str());
  return {d->sum(), d->tokens};
}

void LayerStats::hessians_to_host(const std::set<HessianKey>& keys) {
  for (auto& [id, slot] : slots_) {
    const auto* d = std::get_if<DeviceHessianSum>(&slot.sum);
    if (!d || !keys.count(id.key)) continue;
    quant::HessianAccumulator acc(d->dim);
    device_download(acc.sum().data(), d->sum(), acc.sum().size() * sizeof(float));
    acc.set_num_tokens(d->tokens);
    slot.sum = std::move(acc);  // frees the device sum
  }
}

uint64_t LayerStats::hessian_bytes() const {
  uint64_t b = 0;
  for (const auto& [id, slot] : slots_) b += static_cast<uint64_t>(slot.dim()) * static_cast<uint64_t>(slot.dim()) * 4;
  return b;
}

float LayerStats::amax(const std::string& module) const {
  const auto it = amax_.find(module);
  return it == amax_.end() ? 0.0f : it->second;
}

}  // namespace dsv4::calib

// layer_stats.cpp: Hessians, input absmax and expert token counts from the taps (see
// layer_stats.h).
#include "calib/layer_stats.h"

#include <algorithm>
#include <cmath>

#include "calib/heldout.h"
#include "calib/state_finite.h"
#include "common/check.h"
#include "common/finite_scan.h"

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

std::optional<HessianKey> TapRouter::key_of(const std::vector<std::string>& modules) const {
  for (const std::string& m : modules) {
    const auto it = wants_.hessians.find(m);
    if (it != wants_.hessians.end()) return it->second;
  }
  return std::nullopt;
}

int64_t LayerStats::Slot::dim() const {
  return std::visit([](const auto& h) { return h.dim(); }, sum);
}
int64_t LayerStats::Slot::tokens() const {
  return std::visit([](const auto& h) { return h.num_tokens(); }, sum);
}
void LayerStats::Slot::set_tokens(int64_t n) {
  std::visit([n](auto& h) { h.set_num_tokens(n); }, sum);
}
uint64_t LayerStats::Slot::bytes() const {
  const uint64_t entries = static_cast<uint64_t>(dim()) * static_cast<uint64_t>(dim());
  if (const auto* d = std::get_if<DeviceHessianSum>(&sum)) return d->bytes();
  return entries * hessian_sum_entry_bytes(std::holds_alternative<quant::HessianExactSum>(sum));
}
LayerStats::Slot::Buffer LayerStats::Slot::reduce_buffer() {
  const size_t entries = static_cast<size_t>(dim() * dim());
  if (auto* h = std::get_if<quant::HessianAccumulator>(&sum)) return {h->sum().data(), entries, dist::ElemType::kF32};
  if (auto* x = std::get_if<quant::HessianExactSum>(&sum)) {
    return {x->normalized_limbs(), x->limb_count(), dist::ElemType::kI64};
  }
  const DeviceHessianSum& d = std::get<DeviceHessianSum>(sum);  // exact limbs come normalized
  if (d.exact()) return {d.limbs(), d.elements(), dist::ElemType::kI64};
  return {d.sum(), entries, dist::ElemType::kF32};
}

LayerStats::LayerStats(bool all_experts, W2Input w2_input, HessianSums sums)
    : all_experts_(all_experts), w2_input_(w2_input), sums_(sums) {}

LayerStats::Slot LayerStats::fresh_slot(int64_t dim) const {
  if (sums_on_device_) return Slot{DeviceHessianSum::zeros(dim, sums_ == HessianSums::kExact)};
  if (sums_ == HessianSums::kExact) return Slot{quant::HessianExactSum(dim)};
  return Slot{quant::HessianAccumulator(dim)};
}

void LayerStats::on_tap(const model::TapEvent& e) {
  if (e.rows == 0 || e.modules.empty()) return;
  tap_input_require_finite(e.modules[0], e.modules.size() - 1,
                           non_finite_scan(e.x, static_cast<size_t>(e.rows * e.cols)).count, e.rows * e.cols);
  for (const std::string& m : e.modules) {
    if (!taps_.wants_amax(m)) continue;
    float a = 0.0f;
    for (int64_t i = 0; i < e.rows * e.cols; ++i) a = std::max(a, std::fabs(e.x[i]));
    float& slot = amax_[m];
    slot = std::max(slot, a);
  }
  const std::optional<HessianId> id = taps_.route(e.modules, e.group);
  if (!id) return;
  DSV4_CHECK_IN("calib", !sums_on_device_, "CPU tap for %s, whose Hessians are on the GPU",
                hessian_id_describe(*id).c_str());
  auto it = slots_.find(*id);
  if (it == slots_.end()) it = slots_.emplace(*id, fresh_slot(e.cols)).first;
  Slot& slot = it->second;
  DSV4_CHECK_IN("calib", slot.dim() == e.cols, "tap for %s has %lld columns, its Hessian %lld",
                hessian_id_describe(*id).c_str(), static_cast<long long>(e.cols), static_cast<long long>(slot.dim()));
  if (id->key.all_experts() && slot.last_pass == pass_) return;  // every expert repeats the same rows
  slot.last_pass = pass_;
  add_rows(slot, e);
}

void LayerStats::add_rows(Slot& slot, const model::TapEvent& e) const {
  const auto add = [&slot](const float* x, int64_t rows) {
    if (auto* exact = std::get_if<quant::HessianExactSum>(&slot.sum)) {
      exact->add(x, rows);
    } else {
      std::get<quant::HessianAccumulator>(slot.sum).add(x, rows);
    }
  };
  const bool weighted_w2 = e.row_weights != nullptr && w2_input_ == W2Input::kWeighted;
  if (!weighted_w2) {
    add(e.x, e.rows);
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
  add(rows.data(), n);
}

void LayerStats::import_hessian(const HessianId& id, quant::HessianAccumulator partial) {
  DSV4_CHECK_IN("calib", sums_ == HessianSums::kFp32, "fp32 Hessian %s imported into exact sums",
                hessian_id_describe(id).c_str());
  const bool fresh = slots_.try_emplace(id, Slot{std::move(partial)}).second;
  DSV4_CHECK_IN("calib", fresh, "Hessian %s imported twice", hessian_id_describe(id).c_str());
}

void LayerStats::import_exact_hessian(const HessianId& id, quant::HessianExactSum partial) {
  DSV4_CHECK_IN("calib", sums_ == HessianSums::kExact, "exact Hessian %s imported into fp32 sums",
                hessian_id_describe(id).c_str());
  const bool fresh = slots_.try_emplace(id, Slot{std::move(partial)}).second;
  DSV4_CHECK_IN("calib", fresh, "Hessian %s imported twice", hessian_id_describe(id).c_str());
}

void LayerStats::import_device_hessian(const HessianId& id, DeviceHessianSum sum) {
  DSV4_CHECK_IN("calib", sum.exact() == (sums_ == HessianSums::kExact), "device Hessian %s: %s sums into %s ones",
                hessian_id_describe(id).c_str(), sum.exact() ? "exact" : "fp32",
                sums_ == HessianSums::kExact ? "exact" : "fp32");
  const bool fresh = slots_.try_emplace(id, Slot{std::move(sum)}).second;
  DSV4_CHECK_IN("calib", fresh, "Hessian %s imported twice", hessian_id_describe(id).c_str());
  sums_on_device_ = true;
}

void LayerStats::import_amax(const std::string& module, float amax) {
  float& slot = amax_[module];
  slot = std::max(slot, amax);
}

LayerStats& LayerStats::sink_for(int64_t sample) {
  return heldout_ && heldout_sample(*heldout_options_, sample) ? *heldout_ : *this;
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
  if (const auto* exact = std::get_if<quant::HessianExactSum>(&slot->sum)) return exact->rounded().finalize();
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
  return {d->sum(), d->num_tokens()};
}

void LayerStats::hessians_to_host(const std::set<HessianKey>& keys) {
  for (auto& [id, slot] : slots_) {
    auto* d = std::get_if<DeviceHessianSum>(&slot.sum);
    if (!d || !keys.count(id.key)) continue;
    d->round_exact();  // the solves read fp32 (no-op for an fp32 sum)
    quant::HessianAccumulator acc(d->dim());
    device_download(acc.sum().data(), d->sum(), acc.sum().size() * sizeof(float));
    acc.set_num_tokens(d->num_tokens());
    slot.sum = std::move(acc);  // frees the device sum
  }
}

uint64_t LayerStats::hessian_bytes() const {
  uint64_t b = 0;
  for (const auto& [id, slot] : slots_) b += slot.bytes();
  return b;
}

float LayerStats::amax(const std::string& module) const {
  const auto it = amax_.find(module);
  return it == amax_.end() ? 0.0f : it->second;
}

}  // namespace dsv4::calib

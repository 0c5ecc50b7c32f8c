// layer_stats_cross.cpp: LayerStats::on_paired_tap, GPTAQ's ΔX·Xᵀ beside the Hessian (see
// layer_stats.h; the pairing is calib/paired_taps.h). Each tap's rows give one fp32 partial
// (quant::gptaq_cross_add), added to the twin's sum as H's rows are to H's: exactly
// (HessianExactSum::add_sum) or in fp32, with the same token count, so the twin's finalize is
// 2/n ΔX·Xᵀ with H's n.
#include <vector>

#include "calib/layer_stats.h"
#include "common/check.h"
#include "common/finite_scan.h"
#include "quant/gptaq.h"

namespace dsv4::calib {

void LayerStats::on_paired_tap(const model::TapEvent& e, const float* x_full) {
  if (e.rows == 0 || e.modules.empty()) return;
  const std::optional<HessianId> id = taps_.route(e.modules, e.group);
  if (!id) return;
  DSV4_CHECK_IN("calib", cross_ != nullptr, "paired tap for %s without GPTAQ's ΔX·Xᵀ sums", e.modules[0].c_str());
  // The recipe refuses weighted w2 rows with GPTAQ (recipe_parse.cpp, gptaq_check): the two
  // streams' routing weights differ, so their rows would not pair.
  DSV4_CHECK_IN("calib", e.row_weights == nullptr || w2_input_ == W2Input::kUnweighted,
                "GPTAQ pairs unweighted w2 rows only (%s)", e.modules[0].c_str());
  const int64_t n = e.rows * e.cols;
  DSV4_CHECK_IN("calib", non_finite_scan(x_full, static_cast<size_t>(n)).count == 0,
                "the full-precision stream's input to %s is not finite", e.modules[0].c_str());
  auto it = cross_->slots_.find(*id);
  if (it == cross_->slots_.end()) it = cross_->slots_.emplace(*id, cross_->fresh_slot(e.cols)).first;
  Slot& slot = it->second;
  DSV4_CHECK_IN("calib", slot.dim() == e.cols, "paired tap for %s has %lld columns, its ΔX·Xᵀ %lld",
                hessian_id_describe(*id).c_str(), static_cast<long long>(e.cols), static_cast<long long>(slot.dim()));
  // The all-experts Hessian takes the layer input once per pass (on_tap): so does its ΔX·Xᵀ.
  if (id->key.all_experts() && slot.last_pass == pass_) return;
  slot.last_pass = pass_;
  std::vector<float> c(static_cast<size_t>(e.cols * e.cols), 0.0f);
  quant::gptaq_cross_add(e.x, x_full, e.rows, e.cols, c.data());
  if (auto* exact = std::get_if<quant::HessianExactSum>(&slot.sum)) {
    exact->add_sum(c.data(), e.rows);
    return;
  }
  auto* acc = std::get_if<quant::HessianAccumulator>(&slot.sum);
  DSV4_CHECK_IN("calib", acc != nullptr, "GPTAQ's ΔX·Xᵀ of %s on the GPU", hessian_id_describe(*id).c_str());
  std::vector<float>& s = acc->sum();
  for (size_t i = 0; i < c.size(); ++i) s[i] += c[i];
  acc->set_num_tokens(acc->num_tokens() + e.rows);
}

}  // namespace dsv4::calib

// paired_taps.cpp: the full-precision pass's recorder and the quantized pass's pairing sink (see
// paired_taps.h).
#include "calib/paired_taps.h"

#include "common/check.h"

namespace dsv4::calib {

void TapRecorder::on_tap(const model::TapEvent& e) {
  if (e.rows == 0 || e.modules.empty()) return;  // LayerStats ignores these too: nothing to pair
  Tap t{e.modules, e.group, e.expert, e.rows, e.cols, {}};
  const std::optional<HessianKey> key = stats_.tap_key(e.modules);
  // Only the first all-experts tap of a pass is summed (every routed expert repeats the input).
  const bool read = key && !(key->all_experts() && all_experts_kept_.count(*key));
  if (read) {
    t.x.assign(e.x, e.x + e.rows * e.cols);
    if (key->all_experts()) all_experts_kept_.insert(*key);
  }
  taps_.push_back(std::move(t));
}

void PairedTapSink::on_tap(const model::TapEvent& e) {
  stats_.on_tap(e);
  if (e.rows == 0 || e.modules.empty()) return;
  const auto& taps = full_.taps();
  DSV4_CHECK_IN("calib", next_ < taps.size(),
                "GPTAQ: the quantized stream's pass A tapped %s after the full-precision stream's last tap (%zu): the "
                "two streams reached different modules",
                e.modules[0].c_str(), taps.size());
  const TapRecorder::Tap& t = taps[next_++];
  DSV4_CHECK_IN("calib",
                t.modules == e.modules && t.group == e.group && t.expert == e.expert && t.rows == e.rows &&
                    t.cols == e.cols,
                "GPTAQ: tap %zu of pass A is %s (expert %d, group %d, %lld x %lld) on the quantized stream but %s "
                "(expert %d, group %d, %lld x %lld) on the full-precision one: the rows do not pair (GPTAQ needs "
                "calibration.all_experts: true)",
                next_ - 1, e.modules[0].c_str(), e.expert, e.group, static_cast<long long>(e.rows),
                static_cast<long long>(e.cols), t.modules[0].c_str(), t.expert, t.group,
                static_cast<long long>(t.rows), static_cast<long long>(t.cols));
  if (t.x.empty()) return;  // not read: LayerStats sums nothing for it
  stats_.on_paired_tap(e, t.x.data());
}

void PairedTapSink::finish() const {
  DSV4_CHECK_IN("calib", next_ == full_.taps().size(),
                "GPTAQ: the full-precision stream's pass A tapped %zu times, the quantized stream's %zu: the two "
                "streams reached different modules",
                full_.taps().size(), next_);
}

}  // namespace dsv4::calib

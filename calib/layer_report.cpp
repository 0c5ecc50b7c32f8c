// layer_report.cpp: a segment's report as JSON and as one log line (see layer_report.h).
#include "calib/layer_report.h"

#include <algorithm>
#include <cstdio>

#include "calib/run_estimate.h"

namespace dsv4::calib {
namespace {

// Mean of one error field over the modules that have it (>= 0); -1 when none does.
double mean_known(const std::vector<ModuleReport>& modules, double ModuleReport::*field) {
  double s = 0;
  int n = 0;
  for (const ModuleReport& m : modules) {
    if (m.*field >= 0) s += m.*field, ++n;
  }
  return n ? s / n : -1.0;
}

// How many validated modules chose each candidate ("0.01": n, ..., "rtn": n), in candidate order.
nlohmann::ordered_json heldout_summary_json(const LayerReport& l) {
  nlohmann::ordered_json chosen = nlohmann::ordered_json::object();
  for (const ModuleReport& m : l.modules) {
    if (!m.heldout.validated()) continue;
    for (size_t i = 0; i < m.heldout.errors.size(); ++i) {
      const std::string name = heldout_candidate_name(m.heldout, static_cast<int>(i));
      if (!chosen.contains(name)) chosen[name] = 0;
    }
    const std::string pick = heldout_candidate_name(m.heldout, m.heldout.chosen);
    chosen[pick] = chosen[pick].get<int>() + 1;
  }
  return {{"validated", l.heldout_validated()}, {"chosen", chosen}};
}

}  // namespace

int LayerReport::count(SolveMethod m) const {
  return static_cast<int>(std::count_if(modules.begin(), modules.end(), [&](const ModuleReport& r) { return r.method == m; }));
}
int LayerReport::fallbacks() const {
  return static_cast<int>(std::count_if(modules.begin(), modules.end(),
                                        [](const ModuleReport& r) { return r.fallback != quant::GptqFallback::kNone; }));
}
double LayerReport::mean_rel_error() const { return mean_known(modules, &ModuleReport::rel_error); }
double LayerReport::mean_rtn_rel_error() const { return mean_known(modules, &ModuleReport::rtn_rel_error); }
int LayerReport::heldout_validated() const {
  return static_cast<int>(std::count_if(modules.begin(), modules.end(), [](const ModuleReport& r) { return r.heldout.validated(); }));
}
int LayerReport::heldout_rtn() const {
  return static_cast<int>(std::count_if(modules.begin(), modules.end(), [](const ModuleReport& r) { return r.heldout.chose_rtn(); }));
}

nlohmann::ordered_json layer_report_json(const LayerReport& l) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["segment"] = l.name;
  j["seconds"] = {{"total", l.seconds},         {"decode", l.seconds_decode}, {"forward", l.seconds_forward},
                  {"reduce", l.seconds_reduce}, {"solve", l.seconds_solve},   {"share", l.seconds_share},
                  {"wait", l.seconds_wait},     {"write", l.seconds_write}};
  j["hessians"] = l.hessians;
  ordered_json methods = ordered_json::object();
  for (SolveMethod m : kSolveMethods) {
    if (const int k = l.count(m)) methods[std::string(solve_method_name(m))] = k;
  }
  j["methods"] = methods;
  j["fallbacks"] = l.fallbacks();
  if (l.mean_rel_error() >= 0) {
    j["mean_rel_error"] = l.mean_rel_error();
    j["mean_rtn_rel_error"] = l.mean_rtn_rel_error();
  }
  if (!l.expert_tokens.empty()) j["expert_tokens"] = l.expert_tokens;
  if (l.heldout_validated()) j["heldout"] = heldout_summary_json(l);
  ordered_json mods = ordered_json::array();
  for (const ModuleReport& m : l.modules) {
    ordered_json x;
    x["module"] = m.module;
    x["method"] = solve_method_name(m.method);
    if (m.method == SolveMethod::kGptq) {
      x["loss"] = m.loss;
      x["rel_error"] = m.rel_error;
      x["rtn_rel_error"] = m.rtn_rel_error;
      x["dampening_frac"] = m.dampening_frac;
      x["fallback"] = quant::gptq_fallback_name(m.fallback);
      x["tokens"] = m.tokens;
    }
    if (m.heldout.validated()) x["heldout"] = heldout_choice_json(m.heldout);
    mods.push_back(std::move(x));
  }
  j["modules"] = std::move(mods);
  return j;
}


std::string layer_report_line(const LayerReport& l, int num_segments) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf,
                        "[%d/%d] %-9s %6.2fs (decode %.2f fwd %.2f reduce %.2f solve %.2f share %.2f wait %.2f; write %.2f "
                        "in the background)",
                        l.segment + 1, num_segments, l.name.c_str(), l.seconds, l.seconds_decode, l.seconds_forward,
                        l.seconds_reduce, l.seconds_solve, l.seconds_share, l.seconds_wait, l.seconds_write);
  std::string s(buf, static_cast<size_t>(n));
  if (!l.modules.empty()) {
    s += " modules " + std::to_string(l.modules.size());
    for (SolveMethod m : kSolveMethods) {
      if (const int k = l.count(m)) s += " " + std::string(solve_method_name(m)) + "=" + std::to_string(k);
    }
  }
  if (l.mean_rel_error() >= 0) {
    n = std::snprintf(buf, sizeof buf, " err %.3e (rtn %.3e)", l.mean_rel_error(), l.mean_rtn_rel_error());
    s.append(buf, static_cast<size_t>(n));
  }
  if (l.fallbacks()) s += " fallbacks " + std::to_string(l.fallbacks());
  if (const int v = l.heldout_validated()) {
    s += " heldout rtn " + std::to_string(l.heldout_rtn()) + "/" + std::to_string(v);
  }
  if (!l.expert_tokens.empty()) {
    const auto [lo, hi] = std::minmax_element(l.expert_tokens.begin(), l.expert_tokens.end());
    s += " tokens/expert " + std::to_string(*lo) + ".." + std::to_string(*hi);
  }
  return s;
}

std::string RunEta::after(const LayerReport& l) {
  ++reported_;
  seconds_ += l.seconds;
  const int left = num_segments_ - (l.segment + 1);
  seconds_left_ = left > 0 ? seconds_ / reported_ * left : 0.0;
  if (left <= 0) return "";
  return "; " + std::to_string(left) + " left, eta " + duration_text(seconds_left_);
}

}  // namespace dsv4::calib

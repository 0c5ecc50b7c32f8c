// data_sufficiency.cpp: tokens per Hessian column of a plan's GPTQ modules (see data_sufficiency.h).
#include "calib/data_sufficiency.h"

#include "calib/heldout.h"
#include "common/check.h"

namespace dsv4::calib {

std::optional<TokensPerColumn> tokens_per_column_min(const Recipe& r, const ModulePlan& plan,
                                                     const model::ModelConfig& c, int64_t samples, int64_t seq_len) {
  // Held-out samples feed no calibration Hessian (calib/heldout.h).
  const int64_t calib_samples = samples - heldout_count(r.calibration.heldout, samples);
  const int64_t tokens = calib_samples * seq_len;
  std::optional<TokensPerColumn> worst;
  for (const PlannedModule& m : plan.modules) {
    if (!m.quantized() || !m.scheme->gptq_solved() || m.cols <= 0) continue;
    int64_t t = tokens;
    // Outside all-experts mode a routed expert sees only the tokens routed to it (expected share).
    if (model::linear_role_is_routed_expert(m.role) && !r.calibration.all_experts && c.n_routed_experts > 0) {
      t = tokens * c.num_experts_per_tok / c.n_routed_experts;
    }
    const double per = static_cast<double>(t) / static_cast<double>(m.cols);
    if (!worst || per < worst->tokens_per_column) worst = TokensPerColumn{per, t, m.cols, m.family};
  }
  return worst;
}

std::optional<std::string> data_sufficiency_warning(const Recipe& r, const ModulePlan& plan, const model::ModelConfig& c,
                                                    int64_t samples, int64_t seq_len) {
  const std::optional<TokensPerColumn> w = tokens_per_column_min(r, plan, c, samples, seq_len);
  if (!w || w->tokens_per_column >= kMinTokensPerColumn) return std::nullopt;
  return strfmt("thin calibration data: %lld samples x %lld tokens give %s (%lld inputs) at most %lld tokens, %.1f per "
                "Hessian column, below %.0f; below that GPTQ overfits its few tokens and its gain over RTN on unseen "
                "text shrank (tiny model, w4a16_mtp: mean KL 0.064 at 3.6 per column, 0.087 at 1, 0.110 at 0.5 against "
                "RTN's 0.116; docs/QUALITY.md, \"Thin data\"): raise dataset.num_samples or seq_len (--num-samples, "
                "--seq-len), or let calibration.heldout choose the damping or RTN per module",
                static_cast<long long>(samples), static_cast<long long>(seq_len), w->family.c_str(),
                static_cast<long long>(w->cols), static_cast<long long>(w->tokens), w->tokens_per_column,
                kMinTokensPerColumn);
}

}  // namespace dsv4::calib

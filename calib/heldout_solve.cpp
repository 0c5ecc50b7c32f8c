// heldout_solve.cpp: a GPTQ module's candidates measured on the held-out Hessian, the best kept
// (see heldout_solve.h).
#include "calib/heldout_solve.h"

#include <chrono>

#include "calib/profile_layout.h"
#include "common/check.h"
#include "quant/quant_scheme.h"
#include "quant/quantizer.h"

namespace dsv4::calib {
namespace {

int64_t tokens_of(const std::vector<const quant::HessianResult*>& hs) {
  int64_t n = 0;
  for (const quant::HessianResult* h : hs) n += h->num_tokens;
  return n;
}

bool any_empty(const std::vector<const quant::HessianResult*>& hs) {
  for (const quant::HessianResult* h : hs) {
    if (h->no_tokens) return true;
  }
  return hs.empty();
}

// GPTQ of the module at another dampening_frac: the same solve with a copy of its scheme.
SolvedModule solve_at(const ModuleSolveInput& in, double dampening_frac, const Checkpoint& source) {
  PlannedModule m = *in.module;
  m.scheme->gptq.dampening_frac = static_cast<float>(dampening_frac);
  ModuleSolveInput at = in;
  at.module = &m;
  SolvedModule s = module_solve(at, source);
  return s;
}

// The module by round-to-nearest with its group's observer (the RTN that rtn_rel_error measures),
// encoded as its profile writes it; its errors are taken on the calibration Hessians.
SolvedModule solve_rtn(const ModuleSolveInput& in) {
  const PlannedModule& m = *in.module;
  quant::RtnResult r = quant::quantizer_rtn(m.scheme->scheme.weights, in.weight, m.rows, m.cols);
  SolvedModule s;
  s.module = m.names.release;
  s.method = SolveMethod::kRtn;
  s.tokens = tokens_of(in.hessians);
  s.rel_error = heldout_rel_error(in.weight, r.dequant.data(), m.rows, m.cols, in.hessians);
  s.rtn_rel_error = s.rel_error;
  s.tensors = profile_module_encode(m, r.qparams, r.codes, {});
  for (quant::EncodedTensor& t : quant::activation_encode(m.scheme->scheme, in.input_amax)) s.tensors.push_back(std::move(t));
  s.qparams = std::move(r.qparams);
  s.codes = std::move(r.codes);
  s.dequant = std::move(r.dequant);
  return s;
}

}  // namespace

double heldout_rel_error(const float* w, const float* q, int64_t rows, int64_t cols,
                         const std::vector<const quant::HessianResult*>& hs) {
  const int64_t groups = static_cast<int64_t>(hs.size());
  DSV4_CHECK_IN("heldout", groups > 0 && rows % groups == 0, "%lld rows over %lld Hessians",
                static_cast<long long>(rows), static_cast<long long>(groups));
  const int64_t block_rows = rows / groups, n = block_rows * cols;
  double num = 0, den = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const quant::HessianError e = quant::hessian_error(w + g * n, q + g * n, block_rows, cols, hs[static_cast<size_t>(g)]->h.data());
    num += e.delta_trace;
    den += e.weight_trace;
  }
  return den > 0 ? num / den : 0.0;
}

quant::HessianResult heldout_hessian_merge(const quant::HessianResult& a, const quant::HessianResult& b) {
  DSV4_CHECK_IN("heldout", a.dim == b.dim && a.h.size() == b.h.size(), "Hessians of width %lld and %lld",
                static_cast<long long>(a.dim), static_cast<long long>(b.dim));
  quant::HessianResult out;
  out.dim = a.dim;
  out.num_tokens = a.num_tokens + b.num_tokens;
  out.no_tokens = out.num_tokens == 0;
  out.h.resize(a.h.size());
  if (out.no_tokens) return out;
  const double wa = static_cast<double>(a.num_tokens) / static_cast<double>(out.num_tokens);
  const double wb = static_cast<double>(b.num_tokens) / static_cast<double>(out.num_tokens);
  for (size_t i = 0; i < out.h.size(); ++i) out.h[i] = static_cast<float>(wa * a.h[i] + wb * b.h[i]);
  return out;
}

SolvedModule heldout_solve(const ModuleSolveInput& in, const std::vector<const quant::HessianResult*>& heldout,
                           const HeldoutOptions& o, const Checkpoint& source) {
  const auto start = std::chrono::steady_clock::now();
  const PlannedModule& m = *in.module;
  DSV4_CHECK_IN("heldout", m.quantized() && m.scheme->gptq_solved() && in.weight,
                "%s: held-out validation takes a GPTQ module with its decoded weight", m.names.release.c_str());
  DSV4_CHECK_IN("heldout", heldout.size() == in.hessians.size(), "%s: %zu held-out Hessians for %zu calibration ones",
                m.names.release.c_str(), heldout.size(), in.hessians.size());
  DSV4_CHECK_IN("heldout", !o.dampings.empty(), "%s: no damping candidate", m.names.release.c_str());
  // Nothing to validate with (or against): solved as without validation, reported unvalidated.
  if (any_empty(in.hessians) || any_empty(heldout)) return module_solve(in, source);

  HeldoutChoice c;
  c.dampings = o.dampings;
  c.tokens = tokens_of(heldout);
  std::vector<SolvedModule> candidates;
  for (double d : o.dampings) candidates.push_back(solve_at(in, d, source));
  candidates.push_back(solve_rtn(in));
  for (const SolvedModule& s : candidates) {
    c.errors.push_back(heldout_rel_error(in.weight, s.dequant.data(), m.rows, m.cols, heldout));
  }
  c.chosen = heldout_choose(c.errors);

  SolvedModule out;
  if (!c.chose_rtn() && o.refit) {
    // The chosen damping on every sample's Hessian: validation picked it, all tokens fit it.
    std::vector<quant::HessianResult> merged;
    merged.reserve(heldout.size());  // the pointers below must stay valid
    ModuleSolveInput all = in;
    all.hessians.clear();
    for (size_t g = 0; g < heldout.size(); ++g) {
      merged.push_back(heldout_hessian_merge(*in.hessians[g], *heldout[g]));
      all.hessians.push_back(&merged.back());
    }
    out = solve_at(all, o.dampings[static_cast<size_t>(c.chosen)], source);
  } else {
    out = std::move(candidates[static_cast<size_t>(c.chosen)]);
  }
  out.heldout = std::move(c);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace dsv4::calib

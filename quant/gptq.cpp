// gptq.cpp: CPU reference of the GPTQ solver (see gptq.h; spec gptq_and_formats.md §1.3-§1.7,
// §1.10). Mirrors llm-compressor's quantize_weight step by step so the two can be diffed:
// act-order permutation, dead columns, damping + Cholesky chain (with dsv4's damping escalation
// and RTN fallbacks; gptq_prepare_reference, the policy the GPU path shares) -> qparams ->
// blocked sweep -> un-permute.
// Tests: tests/quant/test_gptq.cpp.
#include "quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <ostream>

#include "common/check.h"
#include "quant/gptaq.h"
#include "quant/gptq_prepare.h"
#include "quant/gptq_refine.h"
#include "quant/hessian.h"
#include "quant/observer.h"

namespace dsv4::quant {
namespace {

bool is_grouped(const QuantArgs& args) {
  return args.strategy == Strategy::kGroup || args.strategy == Strategy::kTensorGroup;
}

// Qparams of m [rows, ncols]: the weight's observer, or the Hessian-weighted grid with diag_h
// [ncols], the diagonal of H in m's column order.
QParams gptq_qparams(const QuantArgs& args, const GptqOptions& opts, const float* m, int64_t rows, int64_t ncols,
                     const float* diag_h, float amax_tensor = 0.0f) {
  if (opts.scale_search == ScaleSearch::kHessian) {
    return observer_qparams_weighted(args, m, rows, ncols, diag_h, amax_tensor);
  }
  return observer_qparams(args, m, rows, ncols, amax_tensor);
}

}  // namespace

std::string_view scale_search_name(ScaleSearch s) {
  return s == ScaleSearch::kHessian ? "hessian" : "observer";
}

std::string_view actorder_name(ActOrder a) {
  switch (a) {
    case ActOrder::kNone: return "none";
    case ActOrder::kStatic: return "static";
    case ActOrder::kGroup: return "group";
  }
  return "?";
}

std::string_view gptq_fallback_name(GptqFallback f) {
  switch (f) {
    case GptqFallback::kNone: return "none";
    case GptqFallback::kDampingRaised: return "damping_raised";
    case GptqFallback::kRtnCholeskyFailed: return "rtn_cholesky_failed";
    case GptqFallback::kRtnNoTokens: return "rtn_no_tokens";
  }
  return "?";
}

ArgsProblem GptqOptions::problem() const {
  if (!(std::isfinite(dampening_frac) && dampening_frac >= 0.0f)) {
    return {"dampening_frac", strfmt("%g", dampening_frac), "expected a finite number >= 0"};
  }
  if (block_size <= 0) return {"block_size", std::to_string(block_size), "expected a positive column count"};
  if (max_damping_escalations < 0) {
    return {"max_damping_escalations", std::to_string(max_damping_escalations), "expected >= 0"};
  }
  if (!(damping_escalation_factor > 1.0f)) {
    return {"damping_escalation_factor", strfmt("%g", damping_escalation_factor), "expected > 1"};
  }
  if (refine_passes < 0) return {"refine_passes", std::to_string(refine_passes), "expected >= 0"};
  if (!(std::isfinite(asymmetric_alpha) && asymmetric_alpha >= 0.0f)) {
    return {"asymmetric_alpha", strfmt("%g", asymmetric_alpha), "expected a finite number >= 0"};
  }
  return {};
}

void GptqOptions::check() const {
  if (const ArgsProblem p = problem()) DSV4_FAIL("gptq", "%s", p.to_string().c_str());
}

std::ostream& operator<<(std::ostream& os, const GptqOptions& o) {
  return os << "GptqOptions{dampening_frac=" << o.dampening_frac << ", block_size=" << o.block_size
            << ", actorder=" << actorder_name(o.actorder)
            << ", qparams=" << (o.qparams == QParamsTiming::kLazy ? "lazy" : "upfront")
            << ", max_damping_escalations=" << o.max_damping_escalations
            << ", damping_escalation_factor=" << o.damping_escalation_factor
            << ", scale_search=" << scale_search_name(o.scale_search) << ", refine_passes=" << o.refine_passes
            << ", asymmetric=" << (o.asymmetric ? "true" : "false") << ", asymmetric_alpha=" << o.asymmetric_alpha << "}";
}

GptqResult gptq_solve(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                      const float* h, const GptqOptions& opts) {
  return gptq_solve_asymmetric(args, w, rows, cols, h, nullptr, opts);
}

GptqResult gptq_solve_asymmetric(const QuantArgs& args, const float* w, int64_t rows, int64_t cols,
                                 const float* h, const float* dxxt, const GptqOptions& opts) {
  args.check();
  quant_args_check_shape(args, rows, cols);
  opts.check();
  // Without ΔX·Xᵀ the sweep would be classic GPTQ while the options say GPTAQ.
  DSV4_CHECK_IN("gptq", !opts.asymmetric || dxxt, "asymmetric (GPTAQ) options without ΔX·Xᵀ (%lld columns)",
                static_cast<long long>(cols));
  DSV4_CHECK_IN("gptq", w != nullptr && h != nullptr, "null weight or Hessian");
  const bool grouped = is_grouped(args);
  ActOrder order = opts.actorder;
  if (order == ActOrder::kGroup && !grouped) order = ActOrder::kNone;  // llm-compressor warns
  const bool lazy = opts.qparams == QParamsTiming::kLazy && grouped;
  DSV4_CHECK_IN("gptq", !(lazy && order == ActOrder::kStatic),
                "actorder static needs qparams computed up front, not lazily (%s)",
                args.to_string().c_str());
  const size_t nw = static_cast<size_t>(rows * cols);
  const size_t nh = static_cast<size_t>(cols * cols);

  GptqResult res;
  res.actorder_used = order;

  // Act-order permutation, dead columns, damping and U (gptq_prepare.h, shared with the GPU path):
  // U is the upper Cholesky factor of (H + damp I)^-1 in permuted order, or identity for RTN.
  std::vector<float> u(nh);
  const GptqPrepared prep = gptq_prepare_reference(h, cols, opts, order, u.data());
  const std::vector<int32_t>& perm = prep.perm;
  res.fallback = prep.fallback;
  res.damping_escalations = prep.damping_escalations;
  res.dampening_frac_used = prep.dampening_frac_used;
  res.damp = prep.damp;
  res.dead_columns = static_cast<int64_t>(prep.dead.size());
  const bool identity_u =
      prep.fallback == GptqFallback::kRtnNoTokens || prep.fallback == GptqFallback::kRtnCholeskyFailed;
  std::vector<float> wp(nw);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) wp[r * cols + j] = w[r * cols + perm[j]];
  }
  // GPTAQ's residual P (gptaq.h); none on the RTN fallbacks, whose U is not H's.
  const std::vector<float> p = dxxt && !identity_u
                                   ? gptaq_residual(dxxt, cols, perm, prep.dead, u.data(), opts.asymmetric_alpha)
                                   : std::vector<float>{};
  const bool asym = !p.empty();
  std::vector<float> diag_h(static_cast<size_t>(cols)), diag_hp(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) {
    diag_h[static_cast<size_t>(j)] = h[j * cols + j];
    diag_hp[static_cast<size_t>(j)] = h[static_cast<int64_t>(perm[j]) * cols + perm[j]];
  }

  // Qparams (§1.3, §1.7): from the original W in its own order (none/static), or from the
  // permuted W (group), dead columns included. Lazy mode overwrites each group's column at its
  // first column below; this upfront pass provides the grid and the tensor_group global scale.
  res.qparams = order == ActOrder::kGroup ? gptq_qparams(args, opts, wp.data(), rows, cols, diag_hp.data())
                                          : gptq_qparams(args, opts, w, rows, cols, diag_h.data());
  QParams& qp = res.qparams;
  float amax_tensor = 0.0f;
  for (size_t i = 0; i < nw; ++i) amax_tensor = std::max(amax_tensor, std::fabs(w[i]));
  // Which qparam column the permuted column j uses: static keeps the original column's group.
  auto qparam_col = [&](int64_t j) -> int64_t { return order == ActOrder::kStatic ? perm[j] : j; };

  // Dead columns (diag(H) == 0) are swept as zeros (§1.4).
  std::vector<uint8_t> dead(static_cast<size_t>(cols), 0);
  for (const int32_t c : prep.dead) dead[static_cast<size_t>(c)] = 1;
  for (int64_t j = 0; j < cols; ++j) {
    if (!dead[static_cast<size_t>(perm[j])]) continue;
    for (int64_t r = 0; r < rows; ++r) wp[r * cols + j] = 0.0f;
  }

  // The blocked sweep (§1.5), fp32 like llm-compressor. wp is the full W: each block's later
  // columns get one GEMM-style update; the block itself works on a copy w1 with rank-1 updates.
  const int64_t bs = opts.block_size;
  const int64_t gs = args.group_size;
  std::vector<float> w1(static_cast<size_t>(rows * bs)), err1(static_cast<size_t>(rows * bs));
  std::vector<float> wpre(asym ? static_cast<size_t>(rows * bs) : 0);  // GPTAQ: columns before rounding
  std::vector<float> col(static_cast<size_t>(rows)), deq(static_cast<size_t>(rows));
  std::vector<int32_t> code(static_cast<size_t>(rows));
  std::vector<int32_t> codes_p(nw);
  std::vector<float> q_p(nw);
  std::vector<float> group_w, tmp(static_cast<size_t>(cols));
  double loss = 0.0;
  for (int64_t i1 = 0; i1 < cols; i1 += bs) {
    const int64_t i2 = std::min(i1 + bs, cols);
    const int64_t nb = i2 - i1;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < nb; ++k) w1[r * bs + k] = wp[r * cols + i1 + k];
    }
    for (int64_t k = 0; k < nb; ++k) {
      const int64_t j = i1 + k;
      if (lazy && j % gs == 0) {
        // Classic GPTQ: find_params(W[:, j:j+gs]) on the full W, which lacks this block's
        // in-block updates unless the group starts the block.
        group_w.resize(static_cast<size_t>(rows * gs));
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < gs; ++c) group_w[r * gs + c] = wp[r * cols + j + c];
        }
        const QParams g = gptq_qparams(args, opts, group_w.data(), rows, gs, &diag_hp[static_cast<size_t>(j)], amax_tensor);
        const int64_t gcol = j / gs;
        for (int64_t r = 0; r < rows; ++r) {
          const size_t dst = static_cast<size_t>(r * qp.scale_cols + gcol);
          qp.scale[dst] = g.scale[static_cast<size_t>(r)];
          qp.zero_point[dst] = g.zero_point[static_cast<size_t>(r)];
          if (!qp.scale_e8m0.empty()) qp.scale_e8m0[dst] = g.scale_e8m0[static_cast<size_t>(r)];
        }
      }
      for (int64_t r = 0; r < rows; ++r) col[r] = w1[r * bs + k];
      quantizer_fake_quant_column(args, qp, qparam_col(j), col.data(), rows, code.data(),
                                  deq.data());
      const float* uj = &u[static_cast<size_t>(j * cols)];
      const float d = uj[j];
      for (int64_t r = 0; r < rows; ++r) {
        codes_p[r * cols + j] = code[r];
        q_p[r * cols + j] = deq[r];
        const float diff = col[r] - deq[r];
        loss += static_cast<double>(diff) * diff / (static_cast<double>(d) * d);
        const float e = diff / d;
        err1[r * bs + k] = e;
        float* w1r = &w1[static_cast<size_t>(r * bs)];
        if (asym) {
          const float wv = col[r];
          const float* pj = &p[static_cast<size_t>(j * cols)];
          wpre[r * bs + k] = wv;
          for (int64_t kk = k; kk < nb; ++kk) w1r[kk] -= e * uj[i1 + kk] - wv * pj[i1 + kk];
        } else {
          for (int64_t kk = k; kk < nb; ++kk) w1r[kk] -= e * uj[i1 + kk];
        }
      }
    }
    if (i2 < cols && !identity_u) {
      // W[:, i2:] -= Err1 @ U[i1:i2, i2:], product summed first as a GEMM would.
      for (int64_t r = 0; r < rows; ++r) {
        std::fill(tmp.begin() + i2, tmp.end(), 0.0f);
        for (int64_t k = 0; k < nb; ++k) {
          const float e = err1[r * bs + k];
          const float* uk = &u[static_cast<size_t>((i1 + k) * cols)];
          if (asym) {
            const float wv = wpre[r * bs + k];
            const float* pk = &p[static_cast<size_t>((i1 + k) * cols)];
            for (int64_t c = i2; c < cols; ++c) tmp[c] += e * uk[c] - wv * pk[c];
          } else {
            for (int64_t c = i2; c < cols; ++c) tmp[c] += e * uk[c];
          }
        }
        float* wr = &wp[static_cast<size_t>(r * cols)];
        for (int64_t c = i2; c < cols; ++c) wr[c] -= tmp[c];
      }
    }
  }
  res.loss = loss / 2.0;

  // Un-permute (W[:, argsort(perm)]), and g_idx for group order: original column perm[j] uses
  // the permuted-space group j / gs.
  res.codes.resize(nw);
  res.dequant.resize(nw);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) {
      res.codes[r * cols + perm[j]] = codes_p[r * cols + j];
      res.dequant[r * cols + perm[j]] = q_p[r * cols + j];
    }
  }
  if (order == ActOrder::kGroup) {
    res.g_idx.resize(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) {
      res.g_idx[static_cast<size_t>(perm[j])] = static_cast<int32_t>(j / gs);
    }
  }
  if (opts.refine_passes > 0 && !identity_u) {
    // Coordinate descent on ½·tr((W−Q)(H+damp)(W−Q)ᵀ) from the sweep's result (gptq_refine.h);
    // the loss is then that objective itself.
    const GptqRefineStats st = gptq_refine(args, res.qparams, res.g_idx, w, rows, cols, h, res.damp, prep.dead,
                                           opts.refine_passes, res.codes.data(), res.dequant.data());
    res.loss = st.loss_after;
  }
  return res;
}

double gptq_rel_error(const float* w, const float* q, int64_t rows, int64_t cols, const float* h) {
  return hessian_error(w, q, rows, cols, h).rel();
}

std::vector<float> gptq_dequant_with_g_idx(const QuantArgs& args, const QParams& qp,
                                           const std::vector<int32_t>& codes,
                                           const std::vector<int32_t>& g_idx) {
  const int64_t rows = qp.rows, cols = qp.cols;
  DSV4_CHECK_IN("gptq", codes.size() == static_cast<size_t>(rows * cols),
                "%zu codes for weight [%lld, %lld]", codes.size(), static_cast<long long>(rows),
                static_cast<long long>(cols));
  DSV4_CHECK_IN("gptq", g_idx.empty() || g_idx.size() == static_cast<size_t>(cols),
                "g_idx has %zu entries for %lld columns", g_idx.size(),
                static_cast<long long>(cols));
  std::vector<float> out(codes.size());
  const CellArgs ca = cell_args(args);
  for (int64_t c = 0; c < cols; ++c) {
    const int64_t sc = g_idx.empty() ? qp.scale_col(args, c) : g_idx[static_cast<size_t>(c)];
    DSV4_CHECK_IN("gptq", sc >= 0 && sc < qp.scale_cols, "g_idx[%lld] = %lld out of [0, %lld)",
                  static_cast<long long>(c), static_cast<long long>(sc),
                  static_cast<long long>(qp.scale_cols));
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t cell = qp.scale_row(args, r) * qp.scale_cols + sc;
      const float zp = qp.zero_point[static_cast<size_t>(cell)];
      out[r * cols + c] = dequant_value(ca, codes[r * cols + c], qparams_effective_scale(qp, cell), zp);
    }
  }
  return out;
}

std::string gptq_cuda_unsupported(const QuantArgs& args, const GptqOptions& opts) {
  if (args.type != QuantType::kInt) return "the GPU sweep writes integer codes only";
  if (args.strategy != Strategy::kChannel && args.strategy != Strategy::kGroup && args.strategy != Strategy::kTensor) {
    return "the GPU sweep takes channel, group or tensor scales";
  }
  if (opts.qparams != QParamsTiming::kUpfront) return "lazy qparams run on the CPU";
  if (opts.actorder == ActOrder::kGroup) return "act-order group runs on the CPU";
  if (opts.block_size > 128) return "GPU sweep blocks are at most 128 columns";
  if (opts.scale_search != ScaleSearch::kObserver) return "the Hessian-weighted scale search runs on the CPU";
  if (opts.refine_passes > 0) return "the coordinate-descent refinement runs on the CPU";
  if (opts.asymmetric) return "GPTAQ runs on the CPU";
  return {};
}

}  // namespace dsv4::quant

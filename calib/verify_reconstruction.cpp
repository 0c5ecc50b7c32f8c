// verify_reconstruction.cpp: the `reconstruction` check (verify.h): per quantized module, the
// relative error ‖deq − W‖/‖W‖ of the artifact's dequantized weight against the decoded source
// must stay within verify_reconstruction_bound, or a multiple of RTN's error on the same weight
// (0 for an exact FP8 re-encode); the worst module of each family goes to the check's info lines.
#include "calib/verify_check.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "calib/artifact_decode.h"
#include "calib/module_solve.h"
#include "common/check.h"
#include "common/parallel.h"
#include "model/block_weights.h"
#include "model/inventory.h"
#include "quant/quantizer.h"

namespace dsv4::calib::verify_detail {

namespace {

// The FP8 re-encode keeps the source codes and power-of-two scales: its dequantized weight is
// the source decode exactly (module_solve.h: QuantizationModifier only, e8m0 source scales).
bool module_is_exact(const PlannedModule& m, const Checkpoint& src) {
  if (m.scheme->kind != ModifierKind::kQuantization) return false;
  if (module_data_free_method(m) != SolveMethod::kFp8Reencode) return false;
  const std::string scale = m.names.release + ".scale";
  return src.contains(scale) && src.info(scale).dtype == DType::kF8E8M0;
}

// One sampled module's numbers, computed in parallel, judged afterwards in module order (so the
// examples and the worst module do not depend on the thread count).
struct Recon {
  double rel = 0.0;      // ‖deq − W‖/‖W‖
  double rtn_rel = -1;   // the same for RTN of W (computed only when rel exceeds the table bound)
  bool exact_ok = true;  // deq == W bit for bit
  std::string error;     // decode failure
};

double rel_error(const std::vector<float>& q, const std::vector<float>& w) {
  double num = 0, den = 0;
  for (size_t k = 0; k < w.size(); ++k) {
    const double diff = static_cast<double>(q[k]) - w[k];
    num += diff * diff;
    den += static_cast<double>(w[k]) * w[k];
  }
  return den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

}  // namespace

void reconstruction_check(const Expected& e, const Checkpoint& art, const Checkpoint& src, const VerifyOptions& o,
                          VerifyCheck& c) {
  std::vector<const PlannedModule*> all;
  for (const PlannedModule& m : e.plan.modules) {
    if (m.quantized()) all.push_back(&m);
  }
  const std::vector<size_t> pick = sample_indices(all.size(), o.reconstruction_sample);
  std::vector<Recon> res(pick.size());
  std::vector<char> exact(pick.size());
  parallel_for(pick.size(), o.threads, [&](size_t i) {
    const PlannedModule& m = *all[pick[i]];
    try {
      const quant::QuantArgs& args = m.scheme->scheme.weights;
      exact[i] = module_is_exact(m, src);
      const std::vector<float> w = model::linear_load(src, e.config, m.names.release, m.rows, m.cols).w;
      const std::vector<float> d = artifact_linear_decode(art, m.names.release, m.rows, m.cols);
      res[i].rel = rel_error(d, w);
      res[i].exact_ok = std::equal(d.begin(), d.end(), w.begin());
      if (!exact[i] && !(res[i].rel <= verify_reconstruction_bound(args))) {
        res[i].rtn_rel = rel_error(quant::quantizer_rtn(args, w.data(), m.rows, m.cols).dequant, w);
      }
    } catch (const std::exception& ex) {
      res[i].error = clip(ex.what(), 300);
    }
  });
  struct Worst {
    int64_t count = 0;
    double rel = -1, bound = 0;
    std::string module;
  };
  std::map<std::string, Worst> families;
  double worst = -1;
  std::string worst_module;
  for (size_t i = 0; i < pick.size(); ++i) {
    const PlannedModule& m = *all[pick[i]];
    const std::string& name = m.names.release;
    if (!res[i].error.empty()) {
      note_fail(c, name + ": " + res[i].error);
      continue;
    }
    const quant::QuantArgs& args = m.scheme->scheme.weights;
    const double factor = m.scheme->gptq_solved() ? kVerifyGptqRtnFactor
                                                                                : kVerifyDataFreeRtnFactor;
    const double bound = exact[i] ? 0.0 : std::max(verify_reconstruction_bound(args), factor * res[i].rtn_rel);
    Worst& f = families[model::tensor_family(name)];
    ++f.count;
    if (res[i].rel > f.rel) f = {f.count, res[i].rel, bound, name};
    if (res[i].rel > worst) worst = res[i].rel, worst_module = name;
    if (exact[i] && !res[i].exact_ok) {
      note_fail(c, strfmt("%s: exact FP8 re-encode differs from the decoded source (rel %.3e)", name.c_str(),
                          res[i].rel));
    } else if (!(res[i].rel <= bound)) {
      note_fail(c, strfmt("%s: rel error %.4f > bound %.4f (RTN %.4f; %s)", name.c_str(), res[i].rel, bound,
                          res[i].rtn_rel, args.to_string().c_str()));
    } else {
      note_ok(c);
    }
  }
  for (const auto& [family, f] : families) {
    c.info.push_back(strfmt("%s: %lld modules, worst %.4f (%s), bound %.4f", family.c_str(),
                            ll(f.count), f.rel, f.module.c_str(), f.bound));
  }
  finish(c, all.empty() ? std::string("no quantized modules")
                        : strfmt("%zu of %zu quantized modules, worst rel error %.4f (%s)", pick.size(), all.size(),
                                 worst, worst_module.c_str()));
}

}  // namespace dsv4::calib::verify_detail

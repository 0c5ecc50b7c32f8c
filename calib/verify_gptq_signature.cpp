// verify_gptq_signature.cpp: the `gptq_signature` check (verify.h), a differential one: a sample of
// the GPTQ modules (RTN fallbacks recorded in calib_manifest.json skipped) is compared with
// round-to-nearest of the same decoded source weight; at least one must differ from RTN by half a
// step or more in > 0.1% of its elements, else the artifact looks like RTN, not GPTQ. For the
// turboquant profile "RTN" is its data-free quantizer, and an element differs when its codebook
// index does.
#include "calib/verify_check.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "calib/artifact_decode.h"
#include "common/check.h"
#include "common/parallel.h"
#include "model/block_weights.h"
#include "quant/quantizer.h"
#include "quant/turboquant.h"

namespace dsv4::calib::verify_detail {

using nlohmann::ordered_json;

namespace {

// GPTQ signature: a module "differs from RTN" when more than this fraction of its elements does.
constexpr double kGptqMinDifferingFraction = 1e-3;

// Module -> fallback name, from the manifest's per-layer module lists.
std::map<std::string, std::string> manifest_fallbacks(const std::optional<ordered_json>& m) {
  std::map<std::string, std::string> out;
  if (!m || !m->contains("layers") || !(*m)["layers"].is_array()) return out;
  for (const auto& l : (*m)["layers"]) {
    if (!l.is_object() || !l.contains("modules") || !l["modules"].is_array()) continue;
    for (const auto& x : l["modules"]) {
      if (!x.is_object() || !x.contains("module") || !x["module"].is_string()) continue;
      std::string fb = x.contains("fallback") && x["fallback"].is_string() ? x["fallback"].get<std::string>() : "none";
      if (x.contains("method") && x["method"].is_string() && x["method"] != "gptq") {
        fb = "method " + x["method"].get<std::string>();
      }
      out[x["module"].get<std::string>()] = fb;
    }
  }
  return out;
}

// The fraction of elements differing from RTN by half a step or more.
double rtn_differing_fraction(const Checkpoint& art, const PlannedModule& m, const std::vector<float>& w) {
  const quant::QuantArgs& args = m.scheme->scheme.weights;
  const quant::RtnResult rtn = quant::quantizer_rtn(args, w.data(), m.rows, m.cols);
  const std::vector<float> d = artifact_linear_decode(art, m.names.release, m.rows, m.cols);
  // A different code moves the value by a whole step; half a step separates that from
  // rounding noise in the scale dtype.
  int64_t differ = 0;
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t k = 0; k < m.cols; ++k) {
      const size_t x = static_cast<size_t>(r * m.cols + k);
      const float step = std::fabs(quant::qparams_effective_scale(rtn.qparams, rtn.qparams.index(args, r, k)));
      if (std::fabs(d[x] - rtn.dequant[x]) > 0.5f * step) ++differ;
    }
  }
  return static_cast<double>(differ) / static_cast<double>(w.size());
}

// turboquant: the stored codebook indices against the data-free quantizer's (padding included).
double turboquant_differing_fraction(const Checkpoint& art, const PlannedModule& m, const std::vector<float>& w) {
  const quant::QuantArgs& args = m.scheme->scheme.weights;
  const quant::TqCodec codec(args.num_bits, static_cast<int>(args.group_size));
  const std::vector<int32_t> rtn = quant::tq_quantize(codec, w.data(), m.rows, m.cols).indices;
  const std::string name = m.names.release + ".weight.tq_packed";
  const TensorInfo& info = art.info(name);
  const int64_t groups = m.rows * quant::tq_groups_per_row(m.cols, codec.group_size());
  DSV4_USER_CHECK("verify", info.dtype == DType::kU8 && info.shape == std::vector<int64_t>({groups, codec.group_bytes()}),
                  "%s: %s %s, expected U8 [%lld, %d]", name.c_str(), std::string(dtype_name(info.dtype)).c_str(),
                  shape_string(info.shape).c_str(), static_cast<long long>(groups), codec.group_bytes());
  const auto bytes = art.bytes(name);
  const std::vector<int32_t> codes = quant::tq_unpack(codec, reinterpret_cast<const uint8_t*>(bytes.data()), groups);
  int64_t differ = 0;
  for (size_t i = 0; i < codes.size(); ++i) differ += codes[i] != rtn[i];
  return static_cast<double>(differ) / static_cast<double>(codes.size());
}

}  // namespace

void gptq_signature_check(const Expected& e, const Checkpoint& art, const Checkpoint& src, const VerifyOptions& o,
                          VerifyCheck& c) {
  std::vector<const PlannedModule*> gptq;
  int64_t skipped = 0;
  const std::map<std::string, std::string> fallbacks = manifest_fallbacks(e.manifest);
  for (const PlannedModule& m : e.plan.modules) {
    if (!m.quantized() || !m.scheme->gptq_solved()) continue;
    const auto f = fallbacks.find(m.names.release);
    // RTN fallbacks (no tokens, Cholesky failure) are RTN by design; skip them.
    if (f != fallbacks.end() && (f->second.starts_with("rtn") || f->second.starts_with("method "))) {
      ++skipped;
      continue;
    }
    gptq.push_back(&m);
  }
  if (gptq.empty()) {
    if (skipped > 0) note_fail(c, strfmt("all %lld GPTQ modules fell back to RTN (calib_manifest.json)", ll(skipped)));
    finish(c, skipped ? "no GPTQ module to test" : "no GPTQ modules in the recipe");
    return;
  }
  const std::vector<size_t> pick = sample_indices(gptq.size(), o.gptq_sample);
  std::vector<double> frac(pick.size(), -1.0);
  std::vector<std::string> err(pick.size());
  parallel_for(pick.size(), o.threads, [&](size_t i) {
    const PlannedModule& m = *gptq[pick[i]];
    try {
      const std::vector<float> w = model::linear_load(src, e.config, m.names.release, m.rows, m.cols).w;
      frac[i] = m.scheme->profile == OutputProfile::kTurboquant ? turboquant_differing_fraction(art, m, w)
                                                                : rtn_differing_fraction(art, m, w);
    } catch (const std::exception& ex) {
      err[i] = clip(ex.what(), 300);
    }
  });
  double best = -1;
  std::string best_module;
  int differing = 0;
  std::vector<std::string> lines;
  for (size_t i = 0; i < pick.size(); ++i) {
    const std::string& name = gptq[pick[i]]->names.release;
    if (!err[i].empty()) {
      note_fail(c, name + ": " + err[i]);
      continue;
    }
    note_ok(c);
    if (frac[i] > kGptqMinDifferingFraction) ++differing;
    if (frac[i] > best) best = frac[i], best_module = name;
    lines.push_back(strfmt("%s: %.2f%% of elements differ from RTN", name.c_str(), 100.0 * frac[i]));
  }
  if (differing == 0 && c.failed == 0) {
    ++c.failed;
    for (size_t i = 0; i < lines.size() && c.examples.size() < kMaxExamples; ++i) c.examples.push_back(lines[i]);
    finish(c, strfmt("artifact looks like RTN, not GPTQ: none of %zu sampled GPTQ modules differs from RTN in > %.1f%% "
                     "of its elements",
                     pick.size(), 100.0 * kGptqMinDifferingFraction));
    return;
  }
  finish(c, strfmt("%d of %zu sampled GPTQ modules differ from RTN (most: %.2f%%, %s); %lld RTN fallbacks skipped",
                   differing, pick.size(), 100.0 * std::max(best, 0.0), best_module.c_str(),
                   ll(skipped)));
}

}  // namespace dsv4::calib::verify_detail

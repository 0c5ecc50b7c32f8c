// verify.cpp: verify_artifact (verify.h). The expected artifact is re-derived from the artifact's
// recipe.yaml and the source (plan + layout), then every tensor is compared against what its
// origin says it must be: byte copies, exact BF16 decodes, or quantized modules whose dequantized
// weight must reconstruct the source within a bound (and, for GPTQ, differ from RTN). The checks
// live in verify_*.cpp (verify_check.h lists them); this file runs them in report order and
// formats the report.
#include "calib/verify.h"

#include <algorithm>
#include <memory>

#include "calib/artifact_decode.h"
#include "calib/verify_check.h"
#include "common/check.h"
#include "common/parallel.h"
#include "model/inventory.h"

namespace dsv4::calib {

namespace verify_detail {

std::vector<size_t> sample_indices(size_t n, int k) {
  std::vector<size_t> out;
  if (k <= 0 || static_cast<size_t>(k) >= n) {
    for (size_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  for (size_t i = 0; i < static_cast<size_t>(k); ++i) out.push_back(i * n / static_cast<size_t>(k));
  return out;
}

}  // namespace verify_detail

using nlohmann::ordered_json;
using namespace verify_detail;

double verify_reconstruction_bound(const quant::QuantArgs& a) {
  if (a.type == quant::QuantType::kFloat) return a.num_bits >= 8 ? 0.1 : 0.25;
  if (a.num_bits >= 8) return 0.05;
  if (a.num_bits >= 5) return 0.15;
  if (a.num_bits == 4) return 0.25;
  if (a.num_bits == 3) return 0.4;
  return 0.8;
}

bool VerifyReport::ok() const {
  return !checks.empty() && std::all_of(checks.begin(), checks.end(), [](const VerifyCheck& c) { return c.passed; });
}

const VerifyCheck* VerifyReport::find(const std::string& name) const {
  for (const VerifyCheck& c : checks) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

VerifyReport verify_artifact(const std::string& art_dir, const std::string& src_dir, const VerifyOptions& o) {
  VerifyReport report;
  report.artifact = art_dir;
  report.source = src_dir;
  // The source must be readable: without it nothing can be verified (an error, not a FAIL).
  Expected e;
  e.config = checkpoint_config_load(src_dir);
  const Checkpoint src = Checkpoint::open(src_dir);

  std::unique_ptr<Checkpoint> art;
  std::string art_error, recipe_error;
  try {
    art = std::make_unique<Checkpoint>(Checkpoint::open(art_dir));
  } catch (const std::exception& ex) {
    art_error = ex.what();
  }
  bool recipe_ok = true;
  try {
    e.recipe = recipe_load(art_dir + "/recipe.yaml");
  } catch (const std::exception& ex) {
    recipe_ok = false;
    recipe_error = ex.what();
  }
  VerifyCheck files{"files"};
  if (!files_check(art_dir, art.get(), art_error, src_dir, e, recipe_ok, recipe_error, files)) {
    report.checks.push_back(std::move(files));
    return report;
  }
  report.checks.push_back(std::move(files));
  const int threads = parallel_threads(o.threads);
  VerifyCheck finite{"finite"};
  const bool source_finite = finite_check(*art, src, threads, finite);
  report.checks.push_back(std::move(finite));
  if (!source_finite) return report;

  // What the artifact must hold, from its own recipe and the source.
  VerifyCheck plan{"plan"};
  try {
    e.plan = module_plan_build(e.recipe, e.config, model::inventory_mtp_stages(src.names()));
    e.layout = artifact_layout(e.recipe, e.plan, e.config, src);
  } catch (const std::exception& ex) {
    note_fail(plan, clip(ex.what(), 400));
    report.checks.push_back(finish(plan, "recipe.yaml does not plan on --source"));
    return report;
  }
  plan.checked = static_cast<int64_t>(e.plan.modules.size());
  report.checks.push_back(finish(plan, strfmt("%zu Linear modules planned, %zu tensors expected in %d segments",
                                              e.plan.modules.size(), e.layout.tensors.size(),
                                              e.layout.num_segments)));

  VerifyOptions opts = o;
  opts.threads = threads;

  VerifyCheck identity{"source_identity"}, keys{"key_set"}, scales{"no_source_scale"}, mtp_q{"mtp_unquantized"},
      config{"config"}, recon{"reconstruction"}, gptq{"gptq_signature"};
  CopyChecks copies;
  source_identity_check(e, src, identity);
  key_set_check(e, *art, report, keys);
  source_scale_check(e, *art, scales);
  copies_check(e, *art, src, threads, copies);
  mtp_unquantized_check(e, *art, mtp_q);
  config_check(e, art_dir, src_dir, config);
  reconstruction_check(e, *art, src, opts, recon);
  gptq_signature_check(e, *art, src, opts, gptq);
  for (VerifyCheck* c : {&identity, &keys, &scales, &copies.fp32, &copies.copies, &copies.decoded, &copies.mtp,
                         &copies.aliases, &mtp_q, &config, &recon, &gptq}) {
    report.checks.push_back(std::move(*c));
  }
  return report;
}

std::string verify_report_text(const VerifyReport& r) {
  std::string out;
  int failed = 0;
  for (const VerifyCheck& c : r.checks) {
    failed += c.passed ? 0 : 1;
    out += strfmt("%s %s: checked %lld, failed %lld; %s\n", c.passed ? "PASS" : "FAIL", c.name.c_str(),
                  ll(c.checked), ll(c.failed), c.detail.c_str());
    if (!c.passed) {
      for (const std::string& x : c.examples) out += "    " + x + "\n";
      if (c.failed > static_cast<int64_t>(c.examples.size())) {
        out += strfmt("    ... and %lld more\n", ll(c.failed - static_cast<int64_t>(c.examples.size())));
      }
    }
    for (const std::string& x : c.info) out += "    " + x + "\n";
  }
  out += r.ok() ? std::string("verify: OK\n") : strfmt("verify: FAILED (%d checks)\n", std::max(failed, 1));
  return out;
}

ordered_json verify_report_json(const VerifyReport& r) {
  ordered_json j;
  j["artifact"] = r.artifact;
  j["source"] = r.source;
  j["ok"] = r.ok();
  ordered_json checks = ordered_json::array();
  for (const VerifyCheck& c : r.checks) {
    checks.push_back({{"name", c.name}, {"passed", c.passed}, {"checked", c.checked}, {"failed", c.failed},
                      {"detail", c.detail}, {"examples", c.examples}, {"info", c.info}});
  }
  j["checks"] = std::move(checks);
  ordered_json fam = ordered_json::object();
  for (const auto& [f, n] : r.families) fam[f] = n;
  j["families"] = std::move(fam);
  return j;
}

}  // namespace dsv4::calib

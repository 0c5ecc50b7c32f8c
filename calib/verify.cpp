// verify.cpp: the artifact checks of verify.h. The expected artifact is re-derived from the
// artifact's recipe.yaml and the source (plan + layout), then every tensor is compared against
// what its origin says it must be: byte copies, exact BF16 decodes, or quantized modules whose
// dequantized weight must reconstruct the source within a bound (and, for GPTQ, differ from RTN).
#include "calib/verify.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "calib/artifact_config.h"
#include "calib/artifact_decode.h"
#include "calib/artifact_layout.h"
#include "calib/artifact_writer.h"
#include "calib/calibrate.h"
#include "calib/module_plan.h"
#include "calib/module_solve.h"
#include "common/check.h"
#include "common/codec.h"
#include "common/fs.h"
#include "common/parallel.h"
#include "model/block_weights.h"
#include "model/inventory.h"
#include "model/weight_decode.h"
#include "quant/quantizer.h"

namespace dsv4::calib {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr size_t kMaxExamples = 10;
// GPTQ signature: a module "differs from RTN" when more than this fraction of its elements does.
constexpr double kGptqMinDifferingFraction = 1e-3;

// ---- check bookkeeping ----

void note_ok(VerifyCheck& c) { ++c.checked; }

void note_fail(VerifyCheck& c, std::string what) {
  ++c.checked;
  ++c.failed;
  if (c.examples.size() < kMaxExamples) c.examples.push_back(std::move(what));
}

long long ll(int64_t v) { return static_cast<long long>(v); }
int64_t passed(const VerifyCheck& c) { return c.checked - c.failed; }

VerifyCheck& finish(VerifyCheck& c, std::string detail) {
  c.passed = c.failed == 0;
  c.detail = std::move(detail);
  return c;
}

std::string clip(std::string s, size_t n = 80) {
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

std::string spec_string(DType d, const std::vector<int64_t>& shape) {
  return std::string(dtype_name(d)) + " " + shape_string(shape);
}

// Evenly spread indices: all of [0, n) when k <= 0 or k >= n.
std::vector<size_t> sample_indices(size_t n, int k) {
  std::vector<size_t> out;
  if (k <= 0 || static_cast<size_t>(k) >= n) {
    for (size_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  for (size_t i = 0; i < static_cast<size_t>(k); ++i) out.push_back(i * n / static_cast<size_t>(k));
  return out;
}

// ---- what the artifact should be ----

struct Expected {
  Recipe recipe;
  model::ModelConfig config;  // the source's
  ModulePlan plan;
  ArtifactLayout layout;
  std::optional<ordered_json> manifest;
};

// The FP8 re-encode keeps the source codes and power-of-two scales: its dequantized weight is
// the source decode exactly (module_solve.h: QuantizationModifier only, e8m0 source scales).
bool module_is_exact(const PlannedModule& m, const Checkpoint& src) {
  if (m.scheme->kind != ModifierKind::kQuantization) return false;
  if (module_data_free_method(m) != SolveMethod::kFp8Reencode) return false;
  const std::string scale = m.names.release + ".scale";
  return src.contains(scale) && src.info(scale).dtype == DType::kF8E8M0;
}

// ---- files / source identity ----

// Reads the side files and the shards. Returns false when nothing else can be checked.
bool check_files(const std::string& art_dir, const Checkpoint* art, const std::string& art_error,
                 const std::string& src_dir, Expected& e, bool recipe_ok, const std::string& recipe_error,
                 VerifyCheck& c) {
  bool fatal = false;
  try {
    const json cfg = json::parse(read_file(art_dir + "/config.json"));
    if (cfg.is_object()) {
      note_ok(c);
    } else {
      note_fail(c, "config.json: not a JSON object");
      fatal = true;
    }
  } catch (const std::exception& ex) {
    note_fail(c, "config.json: " + clip(ex.what(), 200));
    fatal = true;
  }
  if (!art) {
    note_fail(c, "shards: " + clip(art_error, 300));
    fatal = true;
  } else {
    note_ok(c);
    if (!fs::exists(art_dir + "/model.safetensors.index.json")) {
      note_fail(c, "model.safetensors.index.json: missing");
    } else if (art->index_total_size() != art->tensor_bytes()) {
      note_fail(c, strfmt("model.safetensors.index.json: total_size %llu, tensors hold %llu bytes",
                          static_cast<unsigned long long>(art->index_total_size()),
                          static_cast<unsigned long long>(art->tensor_bytes())));
    } else {
      note_ok(c);
    }
    // A shard the index does not list, or an AtomicFile temporary ("<path>.tmp.<pid>"), is never
    // loaded, but it means the directory is not (only) the artifact one finished run wrote.
    const std::vector<std::string> listed = art->shard_files();
    for (const fs::directory_entry& f : fs::directory_iterator(art_dir)) {
      const std::string n = f.path().filename().string();
      const bool shard_like = n.ends_with(".safetensors") || n.find(".tmp.") != std::string::npos;
      if (shard_like && !std::count(listed.begin(), listed.end(), n)) note_fail(c, n + ": stray (not in the index)");
    }
  }
  if (recipe_ok) {
    note_ok(c);
  } else {
    note_fail(c, "recipe.yaml: " + clip(recipe_error, 300));
    fatal = true;
  }
  try {
    ordered_json m = ordered_json::parse(read_file(art_dir + "/calib_manifest.json"));
    if (!m.is_object()) throw std::runtime_error("not a JSON object");
    e.manifest = std::move(m);
    note_ok(c);
  } catch (const std::exception& ex) {
    note_fail(c, "calib_manifest.json: " + clip(ex.what(), 200));
  }
  if (recipe_ok && e.recipe.output.copy_tokenizer) {
    for (const std::string& f : tokenizer_file_names()) {
      if (!fs::exists(src_dir + "/" + f)) continue;
      if (!fs::exists(art_dir + "/" + f)) note_fail(c, f + ": missing (the source has it)");
      else if (read_file(art_dir + "/" + f) != read_file(src_dir + "/" + f)) note_fail(c, f + ": differs");
      else note_ok(c);
    }
  }
  finish(c, art ? strfmt("%zu tensors in %zu shard(s)", art->num_tensors(), art->shard_files().size())
                : std::string("the shards do not open"));
  return !fatal;
}

void check_source_identity(const Expected& e, const Checkpoint& src, VerifyCheck& c) {
  const json* recorded = nullptr;
  json rec;
  if (e.manifest && e.manifest->contains("source") && (*e.manifest)["source"].contains("files")) {
    rec = json::parse((*e.manifest)["source"]["files"].dump());
    recorded = &rec;
  }
  if (!recorded || !recorded->is_object()) {
    note_fail(c, "calib_manifest.json has no source.files");
    finish(c, "no recorded source identity");
    return;
  }
  const json actual = json::parse(checkpoint_identity(src).dump());
  for (const auto& [file, id] : actual.items()) {
    if (!recorded->contains(file)) {
      note_fail(c, file + ": in --source, not in the manifest");
    } else if ((*recorded)[file] != id) {
      note_fail(c, file + ": recorded " + clip((*recorded)[file].dump()) + ", --source has " + clip(id.dump()));
    } else {
      note_ok(c);
    }
  }
  for (const auto& [file, id] : recorded->items()) {
    if (!actual.contains(file)) note_fail(c, file + ": in the manifest, not in --source");
  }
  finish(c, c.failed ? "the artifact was made from another source" : strfmt("%lld files match", ll(c.checked)));
}

// ---- key set ----

void check_key_set(const Expected& e, const Checkpoint& art, VerifyReport& report, VerifyCheck& c) {
  std::set<std::string> expected;
  for (const OutputTensor& t : e.layout.tensors) {
    expected.insert(t.name);
    if (!art.contains(t.name)) {
      note_fail(c, t.name + ": missing (" + std::string(output_origin_name(t.origin)) + ")");
      continue;
    }
    const TensorInfo& i = art.info(t.name);
    if (i.dtype != t.dtype || i.shape != t.shape) {
      note_fail(c, t.name + ": " + spec_string(i.dtype, i.shape) + ", expected " + spec_string(t.dtype, t.shape));
    } else {
      note_ok(c);
    }
  }
  std::map<std::string, int64_t> families;
  for (const std::string& n : art.names()) {
    ++families[model::tensor_family(n)];
    if (!expected.count(n)) note_fail(c, n + ": not in the layout (extra)");
  }
  report.families.assign(families.begin(), families.end());
  finish(c, strfmt("%zu tensors expected, %zu present in %zu families", e.layout.tensors.size(), art.num_tensors(),
                   families.size()));
}

void check_no_source_scale(const Checkpoint& art, VerifyCheck& c) {
  for (const std::string& n : art.names()) {
    if (n.ends_with(".scale") || n.ends_with("_scale_inv")) note_fail(c, n + ": source-style scale tensor");
    else note_ok(c);
  }
  finish(c, c.failed ? "source scales leaked into the artifact" : "no .scale / weight_scale_inv tensor");
}

// ---- byte and decode comparisons ----

// Compares one non-quantized layout tensor with what its origin says it must be; empty: equal.
std::string compare_tensor(const OutputTensor& t, const Checkpoint& art, const Checkpoint& src, int fp8_block) {
  if (!art.contains(t.name)) return t.name + ": missing";
  const TensorInfo& i = art.info(t.name);
  if (i.dtype != t.dtype || i.shape != t.shape) {
    return t.name + ": " + spec_string(i.dtype, i.shape) + ", expected " + spec_string(t.dtype, t.shape);
  }
  const auto a = art.bytes(t.name);
  if (t.origin == OutputOrigin::kDecodeBf16) {
    const std::vector<float> w = model::weight_decode_linear(src, t.source, fp8_block);
    if (a.size() != w.size() * 2) return t.name + ": byte size does not match the decoded source";
    int64_t bad = 0, first = -1;
    for (size_t k = 0; k < w.size(); ++k) {
      uint16_t v;
      std::memcpy(&v, a.data() + 2 * k, 2);
      if (v != bf16_encode(w[k])) {
        if (first < 0) first = static_cast<int64_t>(k);
        ++bad;
      }
    }
    if (bad == 0) return "";
    uint16_t v;
    std::memcpy(&v, a.data() + 2 * first, 2);
    return strfmt("%s: %lld of %zu elements differ from bf16(decode(%s)) (first at %lld: %g, expected %g)",
                  t.name.c_str(), ll(bad), w.size(), t.source.c_str(),
                  ll(first), bf16_decode(v), bf16_decode(bf16_encode(w[first])));
  }
  const auto s = src.bytes(t.source);
  if (s.size() != a.size()) return t.name + ": byte size differs from " + t.source;
  if (std::memcmp(a.data(), s.data(), a.size()) == 0) return "";
  const size_t es = std::max<size_t>(1, dtype_size(t.dtype));
  int64_t bad = 0, first = -1;
  for (size_t k = 0; k < a.size(); k += es) {
    if (std::memcmp(a.data() + k, s.data() + k, es) != 0) {
      if (first < 0) first = static_cast<int64_t>(k / es);
      ++bad;
    }
  }
  return strfmt("%s: %lld of %zu elements differ from source %s (first at %lld)", t.name.c_str(),
                ll(bad), a.size() / es, t.source.c_str(), ll(first));
}

struct CopyChecks {
  VerifyCheck fp32{"fp32_bit_exact"}, copies{"copies_bit_exact"}, decoded{"decoded_bf16_exact"},
      mtp{"mtp_source_exact"}, aliases{"mtp_aliases"};
};

void check_copies(const Expected& e, const Checkpoint& art, const Checkpoint& src, int threads, CopyChecks& cc) {
  std::vector<const OutputTensor*> todo;
  for (const OutputTensor& t : e.layout.tensors) {
    if (t.origin != OutputOrigin::kQuantized) todo.push_back(&t);
  }
  std::vector<std::string> result(todo.size());
  parallel_for(todo.size(), threads, [&](size_t i) {
    try {
      result[i] = compare_tensor(*todo[i], art, src, e.config.fp8_block);
    } catch (const std::exception& ex) {
      result[i] = todo[i]->name + ": " + clip(ex.what(), 200);
    }
  });
  for (size_t i = 0; i < todo.size(); ++i) {
    const OutputTensor& t = *todo[i];
    const bool mtp = t.segment > e.config.num_layers;
    std::vector<VerifyCheck*> into;
    if (t.origin == OutputOrigin::kAlias) {
      into.push_back(&cc.aliases);
    } else {
      if (t.origin == OutputOrigin::kCopy && t.dtype == DType::kF32) into.push_back(&cc.fp32);
      if (mtp) into.push_back(&cc.mtp);
      else if (t.origin == OutputOrigin::kDecodeBf16) into.push_back(&cc.decoded);
      else if (t.dtype != DType::kF32) into.push_back(&cc.copies);
    }
    for (VerifyCheck* c : into) result[i].empty() ? note_ok(*c) : note_fail(*c, result[i]);
  }
  finish(cc.fp32, strfmt("%lld FP32 tensors byte-identical to the source", ll(passed(cc.fp32))));
  finish(cc.copies, strfmt("%lld kept tensors byte-identical", ll(passed(cc.copies))));
  finish(cc.decoded, strfmt("%lld unquantized FP8/MXFP4 Linears equal to their exact BF16 decode",
                            ll(passed(cc.decoded))));
  finish(cc.mtp, strfmt("%lld MTP tensors equal to the source (bytes or exact decode)",
                        ll(passed(cc.mtp))));
  const bool want_aliases = e.recipe.output.mtp_aliases && cc.aliases.checked == 0 &&
                            std::any_of(e.layout.tensors.begin(), e.layout.tensors.end(),
                                        [&](const OutputTensor& t) { return t.segment > e.config.num_layers; });
  if (want_aliases) note_fail(cc.aliases, "output.mtp_aliases is set but the layout has no alias");
  finish(cc.aliases, e.recipe.output.mtp_aliases
                         ? strfmt("%lld aliases byte-identical to head.weight / embed.weight",
                                  ll(passed(cc.aliases)))
                         : std::string("output.mtp_aliases is off"));
}

void check_mtp_unquantized(const Expected& e, const Checkpoint& art, VerifyCheck& c) {
  static const std::set<std::string> kQuantLeaves = {
      "weight_packed", "weight_scale",  "weight_global_scale", "weight_zero_point", "weight_g_idx",
      "weight_shape",  "input_scale",   "input_global_scale",  "input_zero_point",  "scale"};
  for (const std::string& n : art.names()) {
    if (!n.starts_with("mtp.")) continue;
    const std::string leaf = n.substr(n.rfind('.') + 1);
    const DType d = art.info(n).dtype;
    if (kQuantLeaves.count(leaf)) note_fail(c, n + ": quantization tensor under mtp.");
    else if (leaf == "weight" && d != DType::kBF16 && d != DType::kF32)
      note_fail(c, n + ": " + std::string(dtype_name(d)) + " (expected BF16 or F32)");
    else note_ok(c);
  }
  for (const PlannedModule& m : e.plan.modules) {
    if (m.layer >= e.config.num_layers && m.quantized()) {
      note_fail(c, m.names.release + ": the recipe quantizes it (" + m.scheme->key_path + ")");
    }
  }
  finish(c, c.failed ? "the MTP block is quantized" : strfmt("%lld MTP tensors, none quantized", ll(c.checked)));
}

// ---- config.json ----

void check_config(const Expected& e, const std::string& art_dir, const std::string& src_dir, VerifyCheck& c) {
  ordered_json a, s;
  try {
    a = ordered_json::parse(read_file(art_dir + "/config.json"));
    s = ordered_json::parse(read_file(src_dir + "/config.json"));
  } catch (const std::exception& ex) {
    note_fail(c, clip(ex.what(), 200));
    finish(c, "config.json does not parse");
    return;
  }
  for (const auto& [key, value] : s.items()) {
    if (key == "quantization_config") continue;
    if (!a.contains(key)) note_fail(c, key + ": missing (the source has " + clip(value.dump()) + ")");
    else if (a[key] != value) note_fail(c, key + ": " + clip(a[key].dump()) + ", the source has " + clip(value.dump()));
    else note_ok(c);
  }
  for (const auto& [key, value] : a.items()) {
    if (key != "quantization_config" && !s.contains(key)) note_fail(c, key + ": not in the source config");
  }
  if (!a.contains("quantization_config") || !a["quantization_config"].is_object()) {
    note_fail(c, "quantization_config: missing");
    finish(c, "no quantization_config");
    return;
  }
  const ordered_json& q = a["quantization_config"];
  const auto expect_str = [&](const char* key, const std::string& want) {
    if (!q.contains(key) || !q[key].is_string()) note_fail(c, strfmt("quantization_config.%s: missing", key));
    else if (!want.empty() && q[key].get<std::string>() != want)
      note_fail(c, strfmt("quantization_config.%s: %s, expected \"%s\"", key, q[key].dump().c_str(), want.c_str()));
    else note_ok(c);
  };
  expect_str("quant_method", "compressed-tensors");
  expect_str("quantization_status", "compressed");
  expect_str("scale_fmt", "");
  std::set<std::string> formats;
  if (!q.contains("config_groups") || !q["config_groups"].is_object() || q["config_groups"].empty()) {
    note_fail(c, "quantization_config.config_groups: missing or empty");
  } else {
    for (const auto& [name, g] : q["config_groups"].items()) {
      if (!g.is_object() || !g.contains("format") || !g["format"].is_string()) {
        note_fail(c, "quantization_config.config_groups." + name + ".format: missing");
      } else {
        formats.insert(g["format"].get<std::string>());
        note_ok(c);
      }
    }
  }
  if (!formats.empty()) expect_str("format", formats.size() == 1 ? *formats.begin() : "mixed-precision");
  const std::vector<std::string> bad = artifact_config_check(json::parse(q.dump()), e.recipe, e.plan, e.config);
  for (const std::string& b : bad) note_fail(c, "vLLM resolves " + b);
  c.checked += static_cast<int64_t>(e.plan.modules.size() - std::min(bad.size(), e.plan.modules.size()));
  finish(c, strfmt("%zu source keys, %zu config groups, %zu modules resolved", s.size(),
                   q.contains("config_groups") ? q["config_groups"].size() : size_t{0}, e.plan.modules.size()));
}

// ---- numeric checks on quantized modules ----

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

void check_reconstruction(const Expected& e, const Checkpoint& art, const Checkpoint& src, const VerifyOptions& o,
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

void check_gptq_signature(const Expected& e, const Checkpoint& art, const Checkpoint& src, const VerifyOptions& o,
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
      const quant::QuantArgs& args = m.scheme->scheme.weights;
      const std::vector<float> w = model::linear_load(src, e.config, m.names.release, m.rows, m.cols).w;
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
      frac[i] = static_cast<double>(differ) / static_cast<double>(w.size());
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

}  // namespace

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
  if (!check_files(art_dir, art.get(), art_error, src_dir, e, recipe_ok, recipe_error, files)) {
    report.checks.push_back(std::move(files));
    return report;
  }
  report.checks.push_back(std::move(files));

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

  const int threads = parallel_threads(o.threads);
  VerifyOptions opts = o;
  opts.threads = threads;

  VerifyCheck identity{"source_identity"}, keys{"key_set"}, scales{"no_source_scale"}, mtp_q{"mtp_unquantized"},
      config{"config"}, recon{"reconstruction"}, gptq{"gptq_signature"};
  CopyChecks copies;
  check_source_identity(e, src, identity);
  check_key_set(e, *art, report, keys);
  check_no_source_scale(*art, scales);
  check_copies(e, *art, src, threads, copies);
  check_mtp_unquantized(e, *art, mtp_q);
  check_config(e, art_dir, src_dir, config);
  check_reconstruction(e, *art, src, opts, recon);
  check_gptq_signature(e, *art, src, opts, gptq);
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

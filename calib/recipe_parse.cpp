// recipe_parse.cpp: YAML text -> Recipe (llm-compressor stage/modifier layout plus the dsv4-calib
// sections), every key checked.
#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include "calib/heldout.h"
#include "calib/recipe.h"
#include "calib/recipe_quant_args.h"
#include "calib/yaml_reader.h"
#include "common/byte_size.h"
#include "common/check.h"
#include "common/fs.h"

namespace dsv4::calib {

std::string_view modifier_kind_name(ModifierKind k) {
  return k == ModifierKind::kGptq ? "GPTQModifier" : "QuantizationModifier";
}

bool Recipe::gptaq() const {
  return std::any_of(modifiers.begin(), modifiers.end(),
                     [](const RecipeModifier& m) { return m.kind == ModifierKind::kGptq && m.gptq.asymmetric; });
}

bool Recipe::needs_data() const {
  for (const RecipeModifier& m : modifiers) {
    if (m.kind == ModifierKind::kGptq) return true;
    for (const RecipeGroup& g : m.groups) {
      if (g.scheme.input_activations && quant::activation_needs_calibration(*g.scheme.input_activations)) {
        return true;
      }
    }
  }
  return false;
}

namespace {

// `scheme: NAME` with `targets`, or `scheme: {NAME: [targets], ...}`.
void parse_scheme_key(YamlReader& m, RecipeModifier* out) {
  const YAML::Node s = m.take("scheme");
  const std::vector<std::string> targets = m.get_strings("targets", {"Linear"});
  auto preset = [&](const std::string& name, const std::string& key) {
    const std::vector<std::string> known = quant::quant_scheme_preset_names();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      m.fail(key, "unknown quantization scheme '" + name + "'" + yaml_did_you_mean(name, known) + "; known: " + list);
    }
    return quant::quant_scheme_preset(name);
  };
  if (s.IsScalar()) {
    RecipeGroup g;
    g.name = "group_0";
    g.targets = targets;
    g.scheme = preset(s.Scalar(), "scheme");
    g.key_path = m.key_path("scheme");
    out->groups.push_back(std::move(g));
    return;
  }
  if (!s.IsMap()) m.fail("scheme", "expected a preset name or a mapping {PRESET: [targets]}");
  YamlReader sm(s, m.file(), m.key_path("scheme"));
  for (const std::string& name : sm.keys()) {
    RecipeGroup g;
    g.name = name;
    g.targets = sm.get_strings(name, {});
    if (g.targets.empty()) sm.fail(name, "expected a non-empty list of targets");
    g.scheme = preset(name, "scheme." + name);
    g.key_path = sm.key_path(name);
    out->groups.push_back(std::move(g));
  }
}

void parse_config_groups(YamlReader& m, RecipeModifier* out) {
  YamlReader groups = m.child("config_groups");
  for (const std::string& name : groups.keys()) {
    YamlReader g = groups.child(name);
    RecipeGroup rg;
    rg.name = name;
    rg.key_path = g.path();
    rg.targets = g.get_strings("targets", {});
    if (rg.targets.empty()) g.fail("targets", "expected a non-empty list of targets");
    rg.scheme.name = name;
    std::optional<quant::ActOrder> order;
    if (!g.has("weights")) g.fail("weights", "a config group needs weights");
    YamlReader w = g.child("weights");
    rg.scheme.weights = recipe_weights_parse(w, &order);
    if (g.has("input_activations")) {
      YamlReader a = g.child("input_activations");
      rg.scheme.input_activations = recipe_activations_parse(a);
    } else {
      (void)g.take("input_activations");
    }
    if (g.has("output_activations")) g.fail("output_activations", "output activation quantization is not supported");
    (void)g.take("output_activations");
    const std::string fmt = g.get_string("format", "");
    if (!fmt.empty()) {
      rg.scheme.format = quant::pack_format_from_name(fmt);
      if (!rg.scheme.format) {
        g.fail("format", "unknown format '" + fmt + "' (pack-quantized, float-quantized, int-quantized, "
                         "naive-quantized, nvfp4-pack-quantized, mxfp4-pack-quantized)");
      }
    }
    // The format the writer will use, given or derived: fp4 weights that neither NVFP4 nor MXFP4
    // holds were accepted here and refused by the writer after the whole run (found by tests/fuzz/).
    if (!quant::compressed_module_format_holds(quant::quant_scheme_format(rg.scheme), rg.scheme.weights)) {
      if (rg.scheme.format) g.fail("format", fmt + " cannot hold these weights (" + rg.scheme.weights.to_string() + ")");
      g.fail("weights", "no on-disk format holds these weights (" + rg.scheme.weights.to_string() +
                            "): float4 weights need strategy tensor_group with group_size 16 (nvfp4-pack-quantized) "
                            "or strategy group with group_size 32 and e8m0 scales (mxfp4-pack-quantized)");
    }
    g.finish({"targets", "weights", "input_activations", "output_activations", "format"});
    if (order) {
      rg.actorder = *order;
      rg.actorder_explicit = true;
    }
    out->groups.push_back(std::move(rg));
  }
  if (out->groups.empty()) m.fail("config_groups", "expected at least one group");
}

// dsv4-calib's GPTQ options beyond GPTQModifier's, from calibration.gptq (where the resolved
// recipe writes them) or, as before issue 27, from the modifier itself; not both.
struct GptqExtras {
  std::optional<quant::QParamsTiming> qparams;
  std::optional<int> max_damping_escalations;
  // Past classic GPTQ (issue 24): read from calibration.gptq only, as GPTQModifier has no such keys.
  std::optional<quant::ScaleSearch> scale_search;
  std::optional<int> refine_passes;
  std::optional<bool> asymmetric;  // GPTAQ (quant/gptaq.h)
  std::string where;  // "calibration.gptq" when read there
  bool any_beyond_classic() const { return scale_search || refine_passes || asymmetric; }
};

GptqExtras parse_gptq_extras(YamlReader& r) {
  GptqExtras e;
  if (r.has("qparams")) {
    e.qparams = r.get_enum("qparams", "upfront", {"upfront", "lazy"}) == "lazy" ? quant::QParamsTiming::kLazy
                                                                             : quant::QParamsTiming::kUpfront;
  }
  if (r.has("max_damping_escalations")) e.max_damping_escalations = static_cast<int>(r.get_int("max_damping_escalations", 0));
  e.where = r.path();
  return e;
}

// The options past classic GPTQ (issue 24), in calibration.gptq only; docs/USAGE.md lists them.
constexpr int kMaxRefinePasses = 64;  // each pass costs about one more GPTQ sweep (gptq_refine.h)

void parse_gptq_beyond_classic(YamlReader& r, GptqExtras* e) {
  if (r.has("scale_search")) {
    e->scale_search = r.get_enum("scale_search", "observer", {"observer", "hessian"}) == "hessian"
                          ? quant::ScaleSearch::kHessian
                          : quant::ScaleSearch::kObserver;
  }
  if (r.has("refine_passes")) {
    const int64_t n = r.get_int("refine_passes", 0);
    if (n < 0 || n > kMaxRefinePasses) {
      r.fail("refine_passes", "expected a pass count from 0 to " + std::to_string(kMaxRefinePasses) + ", got " +
                                  std::to_string(n));
    }
    e->refine_passes = static_cast<int>(n);
  }
  // GPTAQ (quant/gptaq.h): the pipeline then runs a full-precision stream beside the quantized
  // one and sums ΔX·Xᵀ beside H (calib/paired_taps.h); gptaq_check says what it needs.
  if (r.has("asymmetric")) e->asymmetric = r.get_bool("asymmetric", false);
}

void apply_gptq_extras(YamlReader& m, const GptqExtras& section, quant::GptqOptions* o) {
  const GptqExtras own = parse_gptq_extras(m);
  for (const char* key : {"qparams", "max_damping_escalations"}) {
    const bool in_section = std::string(key) == "qparams" ? section.qparams.has_value()
                                                          : section.max_damping_escalations.has_value();
    if (in_section && m.has(key)) m.fail(key, "also set in " + section.where + "; set it in one place");
  }
  if (const auto q = own.qparams ? own.qparams : section.qparams) o->qparams = *q;
  if (const auto n = own.max_damping_escalations ? own.max_damping_escalations : section.max_damping_escalations) {
    o->max_damping_escalations = *n;
  }
  if (section.scale_search) o->scale_search = *section.scale_search;
  if (section.refine_passes) o->refine_passes = *section.refine_passes;
  if (section.asymmetric) o->asymmetric = *section.asymmetric;
}

RecipeModifier parse_modifier(YamlReader& m, ModifierKind kind, const GptqExtras& extras) {
  RecipeModifier out;
  out.kind = kind;
  out.key_path = m.path();
  const bool has_scheme = m.has("scheme"), has_groups = m.has("config_groups");
  if (has_scheme && has_groups) m.fail("scheme", "scheme and config_groups cannot be used together");
  if (!has_scheme && !has_groups) m.fail("scheme", "expected scheme (+ targets) or config_groups");
  if (has_scheme) {
    parse_scheme_key(m, &out);
  } else {
    if (m.has("targets")) m.fail("targets", "with config_groups, targets belong inside each group");
    parse_config_groups(m, &out);
  }
  out.ignore = m.get_strings("ignore", {});
  for (const std::string& ig : out.ignore) {
    for (const RecipeGroup& g : out.groups) {
      for (const std::string& t : g.targets) {
        if (t == ig) m.fail("ignore", "'" + ig + "' is both ignored and a target of " + g.key_path);
      }
    }
  }
  if (m.has("kv_cache_scheme")) m.fail("kv_cache_scheme", "KV-cache quantization is not supported");
  (void)m.take("kv_cache_scheme");
  (void)m.get_bool("bypass_divisibility_checks", false);
  std::vector<std::string> accepted = {"scheme", "targets", "config_groups", "ignore", "kv_cache_scheme",
                                       "bypass_divisibility_checks"};
  if (kind == ModifierKind::kGptq) {
    quant::GptqOptions& o = out.gptq;
    o.dampening_frac = static_cast<float>(m.get_double("dampening_frac", o.dampening_frac));
    o.block_size = static_cast<int>(m.get_int("block_size", o.block_size));
    const std::optional<quant::ActOrder> modifier_order = recipe_actorder_parse(m, "actorder");
    const bool modifier_order_set = modifier_order.has_value();
    o.actorder = modifier_order.value_or(quant::ActOrder::kStatic);
    // Accepted here for recipes written before issue 27; llm-compressor refuses them in the
    // modifier, so the resolved recipe writes them under calibration.gptq.
    apply_gptq_extras(m, extras, &o);
    (void)m.get_bool("offload_hessians", false);       // Hessians live where the plan puts them
    (void)m.get_strings("sequential_targets", {});     // always layer-sequential here
    recipe_args_check(m, o.problem());
    // A group's own actorder wins, but must not contradict an explicit modifier-level one.
    for (RecipeGroup& g : out.groups) {
      if (g.actorder_explicit && modifier_order_set && g.actorder != o.actorder) {
        m.fail("actorder", "contradicts " + g.key_path + ".weights.actorder");
      }
      if (!g.actorder_explicit) g.actorder = o.actorder;
    }
    accepted.insert(accepted.end(), {"dampening_frac", "block_size", "actorder", "qparams",
                                     "max_damping_escalations", "offload_hessians", "sequential_targets"});
  } else {
    for (RecipeGroup& g : out.groups) g.actorder = quant::ActOrder::kNone;
  }
  m.finish(accepted);
  return out;
}

void parse_stage(YamlReader& stage, const GptqExtras& extras, Recipe* r) {
  for (const std::string& gkey : stage.keys()) {
    if (!gkey.ends_with("_modifiers")) stage.fail(gkey, "expected a '<name>_modifiers' mapping");
    YamlReader mods = stage.child(gkey);
    for (const std::string& name : mods.keys()) {
      YamlReader m = mods.child(name);
      if (name == "GPTQModifier") {
        r->modifiers.push_back(parse_modifier(m, ModifierKind::kGptq, extras));
      } else if (name == "QuantizationModifier") {
        r->modifiers.push_back(parse_modifier(m, ModifierKind::kQuantization, extras));
      } else {
        mods.fail(name, "unknown modifier" + yaml_did_you_mean(name, {"GPTQModifier", "QuantizationModifier"}) +
                            "; supported: GPTQModifier, QuantizationModifier");
      }
    }
  }
  stage.finish();
}

void parse_dataset(YamlReader& d, Recipe* r) {
  data::DatasetOptions& o = r->dataset;
  o.files = d.get_strings("files", {});
  const std::string fmt = d.get_enum("format", "auto", {"auto", "jsonl", "text"});
  o.format = fmt == "jsonl" ? data::DatasetFormat::kJsonl : fmt == "text" ? data::DatasetFormat::kText : data::DatasetFormat::kAuto;
  const std::string unit = d.get_enum("text_unit", "paragraph", {"paragraph", "line", "file"});
  o.text_unit = unit == "line" ? data::TextUnit::kLine : unit == "file" ? data::TextUnit::kFile : data::TextUnit::kParagraph;
  o.num_samples = d.get_int("num_samples", 512);
  o.seq_len = d.get_int("seq_len", 512);
  o.min_len = d.get_int("min_len", o.min_len);
  o.seed = static_cast<uint64_t>(d.get_int("seed", 42));
  const std::string chat = d.get_enum("chat", "chat", {"chat", "thinking", "none"});
  o.chat = chat == "none" ? std::nullopt : std::optional<data::ChatMode>(chat == "thinking" ? data::ChatMode::kThinking : data::ChatMode::kChat);
  o.add_bos = d.get_bool("add_bos", o.add_bos);
  o.packing = d.get_bool("packing", o.packing);
  o.skip_malformed = d.get_bool("skip_malformed", o.skip_malformed);
  d.finish({"files", "format", "text_unit", "num_samples", "seq_len", "min_len", "seed", "chat", "add_bos",
            "packing", "skip_malformed"});
  try {
    if (!o.files.empty()) o.check();
  } catch (const Error& e) {
    d.fail("", e.what());
  }
}

uint64_t parse_bytes(YamlReader& o, const std::string& key, uint64_t fallback) {
  const std::string v = o.get_string(key, "");
  if (v.empty()) return fallback;
  std::string why;
  const std::optional<uint64_t> bytes = parse_byte_size(v, &why);
  if (!bytes) o.fail(key, "expected a size such as 5GB, 512MiB or a byte count, got '" + v + "': " + why);
  return *bytes;
}

// GPTAQ with the turboquant profile, whose GPTQ twin (quant/turboquant_gptq.h) has no residual
// term: one rule for the recipe's output.profile (gptaq_check) and --profile
// (recipe_apply_overrides).
bool gptaq_with_turboquant(const Recipe& r) { return r.gptaq() && r.output.profile == OutputProfile::kTurboquant; }
constexpr const char* kGptaqTurboquantWhy = "the turboquant profile's GPTQ codes have no asymmetric term";

// What GPTAQ (calibration.gptq.asymmetric) needs of the rest of the recipe, refused by name before
// any work: its ΔX·Xᵀ pairs the two streams' taps row for row, which holds only where both reach
// the same rows of every module (all-experts Hessians, w2's rows unweighted), and needs a
// quantized stream that differs from the full-precision one (propagate_error). Held-out
// validation would need a held-out ΔX·Xᵀ, and the turboquant GPTQ twin has no residual term.
void gptaq_check(YamlReader& top, const Recipe& r) {
  if (!r.gptaq()) return;
  const char* key = "calibration.gptq.asymmetric";
  const auto refuse = [&](const char* other, const char* why) {
    top.fail(key, std::string("GPTAQ needs ") + other + ": " + why);
  };
  if (!r.calibration.all_experts) {
    refuse("calibration.all_experts: true",
           "its ΔX·Xᵀ pairs the full-precision and the quantized stream's expert inputs row for row, and with "
           "learned routing the two streams can reach different experts");
  }
  if (r.calibration.w2_input != W2Input::kUnweighted) {
    refuse("calibration.w2_input: unweighted", "weighted w2 rows differ between the two streams' routing weights");
  }
  if (!r.calibration.propagate_error) {
    refuse("calibration.propagate_error: true", "without it the quantized stream is the full-precision one (ΔX = 0)");
  }
  if (r.calibration.heldout.enabled()) refuse("no calibration.heldout section", "held-out validation has no ΔX·Xᵀ of its own");
  if (gptaq_with_turboquant(r)) refuse("another output.profile than turboquant", kGptaqTurboquantWhy);
}

}  // namespace

Recipe recipe_parse(const std::string& yaml_text, const std::string& origin) {
  yaml_text_check(yaml_text, origin);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    DSV4_USER_FAIL("recipe", "%s: line %d column %d: invalid YAML: %s", origin.c_str(), e.mark.line + 1,
                   e.mark.column + 1, e.msg.c_str());
  }
  YamlReader top(root, origin, "");
  Recipe r;
  r.origin = origin;
  YamlReader model = top.child("model");
  r.model = model.get_string("path", "");
  r.tokenizer = model.get_string("tokenizer", "");
  model.finish({"path", "tokenizer"});
  YamlReader ds = top.child("dataset");
  parse_dataset(ds, &r);
  YamlReader cal = top.child("calibration");
  r.calibration.all_experts = cal.get_bool("all_experts", true);
  r.calibration.propagate_error = cal.get_bool("propagate_error", true);
  r.calibration.w2_input = cal.get_enum("w2_input", "unweighted", {"unweighted", "weighted"}) == "weighted"
                               ? W2Input::kWeighted
                               : W2Input::kUnweighted;
  r.calibration.hessian_sums = cal.get_enum("hessian_sums", "exact", {"exact", "fp32"}) == "fp32" ? HessianSums::kFp32
                                                                                                 : HessianSums::kExact;
  r.calibration.batch_tokens = cal.get_int("batch_tokens", r.calibration.batch_tokens);
  if (r.calibration.batch_tokens <= 0) cal.fail("batch_tokens", "expected a positive token count");
  YamlReader gptq = cal.child("gptq");
  GptqExtras extras = parse_gptq_extras(gptq);
  parse_gptq_beyond_classic(gptq, &extras);
  gptq.finish({"qparams", "max_damping_escalations", "scale_search", "refine_passes", "asymmetric"});
  r.calibration.heldout = heldout_parse(cal);
  cal.finish({"all_experts", "propagate_error", "w2_input", "hessian_sums", "batch_tokens", "gptq", "heldout"});
  YamlReader out = top.child("output");
  r.output.dir = out.get_string("dir", "");
  r.output.shard_bytes = parse_bytes(out, "shard_size", r.output.shard_bytes);
  r.output.profile = *output_profile_from_name(out.get_enum("profile", "vllm", output_profile_names()));
  const std::string scale_mode = out.get_enum("int4_scale_mode", "mse", {"absmax7", "absmax8", "mse"});
  r.output.int4_scale_mode = scale_mode == "absmax7"   ? Int4ScaleMode::kAbsmax7
                             : scale_mode == "absmax8" ? Int4ScaleMode::kAbsmax8
                                                       : Int4ScaleMode::kMse;
  if (out.has("int4_scale_mode") && r.output.profile != OutputProfile::kAppmanaDsv4Int) {
    out.fail("int4_scale_mode", "applies to the appmana-dsv4-int profile only (output.profile is " +
                                    std::string(output_profile_name(r.output.profile)) + ")");
  }
  r.output.wo_a = out.get_enum("wo_a", "int8", {"int8", "bf16"}) == "bf16" ? AppmanaWoA::kBf16 : AppmanaWoA::kInt8;
  if (out.has("wo_a") && r.output.profile != OutputProfile::kAppmanaDsv4Int) {
    out.fail("wo_a", "applies to the appmana-dsv4-int profile only (output.profile is " +
                         std::string(output_profile_name(r.output.profile)) + ")");
  }
  if (out.has("sensitive_patterns")) {
    if (r.output.profile != OutputProfile::kTurboquant) {
      out.fail("sensitive_patterns", "applies to the turboquant profile only (output.profile is " +
                                         std::string(output_profile_name(r.output.profile)) + ")");
    }
    r.output.sensitive_patterns = out.get_strings("sensitive_patterns", {});
  }
  r.output.mtp_aliases = out.get_bool("mtp_aliases", false);
  r.output.copy_tokenizer = out.get_bool("copy_tokenizer", true);
  out.finish({"dir", "shard_size", "profile", "int4_scale_mode", "wo_a", "sensitive_patterns", "mtp_aliases",
              "copy_tokenizer"});
  YamlReader run = top.child("run");
  r.run.checkpoint_every = static_cast<int>(run.get_int("checkpoint_every", 1));
  if (r.run.checkpoint_every < 1) run.fail("checkpoint_every", "expected at least 1");
  r.run.collective_timeout_s = run.get_double("collective_timeout_s", r.run.collective_timeout_s);
  run.finish({"checkpoint_every", "collective_timeout_s"});

  static const std::vector<std::string> kSections = {"model", "dataset", "calibration", "output", "run"};
  for (const std::string& key : top.keys()) {
    if (std::find(kSections.begin(), kSections.end(), key) != kSections.end()) continue;
    if (!key.ends_with("_stage")) {
      top.fail(key, "unknown key" + yaml_did_you_mean(key, kSections) +
                        "; expected model, dataset, calibration, output, run or a '<name>_stage'");
    }
    if (!r.stage.empty()) top.fail(key, "a second stage ('" + r.stage + "' came first); one stage is supported");
    r.stage = key;
    YamlReader stage = top.child(key);
    parse_stage(stage, extras, &r);
  }
  const bool has_gptq = std::any_of(r.modifiers.begin(), r.modifiers.end(),
                                    [](const RecipeModifier& m) { return m.kind == ModifierKind::kGptq; });
  if (!has_gptq && (extras.qparams || extras.max_damping_escalations || extras.any_beyond_classic())) {
    top.fail("calibration.gptq", "the recipe has no GPTQModifier for these options");
  }
  if (!has_gptq && r.calibration.heldout.enabled()) {
    top.fail("calibration.heldout", "the recipe has no GPTQModifier whose modules it could validate");
  }
  gptaq_check(top, r);
  if (r.modifiers.empty()) top.fail("", "no quantization stage: expected e.g. quant_stage.quant_modifiers.GPTQModifier");
  top.finish();
  return r;
}

Recipe recipe_load(const std::string& path) {
  regular_file_require(path, "the recipe");  // a FIFO would block the open below
  std::ifstream in(path);
  DSV4_USER_CHECK("recipe", in.good(), "cannot open the recipe file %s", path.c_str());
  std::stringstream ss;
  ss << in.rdbuf();
  return recipe_parse(ss.str(), path);
}

void recipe_apply_overrides(Recipe& r, const RecipeOverrides& o) {
  if (o.model) r.model = *o.model;
  if (o.dataset) r.dataset.files = {*o.dataset};
  if (o.out) r.output.dir = *o.out;
  if (o.num_samples) r.dataset.num_samples = *o.num_samples;
  if (o.seq_len) r.dataset.seq_len = *o.seq_len;
  if (o.profile) r.output.profile = *o.profile;
  DSV4_USER_CHECK("recipe", !gptaq_with_turboquant(r),
                  "%s: --profile turboquant with calibration.gptq.asymmetric: GPTAQ needs another output profile: %s",
                  r.origin.c_str(), kGptaqTurboquantWhy);
  if (!r.dataset.files.empty()) r.dataset.check();
}

}  // namespace dsv4::calib

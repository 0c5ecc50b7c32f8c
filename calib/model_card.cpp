// model_card.cpp: the artifact's README.md (see model_card.h), one function per section.
#include "calib/model_card.h"

#include <filesystem>
#include <set>

#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"

namespace dsv4::calib {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

std::string num(double v, const char* fmt = "%.3g") { return strfmt(fmt, v); }

// What each solve method means, for the table of what was done to the modules.
const char* method_meaning(const std::string& m) {
  if (m == "gptq") return "GPTQ with the calibration Hessians";
  if (m == "rtn") return "round-to-nearest (no Hessian: a data-free scheme, or a GPTQ fallback)";
  if (m == "fp8_reencode") return "FP8 block weights re-encoded from the release's FP8 (bit-exact where the scales allow)";
  if (m == "mxfp4_to_int4") return "the release's MXFP4 experts converted to INT4 without calibration";
  return "";
}

std::string front_matter(const ModelCardInputs& in, const std::string& base) {
  const ordered_json& m = in.run.manifest;
  std::string s = "---\nbase_model: " + base + "\nbase_model_relation: quantized\nlibrary_name: transformers\n";
  s += "pipeline_tag: text-generation\ntags:\n- compressed-tensors\n- quantized\n- vllm\n- dsv4-calib\n";
  const ordered_json& totals = m.value("totals", ordered_json::object());
  if (totals.value("gptq", 0) > 0) s += "- gptq\n";
  const std::string origin = m.value("recipe", ordered_json::object()).value("origin", "");
  const std::string recipe = fs::path(origin).stem().string();
  if (!recipe.empty()) s += "- " + recipe + "\n";
  return s + "---\n\n";
}

std::string recipe_section(const ModelCardInputs& in, const std::string& base) {
  const ordered_json& m = in.run.manifest;
  const ordered_json tool = m.value("tool", ordered_json::object());
  std::string s = "# " + in.run.label + "\n\n";
  // A Hugging Face id ("org/name") links to its page; a local source's name does not.
  const std::string base_text = base.find('/') != std::string::npos ? "[" + base + "](https://huggingface.co/" + base + ")"
                                                                    : "`" + base + "` (a local checkpoint)";
  s += base_text + " quantized with dsv4-calib " + tool.value("version", "") +
       " (commit " + tool.value("commit", "") + ") per the recipe `" +
       m.value("recipe", ordered_json::object()).value("origin", "") + "` (resolved below, fnv1a64 " +
       m.value("recipe", ordered_json::object()).value("fnv1a64", "") + "). The weights are a compressed-tensors "
       "checkpoint with the release's tensor names.\n\n";
  s += "## What was done to each module\n\n| modules | method |\n|---:|---|\n";
  const ordered_json totals = m.value("totals", ordered_json::object());
  for (const auto& [k, v] : totals.items()) {
    if (!v.is_number_integer() || k == "fallbacks" || k == "resumed_at_segment" || v.get<int64_t>() == 0) continue;
    s += "| " + std::to_string(v.get<int64_t>()) + " | `" + k + "`: " + method_meaning(k) + " |\n";
  }
  s += strfmt("\n%d GPTQ module(s) raised their damping or fell back to RTN (`fallbacks` per layer in "
              "calib_manifest.json).\n\n", totals.value("fallbacks", 0));
  return s + "The recipe as resolved for this run (`recipe.yaml`):\n\n```yaml\n" + in.recipe_yaml +
         (in.recipe_yaml.ends_with("\n") ? "" : "\n") + "```\n\n";
}

// What was kept and why: the ignore list and the MTP block.
std::string kept_section(const ModelCardInputs& in) {
  const ordered_json q = in.config.value("quantization_config", ordered_json::object());
  std::string s = "## What was kept, and why\n\n";
  const ordered_json ignore = q.value("ignore", ordered_json::array());
  s += "Tensors the recipe does not quantize keep their source values and dtype (the release's BF16 and FP32 "
       "tensors: embeddings, norms, the router, the hyper-connection mixers), as the recipe's output profile "
       "writes them. The quantization_config's `ignore` list (" + std::to_string(ignore.size()) +
       " entries) names the Linear modules among them, so vLLM builds them unquantized:\n\n";
  for (const ordered_json& e : ignore) s += "- `" + e.get<std::string>() + "`\n";
  int mtp_stages = in.run.manifest.value("source", ordered_json::object()).value("mtp_stages", 0);
  bool mtp_quantized = false;
  for (const ordered_json& l : in.run.manifest.value("layers", ordered_json::array())) {
    if (!l.value("segment", "").starts_with("mtp.")) continue;
    const ordered_json methods = l.value("methods", ordered_json::object());  // a copy: items() must not outlive it
    for (const auto& [k, v] : methods.items()) mtp_quantized |= v.get<int>() > 0;
  }
  if (mtp_stages > 0) {
    s += strfmt("\nThe MTP block (%d stage(s), vLLM's speculative-decoding draft) is %s.\n", mtp_stages,
                mtp_quantized ? "quantized per the recipe (see the layer table in calib_manifest.json)"
                              : "not calibrated: the recipe's targets leave it out (its modules are in the ignore "
                                "list above), so speculative decoding drafts with the released MTP weights");
  }
  return s + "\n";
}

std::string data_section(const ModelCardInputs& in) {
  const ordered_json d = in.run.manifest.value("dataset", ordered_json::object());
  if (d.empty()) return "## Calibration data\n\nNone: the recipe is data-free.\n\n";
  const ordered_json o = d.value("options", ordered_json::object());
  std::string s = "## Calibration data\n\n";
  for (const ordered_json& f : d.value("files", ordered_json::array())) {
    s += "- `" + f.value("path", "") + "` (" + f.value("format", "") + ", " +
         std::to_string(f.value("records", int64_t{0})) + " records)\n";
  }
  s += strfmt("\n%lld samples, %lld tokens (seq_len %lld, seed %lld). Samples hash (%s): `%s`. First sample "
              "hashes (all of them, with their source lines, in calib_manifest.json):\n\n",
              static_cast<long long>(d.value("num_samples", int64_t{0})),
              static_cast<long long>(d.value("num_tokens", int64_t{0})), static_cast<long long>(o.value("seq_len", int64_t{0})),
              static_cast<long long>(o.value("seed", int64_t{0})), d.value("hash_algorithm", "").c_str(),
              d.value("samples_hash", "").c_str());
  const ordered_json samples = d.value("samples", ordered_json::array());
  for (size_t i = 0; i < samples.size() && i < 8; ++i) s += "- `" + samples[i].value("hash", "") + "`\n";
  return s + "\n";
}

std::string hardware_section(const ModelCardInputs& in) {
  const ordered_json& m = in.run.manifest;
  std::set<std::string> hosts;
  int gpus = 0;
  for (const ordered_json& r : m.value("ranks", ordered_json::array())) {
    hosts.insert(r.value("host", ""));
    gpus += r.contains("gpu") ? 1 : 0;
  }
  const ordered_json fwd = m.value("forward", ordered_json::object());
  std::string s = strfmt("## Hardware and time\n\n%d rank(s) on %zu host(s), %s forward (%s)%s. ", m.value("world_size", 1),
                         hosts.size(), fwd.value("device", "").c_str(), fwd.value("numeric_mode", "").c_str(),
                         gpus ? strfmt(", %d GPU(s)", gpus).c_str() : "");
  double seconds = 0;
  for (const ordered_json& e : in.run.ends) seconds += e.value("seconds", 0.0);
  if (in.run.ends.empty()) seconds = m.value("totals", ordered_json::object()).value("seconds", 0.0);
  const size_t processes = std::max<size_t>(1, in.run.starts.size());
  s += strfmt("Calibration wall time %.1f s%s.\n\n", seconds,
              processes > 1 ? strfmt(" over %zu processes (resumed %zu time(s))", processes, processes - 1).c_str() : "");
  return s;
}

std::string quality_section(const ModelCardInputs& in) {
  double gptq = 0, rtn = 0;
  int n = 0;
  for (const ordered_json& l : in.run.manifest.value("layers", ordered_json::array())) {
    if (!l.contains("mean_rel_error")) continue;
    gptq += l["mean_rel_error"].get<double>(), rtn += l["mean_rtn_rel_error"].get<double>(), ++n;
  }
  std::string s = "## Quality\n\n";
  if (n) {
    s += "Mean Hessian-weighted relative error of the GPTQ modules over " + std::to_string(n) + " layers: " +
         num(gptq / n) + " (round-to-nearest on the same weights: " + num(rtn / n) + ").\n\n";
  }
  const ordered_json& e = in.run.eval;
  if (e.is_object()) {
    s += "`dsv4-calib eval` against the source (" + std::to_string(e.value("samples", 0)) + " samples, " +
         std::to_string(e.value("tokens", int64_t{0})) + " tokens, data hash `" + e.value("data_hash", "") + "`):\n\n";
    s += "| perplexity | source perplexity | mean KL (nats/token) | top-1 agreement |\n|---|---|---|---|\n";
    auto cell = [&](const char* k) { return e.contains(k) && e[k].is_number() ? num(e[k].get<double>(), "%.4g") : "-"; };
    s += "| " + cell("perplexity") + " | " + cell("reference_perplexity") + " | " + cell("kl_mean") + " | " +
         cell("top1_agreement") + " |\n\n";
  } else {
    s += "No `eval` results yet: `dsv4-calib -v 0 eval --model OUT --reference SRC --data FILE --json > "
         "OUT/eval.json`, then `dsv4-calib report OUT` adds them here.\n\n";
  }
  return s;
}

std::string serve_section(const ModelCardInputs& in) {
  std::string s = "## Serve\n\nWith vLLM (compressed-tensors is detected from config.json; one GPU per tensor-"
                  "parallel rank; the command this artifact is made for, not run by dsv4-calib):\n\n```sh\n"
                  "vllm serve " + in.run.label + " --tensor-parallel-size 8 --kv-cache-dtype fp8";
  if (in.run.manifest.value("source", ordered_json::object()).value("mtp_stages", 0) > 0) {
    s += " \\\n  --speculative-config '{\"method\": \"mtp\", \"num_speculative_tokens\": 1}'";
  }
  return s + "\n```\n\nMore: `report.html` (plots of this run), `calib_manifest.json` (every layer and module), "
             "`progress.jsonl` (the run's events).\n";
}

}  // namespace

std::string model_card_base_model(const ordered_json& c) {
  // DeepSeek-V4-Flash: 43 layers of 256 routed experts (model/config.h's flash preset).
  if (c.value("num_hidden_layers", 0) == 43 && c.value("n_routed_experts", 0) == 256) return "deepseek-ai/DeepSeek-V4-Flash";
  return "";
}

std::string model_card_markdown(const ModelCardInputs& in) {
  std::string base = model_card_base_model(in.config);
  if (base.empty()) {
    base = fs::path(in.run.manifest.value("source", ordered_json::object()).value("dir", "source"))
               .lexically_normal().filename().string();
  }
  return front_matter(in, base) + recipe_section(in, base) + kept_section(in) + data_section(in) +
         hardware_section(in) + quality_section(in) + serve_section(in);
}

void model_card_refresh(const std::string& out_dir, const ReportRun& run) {
  const std::string yaml = read_file(out_dir + "/recipe.yaml");
  const ordered_json cfg = json_parse<ordered_json>(read_file(out_dir + "/config.json"), out_dir + "/config.json");
  write_file_atomic(out_dir + "/" + kModelCardFile, model_card_markdown({.run = run, .recipe_yaml = yaml, .config = cfg}));
}

}  // namespace dsv4::calib

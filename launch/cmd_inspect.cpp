// cmd_inspect.cpp: `dsv4-calib inspect DIR [--json]`: opens a checkpoint (validating every
// header and the index), summarises it by tensor family, and checks it against the inventory
// its config.json implies, and scans every tensor's values for NaN and infinity (issue 26: a
// damaged weight must not pass as OK; --headers-only skips the scan, which reads every byte). Exit
// code 0 when it matches, 1 when anything is missing, unexpected, mismatched or not finite (each
// named with its shard file).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "calib/artifact_decode.h"
#include "calib/profile_turboquant.h"
#include "common/check.h"
#include "common/finite_scan.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "launch/commands.h"
#include "model/checkpoint_audit.h"
#include "model/config.h"

namespace dsv4::launch {
namespace {

struct InspectArgs {
  std::string dir;
  bool json = false;
  int max_listed = 50;
  bool headers_only = false;
  int threads = 0;
};

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return strfmt(u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
}

std::string layer_kinds(const model::ModelConfig& c) {
  std::string s;
  for (int l = 0; l < c.num_layers; ++l) {
    const model::LayerSpec spec = c.layer(l);
    const char* kind = spec.attention == model::AttentionKind::kSliding ? "SWA"
                       : spec.attention == model::AttentionKind::kCsa   ? "CSA"
                                                                         : "HCA";
    s += (l ? " " : "") + std::string(kind) + (spec.routing == model::RoutingKind::kHash ? "/hash" : "");
  }
  return s;
}

void print_list(const char* title, const std::vector<std::string>& items, int max_listed) {
  if (items.empty()) return;
  std::printf("%s (%zu):\n", title, items.size());
  for (size_t i = 0; i < items.size() && i < static_cast<size_t>(max_listed); ++i)
    std::printf("  %s\n", items[i].c_str());
  if (items.size() > static_cast<size_t>(max_listed))
    std::printf("  ... and %zu more (--max-listed)\n", items.size() - max_listed);
}

// What wrote the checkpoint, from config.json's quantization_config: the release (FP8/MXFP4), a
// compressed-tensors artifact (the vllm profile) or an appmana-dsv4-int one. The inventory below
// is the release's, so an artifact's re-encoded tensors show as mismatched or unexpected there
// (the report says so: what an artifact should hold depends on its recipe and its source, which
// `verify --source` has).
std::string checkpoint_format(const model::ModelConfig& c) {
  const nlohmann::json& q = c.source.is_object() && c.source.contains("quantization_config")
                                ? c.source["quantization_config"]
                                : nlohmann::json();
  const std::string method = q.is_object() ? q.value("quant_method", "") : "";
  if (method == "compressed-tensors") return "artifact, profile vllm (compressed-tensors)";
  if (method == "dsv4_int") {
    return "artifact, profile appmana-dsv4-int (dsv4_int, " + q.value("format", std::string("?")) + ")";
  }
  return method.empty() ? "no quantization_config" : "release layout (quant_method " + method + ")";
}

// turboquant writes no quantization_config (as upstream); tq_config.json says what it is.
std::string checkpoint_format(const model::ModelConfig& c, const std::string& dir) {
  const std::string tq = dir + "/" + calib::kTqConfigFile;
  if (!std::filesystem::exists(tq)) return checkpoint_format(c);
  const nlohmann::json j = json_parse(read_file(tq), tq);
  return strfmt("artifact, profile turboquant (%s, %d bits, group %d)", j.value("format", std::string("?")).c_str(),
                j.value("bits", 0), j.value("group_size", 0));
}

// For an artifact: what the inventory check below is, and where the artifact's own check is.
constexpr const char* kArtifactInventoryNote =
    "the release inventory config.json implies, which an artifact's re-encoded tensors differ from by design "
    "(they are listed as such, and inspect exits 1); `dsv4-calib verify DIR --source SRC` holds an artifact to "
    "what its recipe and "
    "profile should hold";

int run(const InspectArgs& a) {
  calib::checkpoint_dir_check(a.dir, "");
  // checkpoint_config_load reads a dsv4-calib artifact's config too (appmana-dsv4-int's int4 experts).
  const model::ModelConfig config = calib::checkpoint_config_load(a.dir);
  const Checkpoint ckpt = Checkpoint::open(a.dir);
  const model::AuditReport r = model::checkpoint_audit(ckpt, config);
  const std::string format = checkpoint_format(config, a.dir);
  std::vector<std::string> non_finite;
  if (!a.headers_only) {
    for (const TensorNonFinite& t : checkpoint_non_finite(ckpt, a.threads)) non_finite.push_back(t.text());
  }
  const bool ok = r.ok() && non_finite.empty();
  const bool artifact = format.starts_with("artifact");

  if (a.json) {
    nlohmann::ordered_json families = nlohmann::ordered_json::object();
    for (const auto& [name, f] : r.families)
      families[name] = {{"count", f.count}, {"bytes", f.bytes}, {"dtypes", f.dtypes}};
    nlohmann::ordered_json j = {
        {"dir", a.dir}, {"format", format}, {"ok", ok}, {"tensors", r.tensors}, {"bytes", r.bytes},
        {"shards", r.shards}, {"index_total_size", r.index_total_size}, {"mtp_stages", r.mtp_stages},
        {"layers", config.num_layers}, {"experts", config.n_routed_experts},
        {"expected_tensors", r.expected_tensors}, {"expected_bytes", r.expected_bytes},
        {"missing", r.missing}, {"unexpected", r.unexpected}, {"mismatched", r.mismatched},
        {"problems", r.problems}, {"values_scanned", !a.headers_only}, {"non_finite", non_finite},
        {"families", families}};
    if (artifact) j["inventory_note"] = kArtifactInventoryNote;
    std::printf("%s\n", j.dump(2).c_str());
    return ok ? 0 : 1;
  }

  std::printf("checkpoint %s\n", a.dir.c_str());
  std::printf("format     %s\n", format.c_str());
  std::printf("config     %d layers [%s], %d experts (top-%d), hidden %d, MTP stages present: %d\n",
              config.num_layers, layer_kinds(config).c_str(), config.n_routed_experts,
              config.num_experts_per_tok, config.hidden_size, r.mtp_stages);
  std::printf("storage    %d shard(s), %llu tensors, %s (%llu bytes)%s\n", r.shards,
              static_cast<unsigned long long>(r.tensors), human_bytes(r.bytes).c_str(),
              static_cast<unsigned long long>(r.bytes),
              r.index_total_size == r.bytes ? ", index total_size matches" : "");
  std::printf("\n%-52s %8s  %-16s %12s\n", "family", "count", "dtype", "bytes");
  for (const auto& [name, f] : r.families) {
    std::printf("%-52s %8llu  %-16s %12s\n", name.c_str(), static_cast<unsigned long long>(f.count),
                f.dtypes.c_str(), human_bytes(f.bytes).c_str());
  }
  std::printf("\n");
  print_list("missing tensors", r.missing, a.max_listed);
  print_list("unexpected tensors", r.unexpected, a.max_listed);
  print_list("mismatched tensors", r.mismatched, a.max_listed);
  print_list("problems", r.problems, a.max_listed);
  print_list("tensors holding NaN or infinity", non_finite, a.max_listed);
  if (artifact) std::printf("checked against %s\n", kArtifactInventoryNote);
  std::printf("inventory  %s: %llu expected, %zu missing, %zu unexpected, %zu mismatched\n",
              r.ok() ? "OK" : "FAILED", static_cast<unsigned long long>(r.expected_tensors),
              r.missing.size(), r.unexpected.size(), r.mismatched.size());
  if (a.headers_only) {
    std::printf("values     not scanned (--headers-only)\n");
  } else {
    std::printf("values     %s: %zu of %llu tensors hold NaN or infinity\n", non_finite.empty() ? "OK" : "FAILED",
                non_finite.size(), static_cast<unsigned long long>(r.tensors));
  }
  return ok ? 0 : 1;
}

}  // namespace

Command cmd_inspect_register(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand("inspect", "summarise a checkpoint and check it against its inventory");
  sub->add_option("dir", args->dir, "checkpoint directory (config.json + safetensors)")->required();
  sub->add_flag("--json", args->json, "print a JSON report");
  sub->add_option("--max-listed", args->max_listed, "names listed per problem category")->check(CLI::Range(1, 1000000));
  sub->add_flag("--headers-only", args->headers_only,
                "check headers and the inventory only; skip the scan of every value for NaN and infinity");
  sub->add_option("--threads", args->threads, "threads for the value scan (0: all cores)")->check(CLI::Range(0, 4096));
  return [args]() { return run(*args); };
}

}  // namespace dsv4::launch

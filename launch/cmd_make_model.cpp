// cmd_make_model.cpp: `dsv4-calib make-model`: writes a synthetic checkpoint in the release
// layout (see model/synth_model.h), or with --dry-run only prints what it would write.
//
//   dsv4-calib make-model --preset tiny --out /tmp/tiny
//   dsv4-calib make-model --preset flash --layers 2 --tokenizer ../shared/data/deepseek_v3_tokenizer --out /data/flash2
//   dsv4-calib make-model --preset flash --layers 43 --experts 256 --dry-run --json
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <memory>

#include "common/check.h"
#include "common/log.h"
#include "launch/commands.h"
#include "model/synth_model.h"

namespace dsv4::launch {
namespace {

struct MakeModelArgs {
  std::string preset = "tiny";
  int layers = 0;   // 0: the preset's own
  int experts = 0;  // 0: the preset's own
  uint64_t seed = 0;
  std::string out;
  std::string tokenizer;
  std::string shard_size;  // e.g. "4G", "512M", "1000000"
  int threads = 0;
  bool dry_run = false;
  bool json = false;
};

uint64_t parse_bytes(const std::string& text) {
  DSV4_CHECK_IN("make-model", !text.empty(), "--shard-size is empty");
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    DSV4_FAIL("make-model", "--shard-size '%s' is not a size (e.g. 4G, 512M, 1048576)", text.c_str());
  }
  const std::string unit = text.substr(used);
  double mult = 1;
  if (unit == "K" || unit == "KiB") mult = 1024.0;
  else if (unit == "M" || unit == "MiB") mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") mult = 1024.0 * 1024 * 1024;
  else DSV4_CHECK_IN("make-model", unit.empty(), "--shard-size '%s': unknown unit '%s' (K, M, G)",
                     text.c_str(), unit.c_str());
  DSV4_CHECK_IN("make-model", value > 0, "--shard-size '%s' must be positive", text.c_str());
  return static_cast<uint64_t>(value * mult);
}

// The preset's config with --layers/--experts applied. Tiny keeps its pattern (sliding first,
// then CSA and HCA alternating) when resized; flash follows the release schedule.
model::ModelConfig preset_config(const MakeModelArgs& a) {
  if (a.preset == "flash") {
    return model::ModelConfig::flash(a.layers > 0 ? a.layers : 43, a.experts > 0 ? a.experts : 256);
  }
  DSV4_CHECK_IN("make-model", a.preset == "tiny", "unknown --preset '%s' (tiny or flash)",
                a.preset.c_str());
  model::ModelConfig c = model::ModelConfig::tiny();
  if (a.layers > 0 && a.layers != c.num_layers) {
    const int csa = 4, hca = c.compress_ratios[2];
    c.num_layers = a.layers;
    c.compress_ratios.clear();
    for (int l = 0; l < a.layers; ++l) c.compress_ratios.push_back(l == 0 ? 0 : (l % 2 == 1 ? csa : hca));
    for (int s = 0; s < c.num_nextn_predict_layers; ++s) c.compress_ratios.push_back(0);
    c.num_hash_layers = std::min(c.num_hash_layers, a.layers);
  }
  if (a.experts > 0) {
    c.n_routed_experts = a.experts;
    c.num_experts_per_tok = std::min(c.num_experts_per_tok, a.experts);
  }
  c.check();
  return c;
}

int run(const MakeModelArgs& a) {
  const model::ModelConfig config = preset_config(a);
  model::SynthOptions o;
  o.out_dir = a.out;
  o.seed = a.seed;
  o.tokenizer_dir = a.tokenizer;
  o.threads = a.threads;
  o.max_shard_bytes = a.shard_size.empty() ? (a.preset == "tiny" ? (1ull << 20) : (4ull << 30))
                                           : parse_bytes(a.shard_size);
  DSV4_CHECK_IN("make-model", a.preset != "flash" || a.dry_run || !a.tokenizer.empty(),
                "--preset flash needs --tokenizer DIR (a directory with the DeepSeek tokenizer.json, "
                "e.g. ../shared/data/deepseek_v3_tokenizer)");
  DSV4_CHECK_IN("make-model", a.dry_run || !a.out.empty(), "--out DIR is required (or --dry-run)");

  const auto start = std::chrono::steady_clock::now();
  const model::SynthSummary s = a.dry_run ? model::synth_plan(config, o)
                                          : model::synth_checkpoint_write(config, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (a.json) {
    nlohmann::ordered_json j = {{"tensors", s.tensors}, {"bytes", s.bytes},   {"shards", s.shards},
                                {"mtp_stages", s.mtp_stages}, {"preset", a.preset},
                                {"layers", config.num_layers}, {"experts", config.n_routed_experts},
                                {"seed", a.seed}, {"dry_run", a.dry_run}};
    if (!a.dry_run) j["out"] = a.out, j["seconds"] = seconds;
    std::printf("%s\n", j.dump().c_str());
  } else {
    log_info("make-model %s: %d layers, %d experts, %d MTP stage(s): %llu tensors, %llu bytes "
             "(%.2f GB) in %d shard(s)%s",
             a.preset.c_str(), config.num_layers, config.n_routed_experts, s.mtp_stages,
             static_cast<unsigned long long>(s.tensors), static_cast<unsigned long long>(s.bytes),
             s.bytes / 1e9, s.shards, a.dry_run ? " [dry run: nothing written]" : "");
    if (!a.dry_run) log_info("wrote %s in %.1f s", a.out.c_str(), seconds);
  }
  return 0;
}

}  // namespace

Command cmd_make_model_register(CLI::App& app) {
  auto args = std::make_shared<MakeModelArgs>();
  CLI::App* sub = app.add_subcommand("make-model", "write a synthetic DSV4 checkpoint in the release layout");
  sub->add_option("--preset", args->preset, "tiny (built-in test model) or flash (full widths)")
      ->check(CLI::IsMember({"tiny", "flash"}));
  sub->add_option("--layers", args->layers, "number of main decoder layers")->check(CLI::Range(1, 1000));
  sub->add_option("--experts", args->experts, "routed experts per layer")->check(CLI::Range(1, 4096));
  sub->add_option("--seed", args->seed, "random seed (output is deterministic per seed)");
  sub->add_option("--out", args->out, "output directory (must be new or empty)");
  sub->add_option("--tokenizer", args->tokenizer, "directory holding tokenizer.json to copy");
  sub->add_option("--shard-size", args->shard_size, "max tensor bytes per shard, e.g. 4G (tiny: 1M)");
  sub->add_option("--threads", args->threads, "generation threads (0 = all cores)");
  sub->add_flag("--dry-run", args->dry_run, "print the totals, write nothing");
  sub->add_flag("--json", args->json, "print one JSON line");
  return [args]() { return run(*args); };
}

}  // namespace dsv4::launch

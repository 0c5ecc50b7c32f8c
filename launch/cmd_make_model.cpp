// cmd_make_model.cpp: `dsv4-calib make-model`: writes a synthetic checkpoint in the release
// layout (see model/synth_model.h), or with --dry-run only prints what it would write; with
// --weights, a checkpoint of those (trained, unencoded) weights in the release layout instead.
//
//   dsv4-calib make-model --preset tiny --out /tmp/tiny
//   dsv4-calib make-model --weights trained/ --tokenizer trained/ --calib-records 0 --out /tmp/trained
//   dsv4-calib make-model --preset flash --layers 2 --tokenizer ../shared/data/deepseek_v3_tokenizer --out /data/flash2
//   dsv4-calib make-model --preset flash --layers 43 --experts 256 --dry-run --json
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include "common/byte_size.h"
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
  std::string weights;
  std::string shard_size;  // e.g. "4G", "512M", "1000000"
  int threads = 0;
  int calib_records = 64;
  int calib_sentences = 0;
  bool dry_run = false;
  bool json = false;
};

uint64_t parse_bytes(const std::string& text) {
  std::string why;
  const std::optional<uint64_t> bytes = parse_byte_size(text, &why);
  DSV4_USER_CHECK("make-model", bytes.has_value(), "--shard-size '%s' is not a size (e.g. 4G, 512MiB, 1048576): %s",
                  text.c_str(), why.c_str());
  return *bytes;
}

// The config: the preset's, or with --weights the one beside the weights (and nothing that
// would contradict it).
model::ModelConfig config_of(const MakeModelArgs& a, bool preset_given) {
  if (a.weights.empty()) return model::synth_preset_config(a.preset, a.layers, a.experts);
  DSV4_USER_CHECK("make-model", !preset_given && a.layers == 0 && a.experts == 0,
                  "--weights %s takes the model's shape from %s/config.json; drop --preset, --layers and --experts",
                  a.weights.c_str(), a.weights.c_str());
  return model::ModelConfig::from_file(a.weights + "/config.json");
}

int run(const MakeModelArgs& a, bool preset_given) {
  const model::ModelConfig config = config_of(a, preset_given);
  model::SynthOptions o;
  o.weights_dir = a.weights;
  if (!a.weights.empty()) o.mtp_stages = config.num_nextn_predict_layers;
  o.out_dir = a.out;
  o.seed = a.seed;
  o.tokenizer_dir = a.tokenizer;
  o.threads = a.threads;
  o.calibration_records = a.calib_records;
  o.calibration_sentences = a.calib_sentences;
  o.max_shard_bytes = a.shard_size.empty() ? (a.preset == "tiny" ? (1ull << 20) : (4ull << 30))
                                           : parse_bytes(a.shard_size);
  DSV4_USER_CHECK("make-model", a.preset != "flash" || a.dry_run || !a.tokenizer.empty(),
                  "--preset flash needs --tokenizer DIR (a directory with the DeepSeek tokenizer.json, "
                  "e.g. ../shared/data/deepseek_v3_tokenizer)");
  DSV4_USER_CHECK("make-model", a.dry_run || !a.out.empty(), "--out DIR is required (or --dry-run)");

  const auto start = std::chrono::steady_clock::now();
  const model::SynthSummary s = a.dry_run ? model::synth_plan(config, o)
                                          : model::synth_checkpoint_write(config, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string source = a.weights.empty() ? a.preset : "--weights " + a.weights;
  if (a.json) {
    nlohmann::ordered_json j = {{"tensors", s.tensors}, {"bytes", s.bytes},   {"shards", s.shards},
                                {"mtp_stages", s.mtp_stages}, {"preset", a.weights.empty() ? a.preset : ""},
                                {"layers", config.num_layers}, {"experts", config.n_routed_experts},
                                {"seed", a.seed}, {"dry_run", a.dry_run}};
    if (!a.weights.empty()) j["weights"] = a.weights;
    if (!a.dry_run) j["out"] = a.out, j["seconds"] = seconds;
    std::printf("%s\n", j.dump().c_str());
  } else {
    log_info("make-model %s: %d layers, %d experts, %d MTP stage(s): %llu tensors, %llu bytes "
             "(%.2f GB) in %d shard(s)%s",
             source.c_str(), config.num_layers, config.n_routed_experts, s.mtp_stages,
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
  CLI::Option* preset = sub->get_option("--preset");
  sub->add_option("--weights", args->weights,
                  "directory of F32/BF16 weights (release or transformers names, MTP as mtp.S.*) and their "
                  "config.json: write them in the release layout instead of random ones");
  sub->add_option("--shard-size", args->shard_size, "max tensor bytes per shard, e.g. 4G (tiny: 1M)");
  sub->add_option("--threads", args->threads, "generation threads (0 = all cores)");
  sub->add_option("--calib-records", args->calib_records, "chat records written to calib.jsonl")
      ->check(CLI::Range(0, 1000000));
  sub->add_option("--calib-sentences", args->calib_sentences,
                  "sentences per answer, about 10 tokens each (0: 3 to 8 at random)")
      ->check(CLI::Range(0, 100000));
  sub->add_flag("--dry-run", args->dry_run, "print the totals, write nothing");
  sub->add_flag("--json", args->json, "print one JSON line");
  return [args, preset]() { return run(*args, preset->count() > 0); };
}

}  // namespace dsv4::launch

// synth_model.cpp: drives synthetic checkpoint generation: plans shards from the inventory,
// draws tensors in parallel batches, streams them in order into the CheckpointWriter, then
// writes config.json and the tokenizer.
#include "model/synth_model.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>

#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/parallel.h"
#include "common/safetensors.h"
#include "model/inventory.h"
#include "model/synth_text.h"
#include "model/synth_tokenizer.h"
#include "model/synth_weights.h"
#include "model/weights_import.h"

namespace dsv4::model {
namespace {

namespace fs = std::filesystem;

// A unit of generation: one plain tensor, or a weight with its scale (drawn together because
// the scale is derived from the weight's block maxima).
struct Unit {
  size_t first;  // index into the inventory
  size_t count;  // 1 or 2
  uint64_t bytes;
};

std::vector<Unit> units_of(const std::vector<ExpectedTensor>& tensors) {
  std::vector<Unit> units;
  for (size_t i = 0; i < tensors.size();) {
    const bool pair = tensors[i].encoding == TensorEncoding::kFp8Block ||
                      tensors[i].encoding == TensorEncoding::kMxfp4;
    const size_t n = pair ? 2 : 1;
    DSV4_CHECK_IN("synth", !pair || (i + 1 < tensors.size() &&
                                     tensors[i + 1].encoding == TensorEncoding::kScale),
                  "inventory: %s is not followed by its scale", tensors[i].name.c_str());
    uint64_t bytes = 0;
    for (size_t k = 0; k < n; ++k) bytes += tensors[i + k].bytes();
    units.push_back({i, n, bytes});
    i += n;
  }
  return units;
}

std::vector<TensorSpec> specs_of(const std::vector<ExpectedTensor>& tensors) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  return specs;
}

void check_out_dir_empty(const std::string& dir) {
  if (!fs::exists(dir)) return;
  DSV4_CHECK_IN("make-model", fs::is_directory(dir), "output path %s exists and is not a directory",
                dir.c_str());
  DSV4_CHECK_IN("make-model", fs::is_empty(dir),
                "output directory %s is not empty; refusing to overwrite (choose a new --out)",
                dir.c_str());
}

// Checked before anything is written: a flash checkpoint is GBs even at one layer, and a disk that
// fills halfway leaves a broken directory behind. The margin covers headers, the index, the
// tokenizer and calib.jsonl.
void check_free_space(const SynthOptions& o, const SynthSummary& plan) {
  const int64_t available = o.available_bytes >= 0 ? o.available_bytes : filesystem_available_bytes(o.out_dir);
  if (available < 0) return;  // cannot tell: a failed write names the path
  const uint64_t need = plan.bytes + (64ull << 20);
  DSV4_CHECK_IN("make-model", static_cast<uint64_t>(available) >= need,
                "output directory %s: the checkpoint needs about %llu bytes (%.3f GB, %llu tensors) but its filesystem "
                "has %llu bytes (%.3f GB) available; free space, choose another --out or make fewer layers/experts",
                o.out_dir.c_str(), static_cast<unsigned long long>(need), static_cast<double>(need) / 1e9,
                static_cast<unsigned long long>(plan.tensors), static_cast<unsigned long long>(available),
                static_cast<double>(available) / 1e9);
}

// Checked before anything is written, so a bad --tokenizer leaves no half-made checkpoint.
void check_tokenizer_source(const SynthOptions& o) {
  if (o.tokenizer_dir.empty()) return;
  DSV4_CHECK_IN("make-model", fs::is_regular_file(o.tokenizer_dir + "/tokenizer.json"),
                "--tokenizer %s has no tokenizer.json", o.tokenizer_dir.c_str());
}

void write_tokenizer(const ModelConfig& config, const SynthOptions& o) {
  if (o.tokenizer_dir.empty()) {
    write_file_atomic(o.out_dir + "/tokenizer.json", synth_tokenizer_json(config.vocab_size).dump(2));
    write_file_atomic(o.out_dir + "/tokenizer_config.json", synth_tokenizer_config_json().dump(2));
    return;
  }
  const std::string src = o.tokenizer_dir + "/tokenizer.json";
  write_file_atomic(o.out_dir + "/tokenizer.json", read_file(src));
  const std::string cfg = o.tokenizer_dir + "/tokenizer_config.json";
  if (fs::exists(cfg)) write_file_atomic(o.out_dir + "/tokenizer_config.json", read_file(cfg));
}

}  // namespace

ModelConfig synth_preset_config(const std::string& preset, int layers, int experts) {
  if (preset == "flash") return ModelConfig::flash(layers > 0 ? layers : 43, experts > 0 ? experts : 256);
  DSV4_CHECK_IN("make-model", preset == "tiny", "unknown preset '%s' (tiny or flash)", preset.c_str());
  ModelConfig c = ModelConfig::tiny();
  if (layers > 0 && layers != c.num_layers) {
    const int csa = c.compress_ratios[1], hca = c.compress_ratios[2];
    c.num_layers = layers;
    c.compress_ratios.clear();
    for (int l = 0; l < layers; ++l) c.compress_ratios.push_back(l == 0 ? 0 : (l % 2 == 1 ? csa : hca));
    for (int s = 0; s < c.num_nextn_predict_layers; ++s) c.compress_ratios.push_back(0);
    c.num_hash_layers = std::min(c.num_hash_layers, layers);
  }
  if (experts > 0) {
    c.n_routed_experts = experts;
    c.num_experts_per_tok = std::min(c.num_experts_per_tok, experts);
  }
  c.check();
  return c;
}

SynthSummary synth_plan(const ModelConfig& config, const SynthOptions& o) {
  const auto tensors = inventory_expected(config, o.mtp_stages);
  const InventoryTotals totals = inventory_totals(tensors);
  const std::vector<size_t> shard_of = CheckpointWriter::plan_shards(specs_of(tensors), o.max_shard_bytes);
  const int shards = shard_of.empty() ? 0 : static_cast<int>(shard_of.back()) + 1;
  return {totals.tensors, totals.bytes, shards, o.mtp_stages};
}

SynthSummary synth_checkpoint_write(const ModelConfig& config, const SynthOptions& o) {
  DSV4_CHECK_IN("make-model", !o.out_dir.empty(), "no output directory given");
  check_out_dir_empty(o.out_dir);
  check_tokenizer_source(o);
  const auto tensors = inventory_expected(config, o.mtp_stages);
  const auto units = units_of(tensors);
  const SynthSummary plan = synth_plan(config, o);
  check_free_space(o, plan);
  // Imported weights are checked whole (names, shapes, dtypes, nothing left over) before a write.
  std::optional<Checkpoint> source;
  std::optional<WeightsImport> imported;
  if (!o.weights_dir.empty()) {
    source.emplace(Checkpoint::open(o.weights_dir));
    const int stages = inventory_mtp_stages(source->names());
    DSV4_USER_CHECK("make-model", stages == o.mtp_stages,
                    "%s: holds %d MTP stage(s) (mtp.S.* tensors); its config.json has num_nextn_predict_layers %d",
                    o.weights_dir.c_str(), stages, o.mtp_stages);
    imported.emplace(*source, config, tensors);
  }
  make_directories(o.out_dir);

  CheckpointWriter writer(o.out_dir, specs_of(tensors), o.max_shard_bytes);
  const int threads = parallel_threads(o.threads);
  // Batches bound memory (at most ~1 GiB of drawn bytes, or a single larger unit) while giving
  // every thread work.
  const uint64_t batch_bytes_cap = 1ull << 30;
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  uint64_t written = 0;
  for (size_t u0 = 0; u0 < units.size();) {
    size_t u1 = u0;
    uint64_t batch_bytes = 0;
    while (u1 < units.size() && (u1 == u0 || batch_bytes + units[u1].bytes <= batch_bytes_cap) &&
           u1 - u0 < static_cast<size_t>(64 * threads)) {
      batch_bytes += units[u1].bytes;
      ++u1;
    }
    std::vector<SynthPair> drawn(u1 - u0);
    parallel_for(u1 - u0, threads, [&](size_t k) {
      const Unit& u = units[u0 + k];
      const ExpectedTensor& t = tensors[u.first];
      if (u.count == 2) {
        drawn[k] = imported ? imported->linear(t, tensors[u.first + 1], config.fp8_block)
                            : synth_encoded_linear(config, t, tensors[u.first + 1], o.seed);
      } else {
        drawn[k].weight = imported ? imported->plain(t) : synth_tensor(config, t, o.seed);
      }
    });
    for (size_t k = 0; k < drawn.size(); ++k) {
      const Unit& u = units[u0 + k];
      writer.write(tensors[u.first].name, drawn[k].weight);
      if (u.count == 2) writer.write(tensors[u.first + 1].name, drawn[k].scale);
      written += u.bytes;
    }
    u0 = u1;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_report > std::chrono::seconds(10)) {
      const double s = std::chrono::duration<double>(now - start).count();
      log_info("make-model: %.2f / %.2f GB (%.0f%%), %.0f MB/s", written / 1e9, plan.bytes / 1e9,
               100.0 * written / plan.bytes, written / 1e6 / s);
      last_report = now;
    }
  }
  writer.finish();
  write_file_atomic(o.out_dir + "/config.json", config.to_release_json().dump(2) + "\n");
  write_tokenizer(config, o);
  if (o.calibration_records > 0) {
    write_file_atomic(o.out_dir + "/calib.jsonl", synth_calibration_jsonl(o.calibration_records, o.seed, o.calibration_sentences));
  }
  fsync_directory(o.out_dir);
  return {plan.tensors, plan.bytes, static_cast<int>(writer.shard_names().size()), o.mtp_stages};
}

}  // namespace dsv4::model

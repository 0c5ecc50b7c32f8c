// calibrate.cpp: calibrate_run (calibrate.h) as its steps, in order: preflight (the options, the
// paths, the source's config.json and its audit), the calibration data and this rank's share of
// it, the run state (identity, resume, free space, the writer), the pipeline, and the finish (the
// per-rank lines and calib_manifest.json of run_manifest.h, the artifact's side files, the
// closing log lines); plus checkpoint_identity.
#include "calib/calibrate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "calib/artifact_config.h"
#include "calib/artifact_decode.h"
#include "calib/artifact_layout.h"
#include "calib/artifact_writer.h"
#include "calib/cpu_only.h"
#include "calib/heldout.h"
#include "calib/layer_executor.h"
#include "calib/model_card.h"
#include "calib/module_plan.h"
#include "calib/profile_turboquant.h"
#include "calib/run_checkpoint.h"
#include "calib/run_lock.h"
#include "calib/run_manifest.h"
#include "calib/run_report.h"
#include "calib/run_watch.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/rng.h"
#include "dist/run_phase.h"
#include "data/calib_data.h"
#include "data/sample_hash.h"
#include "data/tokenizer.h"
#include "common/device.h"
#include "model/checkpoint_audit.h"
#include "model/inventory.h"

namespace dsv4::calib {
namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

// The safetensors header of a file: its 8-byte length prefix and the JSON after it.
std::string header_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  DSV4_CHECK_IN("manifest", f.good(), "cannot read %s", path.c_str());
  uint64_t len = 0;
  f.read(reinterpret_cast<char*>(&len), 8);
  DSV4_CHECK_IN("manifest", f.good() && len < kMaxHeaderBytes, "%s has no valid safetensors header", path.c_str());
  std::string h(8 + len, '\0');
  std::memcpy(h.data(), &len, 8);
  f.read(h.data() + 8, static_cast<std::streamsize>(len));
  return h;
}

// Preflight, first part: the device, the paths and the source's config.json. Everything that can
// fail does so before any output exists (on every rank; a failure on one rank aborts the job).
model::ModelConfig preflight_config(const Recipe& r, const CalibrateOptions& o, int rank) {
  if (o.device == ComputeDevice::kCuda) {
    cpu_only_check(r, true);
    DSV4_USER_CHECK("calibrate", built_with_cuda(),
                    "--device cuda: this dsv4-calib was built without CUDA (configure with the cuda preset)");
    DSV4_USER_CHECK("calibrate", device_count() > 0, "--device cuda: no usable CUDA device on this machine");
    DSV4_USER_CHECK("calibrate", o.gpu >= 0 && o.gpu < device_count(),
                    "--device cuda: rank %d takes GPU %d (its index among the ranks on this host), but %d GPU(s) are "
                    "visible; start at most one rank per GPU on each host",
                    rank, o.gpu, device_count());
  }
  {
    std::error_code ec;
    DSV4_USER_CHECK("calibrate", fs::weakly_canonical(r.output.dir, ec) != fs::weakly_canonical(r.model, ec),
                    "--out %s is the source checkpoint (--model %s); the artifact needs a directory of its own: choose "
                    "another --out (or output.dir in the recipe)",
                    r.output.dir.c_str(), r.model.c_str());
  }
  checkpoint_dir_check(r.model, "--model, or model.path in the recipe");
  const model::ModelConfig config = checkpoint_config_load(r.model);
  // An occupied --out is refused now, before the data is read or the plan printed (open_or_create
  // below checks it again, and checks an interrupted run against this run's identity).
  RunCheckpoint::out_dir_check(r.output.dir);
  if (rank == 0) RunLock::probe(r.output.dir);  // another run on this --out: refused now, not after the data
  return config;
}

// Preflight, second part: the source holds exactly the tensors its config.json implies.
model::AuditReport preflight_audit(const Checkpoint& source, const model::ModelConfig& config, const Recipe& r) {
  model::AuditReport audit = model::checkpoint_audit(source, config);
  if (!audit.ok()) {
    std::string first;
    for (const auto* list : {&audit.missing, &audit.unexpected, &audit.mismatched, &audit.problems}) {
      for (size_t i = 0; i < list->size() && i < 3; ++i) first += "\n  " + (*list)[i];
    }
    DSV4_USER_FAIL("calibrate", "source %s does not match the inventory its config.json implies (%zu missing, %zu "
                   "unexpected, %zu mismatched, %zu problems; `dsv4-calib inspect %s` lists them):%s",
                   r.model.c_str(), audit.missing.size(), audit.unexpected.size(), audit.mismatched.size(),
                   audit.problems.size(), r.model.c_str(), first.c_str());
  }
  return audit;
}

// A recipe that quantizes nothing would copy the source and exit 0: almost always targets that
// match no module, or only modules that are not Linear (norms, embeddings). An error unless the
// user says that is what they want.
void empty_plan_check(const Recipe& r, const ModulePlan& plan, bool allow_empty) {
  for (const PlannedModule& m : plan.modules) {
    if (m.quantized()) return;
  }
  if (allow_empty) {
    log_warn("%s quantizes none of the %zu Linear modules (--allow-empty): the artifact is the source's weights",
             r.origin.c_str(), plan.modules.size());
    return;
  }
  const std::string first_warning = plan.warnings.empty() ? "" : "; " + plan.warnings.front();
  DSV4_USER_FAIL("calibrate",
                 "%s quantizes none of the %zu Linear modules: its targets match no module, or only modules that "
                 "are not Linear, such as norms and embeddings%s; fix the targets (`dsv4-calib plan --recipe %s` "
                 "shows the table), or pass --allow-empty to write the source unquantized",
                 r.origin.c_str(), plan.modules.size(), first_warning.c_str(), r.origin.c_str());
}

// The calibration data (only when something needs it) and this rank's contiguous share of it.
struct RunData {
  std::optional<data::CalibData> data;
  std::vector<std::vector<int64_t>> samples;  // this rank's token ids
  std::vector<int64_t> sample_lengths;        // all samples, for snapshots
  data::SampleRange mine;
};

RunData run_data_load(const Recipe& r, const dist::Communicator& comm, bool cuda) {
  RunData d;
  if (!r.needs_data()) return d;
  DSV4_USER_CHECK("calibrate", !r.dataset.files.empty(),
                  "%s: the recipe needs calibration data (GPTQ or static activation scales) but dataset.files is "
                  "empty: set it, or pass --dataset FILE",
                  r.origin.c_str());
  const data::Tokenizer tok = r.tokenizer.empty()
                                  ? data::Tokenizer::load(r.model, "--model, or model.path in the recipe")
                                  : data::Tokenizer::load(r.tokenizer, "model.tokenizer in the recipe");
  d.data = data::calib_data_build(tok, r.dataset);
  DSV4_USER_CHECK("calibrate", !d.data->samples.empty(),
                  "%s: the dataset (dataset.files, or --dataset) gave no samples", r.origin.c_str());
  heldout_check_samples(r.calibration.heldout, static_cast<int64_t>(d.data->samples.size()), r.origin);
  if (r.calibration.heldout.enabled()) {
    log_info("held-out validation: %lld of %zu samples held out (by sample index) for the held-out Hessians",
             static_cast<long long>(heldout_count(r.calibration.heldout, static_cast<int64_t>(d.data->samples.size()))),
             d.data->samples.size());
  }
  // Ranks take whole forward blocks where the GPU runs one per call (layer_executor.h).
  const int64_t block = std::max<int64_t>(1, forward_sample_block(cuda, r.calibration.hessian_sums));
  d.mine = data::calib_data_rank_range(*d.data, comm.rank(), comm.world(), block);
  for (const data::CalibSample& s : d.data->samples) d.sample_lengths.push_back(static_cast<int64_t>(s.ids.size()));
  for (int64_t i = d.mine.begin; i < d.mine.end; ++i) {
    const data::CalibSample& s = d.data->samples[static_cast<size_t>(i)];
    d.samples.emplace_back(s.ids.begin(), s.ids.end());
  }
  // calib_data_build has logged the samples and tokens; only the split is new here.
  if (comm.world() > 1) {
    log_info("calibration data split over %d ranks: rank 0 takes samples [%lld, %lld)", comm.world(),
             static_cast<long long>(d.mine.begin), static_cast<long long>(d.mine.end));
  }
  return d;
}

void plan_summary_log(const Recipe& r, const ModulePlan& plan, const ArtifactLayout& layout) {
  int64_t quantized = 0;
  for (const PlannedModule& m : plan.modules) quantized += m.quantized() ? 1 : 0;
  log_info("%s -> %s: %lld of %zu Linear modules quantized, %zu output tensors (%.3f GB), %d segments",
           r.model.c_str(), r.output.dir.c_str(), static_cast<long long>(quantized), plan.modules.size(),
           layout.tensors.size(), static_cast<double>(layout.bytes()) / 1e9, layout.num_segments);
}

// What a resumed run must match: the recipe, the source, the data and the artifact's shards.
RunIdentity run_identity_make(const Recipe& r, const std::string& recipe_yaml, const Checkpoint& source,
                              const std::optional<data::CalibData>& data, const ArtifactLayout& layout) {
  RunIdentity id;
  id.recipe_fnv = data::sample_hash_hex(hash_fnv1a64(recipe_yaml));
  id.source_fnv = data::sample_hash_hex(hash_fnv1a64(checkpoint_identity(source).dump()));
  id.data_fnv = data ? data::sample_hash_hex(data::calib_data_hash(*data)) : "none";
  id.num_segments = layout.num_segments;
  id.shard_names = ArtifactWriter::planned_shard_names(layout, r.output.shard_bytes);
  return id;
}

// Space for what is still to be written (rank 0): the shards not yet on disk, and the snapshots
// (two at a time while the newer one is committed).
void run_space_check(const Recipe& r, const model::ModelConfig& config, const ArtifactLayout& layout,
                     const std::optional<data::CalibData>& data, const RunIdentity& id) {
  uint64_t on_disk = 0;
  std::error_code ec;
  for (const std::string& s : id.shard_names) {
    if (fs::exists(r.output.dir + "/" + s, ec)) on_disk += fs::file_size(r.output.dir + "/" + s, ec);
  }
  const uint64_t artifact = layout.bytes() > on_disk ? layout.bytes() - on_disk : 0;
  uint64_t run_state = data ? 2ull * static_cast<uint64_t>(data->num_tokens()) *
                                  static_cast<uint64_t>(config.hc_dim()) * sizeof(float)
                            : 0;
  // Between snapshots (checkpoint_every > 1) the layers since the last one stay staged, their
  // solved modules' encoded tensors, for a replay: up to checkpoint_every - 1 layers of them.
  if (data && r.calibration.propagate_error && r.run.checkpoint_every > 1) {
    std::map<int, uint64_t> per_segment;
    for (const OutputTensor& t : layout.tensors) {
      if (t.origin == OutputOrigin::kQuantized) per_segment[t.segment] += TensorSpec{t.name, t.dtype, t.shape}.bytes();
    }
    uint64_t largest = 0;
    for (const auto& [seg, b] : per_segment) largest = std::max(largest, b);
    run_state += static_cast<uint64_t>(r.run.checkpoint_every - 1) * largest;
  }
  output_space_check(r.output.dir, artifact, run_state);
}

// The writer (rank 0): shards commit into the run state as they are written; a resumed run's
// writer starts at the first segment still to compute, with the staged ones to replay.
std::unique_ptr<ArtifactWriter> artifact_writer_open(const Recipe& r, const ArtifactLayout& layout,
                                                     const Checkpoint& source, const model::ModelConfig& config,
                                                     RunCheckpoint& ck) {
  auto writer = std::make_unique<ArtifactWriter>(r.output, layout, source, config);
  writer->commit_shards_as_written([&ck](const std::string& shard) { ck.on_shard_committed(shard); });
  if (ck.resuming()) {
    writer->resume_at(ck.first_segment(), [&ck](int seg) {
      return ck.has_staged(seg) ? ck.staged(seg) : std::vector<SolvedModule>{};
    });
  }
  return writer;
}

// What rank 0's RunWatch needs: the output bytes of each segment, whether the run resumes.
RunWatchStart run_watch_start(const Recipe& r, const CalibrateOptions& o, const ArtifactLayout& layout,
                              const RunCheckpoint& ck, int world) {
  RunWatchStart w;
  w.out_dir = r.output.dir;
  w.resuming = ck.resuming();
  w.num_segments = layout.num_segments;
  w.first_segment = ck.first_segment();
  w.world = world;
  w.device = o.device == ComputeDevice::kCuda ? "cuda" : "cpu";
  w.segment_bytes.assign(static_cast<size_t>(layout.num_segments), 0);
  for (const OutputTensor& t : layout.tensors) {
    if (t.segment >= 0 && t.segment < layout.num_segments) {
      w.segment_bytes[static_cast<size_t>(t.segment)] += TensorSpec{t.name, t.dtype, t.shape}.bytes();
    }
  }
  w.log_lines = o.progress;
  w.bar = o.progress && o.progress_bar;
  return w;
}

// The closing lines: what was written, where the artifact is and what to do with it, for a user
// at the end of a long log.
void finish_log(const Recipe& r, const ArtifactLayout& layout, const CalibrateResult& res, int fallbacks,
                double seconds) {
  log_info("wrote %s: %zu tensors, %.3f GB in %d shard(s), %lld GPTQ fallbacks, %.1f s", r.output.dir.c_str(),
           layout.tensors.size(), static_cast<double>(res.bytes) / 1e9, res.shards, static_cast<long long>(fallbacks),
           seconds);
  log_info("done: the artifact is %s; open %s/report.html for plots of each layer's times, error vs RTN and "
           "tokens per expert (README.md there is the model card, calib_manifest.json the numbers)",
           r.output.dir.c_str(), r.output.dir.c_str());
  log_info("next: dsv4-calib verify %s --source %s", r.output.dir.c_str(), r.model.c_str());
  if (!r.dataset.files.empty()) {
    log_info("      dsv4-calib eval --model %s --reference %s --data %s", r.output.dir.c_str(), r.model.c_str(),
             r.dataset.files.front().c_str());
  }
}

}  // namespace

ordered_json checkpoint_identity(const Checkpoint& ckpt) {
  ordered_json files = ordered_json::object();
  for (const std::string& f : ckpt.shard_files()) {
    const std::string path = ckpt.dir() + "/" + f;
    files[f] = {{"bytes", static_cast<uint64_t>(fs::file_size(path))},
                {"header_fnv1a64", data::sample_hash_hex(hash_fnv1a64(header_bytes(path)))}};
  }
  for (const char* f : {"model.safetensors.index.json", "config.json"}) {
    const std::string path = ckpt.dir() + "/" + f;
    if (fs::exists(path)) files[f] = {{"fnv1a64", data::sample_hash_hex(hash_fnv1a64(read_file(path)))}};
  }
  return files;
}

CalibrateResult calibrate_run(const Recipe& r, const CalibrateOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  DSV4_USER_CHECK("calibrate", !r.model.empty(), "%s: no model: set model.path in the recipe, or pass --model DIR",
                  r.origin.c_str());
  DSV4_USER_CHECK("calibrate", !r.output.dir.empty(),
                  "%s: no output directory: set output.dir in the recipe, or pass --out DIR", r.origin.c_str());

  std::unique_ptr<dist::Communicator> self;
  if (!o.comm) self = dist::communicator_self();
  dist::Communicator& comm = o.comm ? *o.comm : *self;
  const bool writes = comm.rank() == 0;

  // Preflight: everything that can fail does so before any output exists.
  dist::RunPhase::set("run", "preflight");
  const model::ModelConfig config = preflight_config(r, o, comm.rank());
  const Checkpoint source = Checkpoint::open(r.model);
  const model::AuditReport audit = preflight_audit(source, config, r);
  const ModulePlan plan = module_plan_build(r, config, audit.mtp_stages);
  for (const std::string& w : plan.warnings) log_warn("%s", w.c_str());
  empty_plan_check(r, plan, o.allow_empty);
  const ordered_json cfg = artifact_config_json(read_file(r.model + "/config.json"), r, plan, config);
  const ArtifactLayout layout = artifact_layout(r, plan, config, source);
  RunData d = run_data_load(r, comm, o.device == ComputeDevice::kCuda);
  plan_summary_log(r, plan, layout);

  // The run state: a new run, or the interrupted one in the output directory (resume).
  const std::string recipe_yaml = recipe_to_yaml(r);
  const RunIdentity id = run_identity_make(r, recipe_yaml, source, d.data, layout);
  // Every rank has checked --out (preflight_config) before rank 0 creates anything in it: a rank
  // still at its preflight would otherwise find rank 0's fresh run state and refuse the directory.
  comm.barrier();
  std::optional<RunLock> lock;  // held by rank 0 until the run ends
  if (writes) lock.emplace(RunLock::acquire(r.output.dir));
  RunCheckpoint ck = RunCheckpoint::open_or_create(r.output.dir, id, comm, o.restart);
  if (writes) run_space_check(r, config, layout, d.data, id);
  std::unique_ptr<ArtifactWriter> writer;
  if (writes) writer = artifact_writer_open(r, layout, source, config, ck);

  PipelineInputs in;
  in.recipe = &r;
  in.plan = &plan;
  in.config = &config;
  in.source = &source;
  in.layout = &layout;
  in.samples = std::move(d.samples);
  in.threads = o.threads;
  in.device = o.device;
  in.gpu = o.gpu;
  in.gpu_memory = o.gpu_memory;
  in.mode = o.device == ComputeDevice::kCuda ? model::NumericMode::kBf16 : o.mode;  // the GPU forward is bf16
  in.comm = &comm;
  in.checkpoint = &ck;
  in.first_sample = d.mine.begin;
  in.sample_lengths = std::move(d.sample_lengths);
  CalibrateResult res;
  std::optional<RunWatch> watch;  // rank 0: the layer lines, progress.jsonl, the bar on a terminal
  if (writes) watch.emplace(run_watch_start(r, o, layout, ck, comm.world()));
  res.report = pipeline_run(in, writer.get(), [&](const LayerReport& l) {
    if (watch) watch->on_layer(l);
  });

  ordered_json ranks = rank_reports_gather(res.report, static_cast<int64_t>(in.samples.size()), comm);
  if (writes) rank_reports_log(ranks);
  if (watch) watch->finish(ranks, res.report.seconds);
  if (!writes) {
    comm.barrier();  // rank 0 finishing the artifact
    res.out_dir = r.output.dir;
    return res;
  }

  ordered_json m = run_manifest_build({.recipe = r,
                                       .options = o,
                                       .recipe_yaml = recipe_yaml,
                                       .source = source,
                                       .mtp_stages = audit.mtp_stages,
                                       .world = comm.world(),
                                       .mode = in.mode,
                                       .ranks = std::move(ranks),
                                       .data = d.data ? &*d.data : nullptr,
                                       .report = res.report,
                                       .checkpoint = ck});
  // The run's records beside the weights (issue 25): the model card and report.html, from the
  // manifest and progress.jsonl, so `dsv4-calib report OUT` can write them again.
  const ReportRun run = report_run_from(r.output.dir, m);
  std::vector<std::pair<std::string, std::string>> files = {
      {"config.json", cfg.dump(2) + "\n"},
      {"recipe.yaml", recipe_yaml},
      {"calib_manifest.json", m.dump(2) + "\n"},
      {kModelCardFile, model_card_markdown({.run = run, .recipe_yaml = recipe_yaml, .config = cfg})},
      {kReportFile, report_html({run})}};
  if (r.output.profile == OutputProfile::kTurboquant) {  // turboquant's loader takes the format from it
    files.emplace_back(kTqConfigFile, turboquant_tq_config(r, plan).dump(2));
  }
  writer->finish(files);
  ck.finish();
  const int fallbacks = m["totals"]["fallbacks"].get<int>();
  res.manifest = std::move(m);
  res.out_dir = r.output.dir;
  res.bytes = layout.bytes();
  res.shards = static_cast<int>(writer->shard_names().size());
  finish_log(r, layout, res, fallbacks, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  comm.barrier();
  return res;
}

}  // namespace dsv4::calib

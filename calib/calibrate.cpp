// calibrate.cpp: preflight -> data -> pipeline -> artifact files (see calibrate.h).
#include "calib/calibrate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "calib/artifact_config.h"
#include "calib/artifact_decode.h"
#include "calib/artifact_layout.h"
#include "calib/artifact_writer.h"
#include "calib/module_plan.h"
#include "calib/run_checkpoint.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/host_memory.h"
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

  // Preflight: everything that can fail does so before any output exists (on every rank; a
  // failure on one rank aborts the job).
  if (o.device == ComputeDevice::kCuda) {
    DSV4_CHECK_IN("calibrate", built_with_cuda(),
                  "--device cuda: this dsv4-calib was built without CUDA (configure with the cuda preset)");
    DSV4_CHECK_IN("calibrate", device_count() > 0, "--device cuda: no usable CUDA device on this machine");
    DSV4_CHECK_IN("calibrate", o.gpu >= 0 && o.gpu < device_count(),
                  "--device cuda: rank %d takes GPU %d (its index among the ranks on this host), but %d GPU(s) are "
                  "visible; start at most one rank per GPU on each host",
                  comm.rank(), o.gpu, device_count());
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
  const Checkpoint source = Checkpoint::open(r.model);
  const model::AuditReport audit = model::checkpoint_audit(source, config);
  if (!audit.ok()) {
    std::string first;
    for (const auto* list : {&audit.missing, &audit.unexpected, &audit.mismatched, &audit.problems}) {
      for (size_t i = 0; i < list->size() && i < 3; ++i) first += "\n  " + (*list)[i];
    }
    DSV4_FAIL("calibrate", "source %s does not match the inventory its config.json implies (%zu missing, %zu "
              "unexpected, %zu mismatched, %zu problems; `dsv4-calib inspect %s` lists them):%s",
              r.model.c_str(), audit.missing.size(), audit.unexpected.size(), audit.mismatched.size(),
              audit.problems.size(), r.model.c_str(), first.c_str());
  }
  const ModulePlan plan = module_plan_build(r, config, audit.mtp_stages);
  for (const std::string& w : plan.warnings) log_warn("%s", w.c_str());
  const ordered_json cfg = artifact_config_json(read_file(r.model + "/config.json"), r, plan, config);
  const ArtifactLayout layout = artifact_layout(r, plan, config, source);

  // Calibration data, only when something needs it.
  std::optional<data::CalibData> data;
  std::vector<std::vector<int64_t>> samples;
  std::vector<int64_t> sample_lengths;  // all samples, for snapshots
  data::SampleRange mine;
  if (r.needs_data()) {
    DSV4_USER_CHECK("calibrate", !r.dataset.files.empty(),
                    "%s: the recipe needs calibration data (GPTQ or static activation scales) but dataset.files is "
                    "empty: set it, or pass --dataset FILE",
                    r.origin.c_str());
    const data::Tokenizer tok = data::Tokenizer::load(r.tokenizer.empty() ? r.model : r.tokenizer);
    data = data::calib_data_build(tok, r.dataset);
    DSV4_USER_CHECK("calibrate", !data->samples.empty(),
                    "%s: the dataset (dataset.files, or --dataset) gave no samples", r.origin.c_str());
    mine = data::calib_data_rank_range(*data, comm.rank(), comm.world());
    for (const data::CalibSample& s : data->samples) sample_lengths.push_back(static_cast<int64_t>(s.ids.size()));
    for (int64_t i = mine.begin; i < mine.end; ++i) {
      const data::CalibSample& s = data->samples[static_cast<size_t>(i)];
      samples.emplace_back(s.ids.begin(), s.ids.end());
    }
    // calib_data_build has logged the samples and tokens; only the split is new here.
    if (comm.world() > 1) {
      log_info("calibration data split over %d ranks: rank 0 takes samples [%lld, %lld)", comm.world(),
               static_cast<long long>(mine.begin), static_cast<long long>(mine.end));
    }
  }

  int64_t quantized = 0;
  for (const PlannedModule& m : plan.modules) quantized += m.quantized() ? 1 : 0;
  log_info("%s -> %s: %lld of %zu Linear modules quantized, %zu output tensors (%.3f GB), %d segments",
           r.model.c_str(), r.output.dir.c_str(), static_cast<long long>(quantized), plan.modules.size(),
           layout.tensors.size(), static_cast<double>(layout.bytes()) / 1e9, layout.num_segments);

  // The run state: a new run, or the interrupted one in the output directory (resume).
  const std::string recipe_yaml = recipe_to_yaml(r);
  RunIdentity id;
  id.recipe_fnv = data::sample_hash_hex(hash_fnv1a64(recipe_yaml));
  id.source_fnv = data::sample_hash_hex(hash_fnv1a64(checkpoint_identity(source).dump()));
  id.data_fnv = data ? data::sample_hash_hex(data::calib_data_hash(*data)) : "none";
  id.num_segments = layout.num_segments;
  id.shard_names = ArtifactWriter::planned_shard_names(layout, r.output.shard_bytes);
  RunCheckpoint ck = RunCheckpoint::open_or_create(r.output.dir, id, comm, o.restart);
  if (writes) {
    // Space for what is still to be written: the shards not yet on disk, and the snapshots (two
    // at a time while the newer one is committed).
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
  std::unique_ptr<ArtifactWriter> writer;
  if (writes) {
    writer = std::make_unique<ArtifactWriter>(r.output, layout, source, config);
    writer->commit_shards_as_written([&](const std::string& shard) { ck.on_shard_committed(shard); });
    if (ck.resuming()) {
      writer->resume_at(ck.first_segment(), [&](int seg) {
        return ck.has_staged(seg) ? ck.staged(seg) : std::vector<SolvedModule>{};
      });
    }
  }
  PipelineInputs in;
  in.recipe = &r;
  in.plan = &plan;
  in.config = &config;
  in.source = &source;
  in.layout = &layout;
  in.samples = std::move(samples);
  in.threads = o.threads;
  in.device = o.device;
  in.gpu = o.gpu;
  in.gpu_memory = o.gpu_memory;
  in.mode = o.device == ComputeDevice::kCuda ? model::NumericMode::kBf16 : o.mode;  // the GPU forward is bf16
  in.comm = &comm;
  in.checkpoint = &ck;
  in.first_sample = mine.begin;
  in.sample_lengths = std::move(sample_lengths);
  CalibrateResult res;
  res.report = pipeline_run(in, writer.get(), [&](const LayerReport& l) {
    if (o.progress) log_info("%s", layer_report_line(l, layout.num_segments).c_str());
  });

  // Each rank's host, peak host memory, peak Hessian memory (partials in pass A, owned after the
  // reduce) and GPU memory; rank 0 logs a line per rank.
  ordered_json ranks = ordered_json::array();
  {
    const PipelineReport& p = res.report;
    ordered_json me = {{"rank", comm.rank()},
                       {"host", log_context().host},
                       {"samples", static_cast<int64_t>(in.samples.size())},
                       {"host_rss_peak_bytes", peak_rss_bytes()},
                       {"hessian_bytes_partial_peak", p.hessian_bytes_partial_peak},
                       {"hessian_bytes_owned_peak", p.hessian_bytes_owned_peak}};
    if (p.gpu >= 0) {
      me["gpu"] = {{"device", p.gpu},
                   {"kept_bytes", p.gpu_kept_bytes},
                   {"arena_bytes", p.gpu_arena_bytes},
                   {"arena_high_water_bytes", p.gpu_arena_high_water}};
    }
    for (const std::string& s : comm.all_gather_strings(me.dump())) ranks.push_back(ordered_json::parse(s));
  }
  if (writes) {
    for (const ordered_json& k : ranks) {
      std::string gpu;
      if (k.contains("gpu")) {
        const ordered_json& g = k["gpu"];
        gpu = strfmt("; GPU %d: %.1f GB kept, arena high water %.1f of %.1f GB", g["device"].get<int>(),
                     g["kept_bytes"].get<uint64_t>() / 1e9, g["arena_high_water_bytes"].get<uint64_t>() / 1e9,
                     g["arena_bytes"].get<uint64_t>() / 1e9);
      }
      log_info("rank %d on %s: peak host RSS %.1f GB, Hessians %.2f GB in pass A, %.2f GB owned%s", k["rank"].get<int>(),
               k["host"].get<std::string>().c_str(), k["host_rss_peak_bytes"].get<uint64_t>() / 1e9,
               k["hessian_bytes_partial_peak"].get<uint64_t>() / 1e9,
               k["hessian_bytes_owned_peak"].get<uint64_t>() / 1e9, gpu.c_str());
    }
  }
  if (!writes) {
    comm.barrier();  // rank 0 finishing the artifact
    res.out_dir = r.output.dir;
    return res;
  }

  ordered_json m;
  m["tool"] = {{"name", "dsv4-calib"}, {"version", o.tool_version}, {"commit", o.tool_commit}};
  m["recipe"] = {{"origin", r.origin}, {"fnv1a64", data::sample_hash_hex(hash_fnv1a64(recipe_yaml))}};
  m["source"] = {{"dir", r.model}, {"files", checkpoint_identity(source)}, {"mtp_stages", audit.mtp_stages}};
  m["world_size"] = comm.world();
  m["forward"] = {{"device", o.device == ComputeDevice::kCuda ? "cuda" : "cpu"},
                  {"numeric_mode", in.mode == model::NumericMode::kBf16 ? "bf16" : "fp32"}};
  m["ranks"] = std::move(ranks);
  if (data) m["dataset"] = data::calib_data_manifest(*data);
  m["samples"] = res.report.samples;
  m["tokens"] = res.report.tokens;
  // Segments committed by an earlier (interrupted) process come from the journal.
  ordered_json layers = ordered_json::array();
  for (const ordered_json& l : ck.committed_reports()) layers.push_back(l);
  for (const LayerReport& l : res.report.layers) layers.push_back(layer_report_json(l));
  ordered_json totals;
  for (SolveMethod k : kSolveMethods) {
    int n = 0;
    for (const ordered_json& l : layers) n += l.at("methods").value(std::string(solve_method_name(k)), 0);
    totals[std::string(solve_method_name(k))] = n;
  }
  int fallbacks = 0;
  for (const ordered_json& l : layers) fallbacks += l.at("fallbacks").get<int>();
  totals["fallbacks"] = fallbacks;
  totals["seconds"] = res.report.seconds;
  if (ck.resuming()) totals["resumed_at_segment"] = ck.first_segment();
  m["totals"] = totals;
  m["layers"] = std::move(layers);

  writer->finish({{"config.json", cfg.dump(2) + "\n"}, {"recipe.yaml", recipe_yaml}, {"calib_manifest.json", m.dump(2) + "\n"}});
  ck.finish();
  res.manifest = std::move(m);
  res.out_dir = r.output.dir;
  res.bytes = layout.bytes();
  res.shards = static_cast<int>(writer->shard_names().size());
  log_info("wrote %s: %zu tensors, %.3f GB in %d shard(s), %lld GPTQ fallbacks, %.1f s", r.output.dir.c_str(),
           layout.tensors.size(), static_cast<double>(res.bytes) / 1e9, res.shards, static_cast<long long>(fallbacks),
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  // Where the artifact is and what to do with it, for a user at the end of a long log.
  log_info("done: the artifact is %s; %s/calib_manifest.json has each layer's error vs RTN, methods and times",
           r.output.dir.c_str(), r.output.dir.c_str());
  log_info("next: dsv4-calib verify %s --source %s", r.output.dir.c_str(), r.model.c_str());
  if (!r.dataset.files.empty()) {
    log_info("      dsv4-calib eval --model %s --reference %s --data %s", r.output.dir.c_str(), r.model.c_str(),
             r.dataset.files.front().c_str());
  }
  comm.barrier();
  return res;
}

}  // namespace dsv4::calib

// run_manifest.cpp: the per-rank resource reports and calib_manifest.json (run_manifest.h).
#include "calib/run_manifest.h"

#include <utility>

#include "calib/layer_report.h"
#include "calib/module_solve.h"
#include "common/check.h"
#include "common/host_memory.h"
#include "common/log.h"
#include "common/rng.h"
#include "data/sample_hash.h"

namespace dsv4::calib {

using nlohmann::ordered_json;

ordered_json rank_reports_gather(const PipelineReport& p, int64_t samples, dist::Communicator& comm) {
  // Each rank's host, peak host memory, peak Hessian memory (partials in pass A, owned after the
  // reduce) and GPU memory.
  ordered_json ranks = ordered_json::array();
  ordered_json me = {{"rank", comm.rank()},
                     {"host", log_context().host},
                     {"samples", samples},
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
  return ranks;
}

void rank_reports_log(const ordered_json& ranks) {
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

ordered_json run_manifest_build(RunManifestInputs in) {
  const Recipe& r = in.recipe;
  const CalibrateOptions& o = in.options;
  ordered_json m;
  m["tool"] = {{"name", "dsv4-calib"}, {"version", o.tool_version}, {"commit", o.tool_commit}};
  m["recipe"] = {{"origin", r.origin}, {"fnv1a64", data::sample_hash_hex(hash_fnv1a64(in.recipe_yaml))}};
  m["source"] = {{"dir", r.model}, {"files", checkpoint_identity(in.source)}, {"mtp_stages", in.mtp_stages}};
  m["world_size"] = in.world;
  m["forward"] = {{"device", o.device == ComputeDevice::kCuda ? "cuda" : "cpu"},
                  {"numeric_mode", in.mode == model::NumericMode::kBf16 ? "bf16" : "fp32"}};
  m["ranks"] = std::move(in.ranks);
  if (in.data) m["dataset"] = data::calib_data_manifest(*in.data);
  m["samples"] = in.report.samples;
  m["tokens"] = in.report.tokens;
  // Segments committed by an earlier (interrupted) process come from the journal.
  ordered_json layers = ordered_json::array();
  for (const ordered_json& l : in.checkpoint.committed_reports()) layers.push_back(l);
  for (const LayerReport& l : in.report.layers) layers.push_back(layer_report_json(l));
  ordered_json totals;
  for (SolveMethod k : kSolveMethods) {
    int n = 0;
    for (const ordered_json& l : layers) n += l.at("methods").value(std::string(solve_method_name(k)), 0);
    totals[std::string(solve_method_name(k))] = n;
  }
  int fallbacks = 0;
  for (const ordered_json& l : layers) fallbacks += l.at("fallbacks").get<int>();
  totals["fallbacks"] = fallbacks;
  totals["seconds"] = in.report.seconds;
  if (in.checkpoint.resuming()) totals["resumed_at_segment"] = in.checkpoint.first_segment();
  m["totals"] = totals;
  m["layers"] = std::move(layers);
  return m;
}

}  // namespace dsv4::calib

// run_manifest.h: the end of calibrate_run (calibrate.h): each rank's resource report (host, peak
// memory, Hessian bytes, GPU arena) gathered to every rank and logged by rank 0 a line per rank,
// and calib_manifest.json assembled from what the run knows when the pipeline is done.
//
//   ordered_json ranks = rank_reports_gather(report, samples_on_this_rank, comm);   // every rank
//   if (comm.rank() == 0) rank_reports_log(ranks);
//   ordered_json m = run_manifest_build({.recipe = r, .options = o, ..., .ranks = std::move(ranks)});
//
// Tests: tests/calib/test_pipeline.cpp, tests/e2e/cli_calibrate.sh (the manifest's fields).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "calib/calibrate.h"
#include "calib/pipeline.h"
#include "calib/recipe.h"
#include "calib/run_checkpoint.h"
#include "common/safetensors.h"
#include "data/calib_data.h"
#include "dist/communicator.h"
#include "model/forward_context.h"

namespace dsv4::calib {

// This rank's report, as one JSON object per rank in rank order (a collective: every rank calls it).
nlohmann::ordered_json rank_reports_gather(const PipelineReport& report, int64_t samples, dist::Communicator& comm);

// One log line per rank: host, peak host RSS, Hessian memory in pass A and owned, and the GPU's.
void rank_reports_log(const nlohmann::ordered_json& ranks);

// What calib_manifest.json records, by reference (data may be null: a data-free recipe).
struct RunManifestInputs {
  const Recipe& recipe;
  const CalibrateOptions& options;
  const std::string& recipe_yaml;  // the resolved recipe.yaml the artifact carries
  const Checkpoint& source;
  int mtp_stages = 0;               // of the source, from its audit
  int world = 1;
  model::NumericMode mode = model::NumericMode::kFp32;  // of the forward that ran
  nlohmann::ordered_json ranks;     // rank_reports_gather
  const data::CalibData* data = nullptr;
  const PipelineReport& report;
  const RunCheckpoint& checkpoint;  // the layers earlier (interrupted) processes committed
};

// The manifest: tool, recipe, source identity, ranks, dataset, every layer's report (the
// journal's first) and their totals (solve methods, fallbacks, seconds, the resumed segment).
nlohmann::ordered_json run_manifest_build(RunManifestInputs inputs);

}  // namespace dsv4::calib

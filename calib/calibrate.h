// calibrate.h: the whole job of `dsv4-calib --recipe R` (on every rank of a job): preflight (recipe, source
// audit, plan, config.json and layout, all before any work), calibration data, the pipeline, and
// the artifact with its config.json, recipe.yaml and calib_manifest.json.
//
//   Recipe r = recipe_load("recipes/w4a16_mtp.yaml");
//   recipe_apply_overrides(r, {.model = "runs/tiny", .out = "runs/q"});
//   CalibrateResult res = calibrate_run(r, {});
//
// With a communicator, every rank runs preflight and reads the data, takes its contiguous share
// of the samples (data::calib_data_rank_range), and the pipeline reduces and shares per layer;
// rank 0 alone writes the artifact, and the manifest records each rank's peak Hessian memory.
// Fails closed: a damaged source (missing, unexpected or mis-typed tensors), a plan vLLM could
// not load, or an existing non-empty output directory stop the run before anything is written.
// Tests: tests/calib/test_pipeline.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "calib/pipeline.h"
#include "calib/recipe.h"
#include "dist/communicator.h"

namespace dsv4::calib {

struct CalibrateOptions {
  int threads = 0;            // module solves in parallel; 0: all cores
  std::string tool_version = "dev";
  std::string tool_commit = "unknown";
  bool progress = true;       // one log line per layer
  bool progress_bar = false;  // and a live bar under the log (launch/ sets it when stdout is a terminal)
  dist::Communicator* comm = nullptr;  // null: one process; else every rank calls calibrate_run
  bool restart = false;                // discard an interrupted run in the output directory
  bool allow_empty = false;            // a recipe that quantizes no module is allowed (else an error)
  ComputeDevice device = ComputeDevice::kCpu;  // kCuda: passes (and GPTQ) on GPU `gpu`, bf16 mode
  int gpu = 0;  // this rank's CUDA device: the launcher passes its local rank (one rank per GPU)
  uint64_t gpu_memory = 0;  // bytes this rank may take on its GPU (0: all free; set when ranks share one)
  model::NumericMode mode = model::NumericMode::kFp32;  // of the CPU forward (kCuda is always bf16)
};

struct CalibrateResult {
  PipelineReport report;
  nlohmann::ordered_json manifest;
  std::string out_dir;
  uint64_t bytes = 0;
  int shards = 0;
};

CalibrateResult calibrate_run(const Recipe& recipe, const CalibrateOptions& options);

// Identity hashes of a checkpoint's files: FNV-1a 64 of each safetensors header (names, dtypes,
// shapes and offsets of every tensor) with the file size, and of the index and config.json.
// Cheap on 160 GB, and enough to tell a resumed run it is reading another source.
nlohmann::ordered_json checkpoint_identity(const Checkpoint& checkpoint);

}  // namespace dsv4::calib

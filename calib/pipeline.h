// pipeline.h: the layer-sequential calibration of one process (DESIGN §2): for each main layer,
// decode its weights, run pass A over the calibration samples with taps collecting Hessians,
// solve every module the recipe quantizes, run pass B with the quantized weights to produce the
// next layer's input (propagate_error), and hand the layer to the writer; then the MTP stages and
// the top level. A segment's write and its commit files (snapshot, staged modules) run on a
// background thread while the next segment decodes, runs pass A and solves; its journal line is
// appended, and `on_layer` called, before the next pass B.
//
//   PipelineInputs in{&recipe, &plan, &config, &source, &layout, samples};
//   PipelineReport rep = pipeline_run(in, writer, [](const LayerReport& l) { print(l); });
//
// Distributed (DESIGN §2): with a communicator of W ranks, `samples` are this rank's share; every
// module of a layer has one owner (dist::ownership_assign over solve costs, the same on every
// rank); pass A's partial Hessians are reduced to the owners, owners solve, the solved modules are
// broadcast so every rank runs pass B, and only the rank given a writer (rank 0) writes.
//
// Forward passes run only up to the last layer holding a module that needs data (GPTQ or a static
// activation scale); a data-free recipe runs no forward at all. GPTQ of the top-level head or of
// MTP modules needs their own forward wiring and is rejected up front, naming the module.
// Tests: tests/calib/test_pipeline.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "calib/artifact_layout.h"
#include "calib/artifact_writer.h"
#include "calib/layer_report.h"
#include "calib/module_plan.h"
#include "calib/module_solve.h"
#include "calib/run_checkpoint.h"
#include "dist/communicator.h"
#include "model/forward_context.h"

namespace dsv4::calib {

// Where the forward passes run. kCuda runs them on PipelineInputs::gpu in the bf16 numeric mode
// (calib/gpu_forwarder.h), and the GPTQ solves the GPU sweep takes (integer codes, act-order
// none/static, up-front qparams; module_solve_gpu_eligible) in batches there too.
enum class ComputeDevice { kCpu, kCuda };

struct PipelineInputs {
  const Recipe* recipe = nullptr;
  const ModulePlan* plan = nullptr;
  const model::ModelConfig* config = nullptr;
  const Checkpoint* source = nullptr;
  const ArtifactLayout* layout = nullptr;
  std::vector<std::vector<int64_t>> samples;  // this rank's token ids; may be empty (data-free, or few samples)
  dist::Communicator* comm = nullptr;         // null: one process
  // Resumable runs: the run state (null: none). Starts at checkpoint->first_segment(), rebuilding
  // the states from the newest snapshot and replaying committed layers after it; commits every
  // segment. Snapshots need this rank's first sample index and every sample's length.
  RunCheckpoint* checkpoint = nullptr;
  int64_t first_sample = 0;
  std::vector<int64_t> sample_lengths;  // all samples (every rank)
  model::NumericMode mode = model::NumericMode::kFp32;
  ComputeDevice device = ComputeDevice::kCpu;  // kCuda needs mode kBf16
  int gpu = 0;                                 // the CUDA device of kCuda
  uint64_t gpu_memory = 0;                     // bytes the GPU forwarder may take (0: all free)
  int threads = 0;                            // module solves in parallel; 0: all cores
};

struct PipelineReport {
  std::vector<LayerReport> layers;
  int64_t samples = 0;  // over all ranks
  int64_t tokens = 0;
  double seconds = 0.0;
  // This rank's peak fp32 Hessian bytes: the partial sums pass A holds, and what it keeps after
  // the reduce (its owned modules only).
  uint64_t hessian_bytes_partial_peak = 0;
  uint64_t hessian_bytes_owned_peak = 0;
  // --device cuda: this rank's GPU and what it took there (kept outside the arena, the arena) and
  // the arena's high water; gpu = -1 when the passes ran on the CPU.
  int gpu = -1;
  uint64_t gpu_kept_bytes = 0, gpu_arena_bytes = 0, gpu_arena_high_water = 0;
};

// `writer` may be null on ranks that do not write (every rank but 0).
PipelineReport pipeline_run(const PipelineInputs& inputs, ArtifactWriter* writer,
                            const std::function<void(const LayerReport&)>& on_layer = {});

}  // namespace dsv4::calib

// layer_executor.h: where one layer step's work runs (DESIGN §2). The pipeline loop
// (calib/pipeline.cpp) calls the same steps on every backend, as dist::Communicator hides
// MPI/NCCL/self:
//   - the CPU executor (layer_executor_cpu.cpp): the reference forward on host fp32 states in the
//     run's numeric mode, a host block, every solve on the host;
//   - the CUDA executor (layer_executor_cuda.cpp): the block, the HC states and pass A's Hessian
//     sums on one GPU (calib/gpu_forwarder.h), bf16 passes, the GPTQ solves the GPU sweep takes
//     in batches there, the rest on the host (calib/host_solve.h).
//
//   std::unique_ptr<LayerExecutor> x = layer_executor_create(setup);
//   x->load_states(std::move(embeddings));      // or a snapshot's states
//   x->decode(3);                               // layers.3's block for the passes
//   x->pass_a(stats, PassAOutput::kDiscard);    // statistics only (pass B recomputes the output)
//   stats.reduce_to_owners(...);
//   x->solve(modules, mine, stats, solved);     // this rank's modules
//   solved_share(...);                          // every rank gets every module
//   x->put(modules, solved);                    // the solved weights into the block
//   x->pass_b(false);                           // states <- quantized block(states)
//   const auto* host = x->states_for_snapshot(true);
//
// A layer's steps run in this order; decode starts the next layer. The states handed to a
// snapshot (states_for_snapshot) stay untouched until the next pass_b.
// Tests: tests/calib/test_pipeline.cpp (CPU), tests/calib/test_pipeline_cuda.cu (CUDA vs CPU).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "calib/layer_stats.h"
#include "calib/module_plan.h"
#include "calib/module_solve.h"
#include "calib/recipe.h"
#include "common/safetensors.h"
#include "model/config.h"
#include "model/forward_context.h"

namespace dsv4::calib {

// What pass A's output is: discarded (pass B recomputes it from the quantized layer:
// propagate_error), or kept as the next layer's input (pass_b(true) then takes it).
enum class PassAOutput { kDiscard, kKeep };

class LayerExecutor {
 public:
  virtual ~LayerExecutor() = default;
  // The HC states of this rank's samples, fp32 [tokens, hc_dim] each: embeddings or a snapshot.
  virtual void load_states(std::vector<std::vector<float>> states) = 0;
  // Decodes main layer `layer`'s block from the source for the passes (and the GPU's solves).
  virtual void decode(int layer) = 0;
  // Pass A over every sample of this rank: `stats` collects its wanted Hessians, absmax and
  // expert token counts.
  virtual void pass_a(LayerStats& stats, PassAOutput output) = 0;
  // Solves modules[i] for every i in `mine` (this rank's) into solved[i], from pass A's reduced
  // statistics; the CUDA executor solves the GPU's share straight into its block.
  virtual void solve(const std::vector<const PlannedModule*>& modules, const std::vector<size_t>& mine,
                     LayerStats& stats, std::vector<SolvedModule>& solved) = 0;
  // Puts every solved module of the layer into the block for pass B: the ones this rank solved
  // and the ones shared by other ranks or staged for a replay (which carry only their encoded
  // tensors and are decoded here).
  virtual void put(const std::vector<const PlannedModule*>& modules, std::vector<SolvedModule>& solved) = 0;
  // states <- block(states) for every sample; `reuse_pass_a`: take pass A's kept output instead.
  virtual void pass_b(bool reuse_pass_a) = 0;
  // This rank's states on the host for the segment's commit files, valid until the next pass_b:
  // null when there are none to give (the CUDA executor brings them down only for a snapshot).
  virtual const std::vector<std::vector<float>>* states_for_snapshot(bool snapshot_due) = 0;

  // GPU memory use for the report (0 on the CPU).
  struct Memory {
    int gpu = -1;
    uint64_t kept_bytes = 0, arena_bytes = 0, arena_high_water = 0;
  };
  virtual Memory memory() const { return {}; }
};

// What an executor needs for a whole run; the pointers outlive it.
// The samples one forward call takes as its unit where that must not depend on the world size
// (issue 29): with exact Hessian sums on the GPU, blocks of kGpuSampleBlock consecutive samples,
// which the ranks take whole (data/rank_split.h), so each block's activations, and its Gram
// matrices, are computed alike whoever runs it (a GEMM's bits can depend on its row count). 0
// otherwise: the CPU forward is per sample (model::linear_forward's rows do not depend on their
// batch), and fp32 GPU sums let a rank batch its samples freely (by length).
constexpr int64_t kGpuSampleBlock = 4;
constexpr int64_t forward_sample_block(bool cuda, HessianSums sums) {
  return cuda && sums == HessianSums::kExact ? kGpuSampleBlock : 0;
}

struct LayerExecutorSetup {
  const Recipe* recipe = nullptr;
  const ModulePlan* plan = nullptr;
  const model::ModelConfig* config = nullptr;
  const Checkpoint* source = nullptr;
  const std::vector<std::vector<int64_t>>* samples = nullptr;  // this rank's token ids
  int64_t first_sample = 0;  // the global index of samples[0] (forward_sample_block's blocks)
  model::NumericMode mode = model::NumericMode::kFp32;
  int threads = 0;          // host solves and copies; 0: all cores
  bool forward = true;      // false: a data-free recipe, no pass runs (only solve)
  // The CUDA executor: its GPU, its memory cap (0: all free), and whether pass A's Hessians may
  // stay on the GPU (the reduce takes device buffers: one rank, or NCCL).
  bool cuda = false;
  int gpu = 0;
  uint64_t gpu_memory = 0;
  bool hessians_on_device = false;
};

// The CUDA executor when setup.cuda and setup.forward (it needs the bf16 mode; throws in a CPU
// build or without a GPU), else the CPU executor.
std::unique_ptr<LayerExecutor> layer_executor_create(const LayerExecutorSetup& setup);
std::unique_ptr<LayerExecutor> layer_executor_cpu_create(const LayerExecutorSetup& setup);
std::unique_ptr<LayerExecutor> layer_executor_cuda_create(const LayerExecutorSetup& setup);

}  // namespace dsv4::calib

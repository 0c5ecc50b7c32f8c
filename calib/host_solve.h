// host_solve.h: the solves of one layer's modules on the host, shared by both layer executors
// (calib/layer_executor.h): the module's solve input (its scheme, its Hessians from the layer
// statistics, its input absmax), the source weight from the decoded block or the checkpoint, the
// NVFP4 global-scale amax shared with the fused partner, and module_solve on all cores; plus the
// host decode of solved modules that carry only their encoded tensors.
//
//   HostSolveContext ctx{&recipe, &config, &source, &stats, block_or_null, threads};
//   host_solve(ctx, modules, {0, 3, 4}, solved);         // solved[i] for i in the list
//   solved_dequant_rebuild(solved, modules, threads, [](size_t) { return true; });
//
// Tests: tests/calib/test_pipeline.cpp and test_module_solve.cpp.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "calib/layer_stats.h"
#include "calib/module_plan.h"
#include "calib/module_solve.h"
#include "calib/recipe.h"
#include "common/safetensors.h"
#include "model/block_weights.h"
#include "model/config.h"

namespace dsv4::calib {

struct HostSolveContext {
  const Recipe* recipe = nullptr;
  const model::ModelConfig* config = nullptr;
  const Checkpoint* source = nullptr;
  const LayerStats* stats = nullptr;         // pass A's statistics (reduced: this rank's modules)
  const model::BlockWeights* block = nullptr;  // the decoded block, or null: weights from the checkpoint
  int threads = 0;
};

// A module's solve input without its weight; its Hessians (GPTQ: one, or one per wo_a output
// group) go to `hessians`, which must outlive the input; a non-empty `hessians` is taken as is.
ModuleSolveInput module_solve_input(const HostSolveContext& ctx, const PlannedModule& module,
                                    std::vector<quant::HessianResult>& hessians);

// solved[i] = module_solve of modules[i] for every i in `which`, on ctx.threads cores.
void host_solve(const HostSolveContext& ctx, const std::vector<const PlannedModule*>& modules,
                const std::vector<size_t>& which, std::vector<SolvedModule>& solved);

// The dequantized weights of the solved modules `want(i)` selects that lack them (shared by
// another rank, or staged for a replay: both carry only the encoded tensors), decoded from those
// tensors; bit-identical to what the owner's solve computed (tests/calib/test_module_solve.cpp).
void solved_dequant_rebuild(std::vector<SolvedModule>& solved, const std::vector<const PlannedModule*>& modules,
                            int threads, const std::function<bool(size_t)>& want);

}  // namespace dsv4::calib

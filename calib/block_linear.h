// block_linear.h: a block's linears by release module name, and the substitution of solved
// modules into a host block for pass B (the CPU executor, calib/layer_executor_cpu.cpp, and the
// host solves reading a decoded block's source weights, calib/host_solve.h).
//
//   model::DenseLinear* l = block_linear(block, planned_wq_a);    // by the module's role
//   block_substitute(block, config, modules, solved);   // pass B computes with the solved weights
//
// Tests: tests/calib/test_pipeline.cpp (through the CPU pipeline).
#pragma once

#include <string>
#include <vector>

#include "calib/module_plan.h"
#include "calib/module_solve.h"
#include "model/block_weights.h"
#include "model/config.h"

namespace dsv4::calib {

// The block's linear of a planned module (routed experts excluded: expert_linear); fails naming
// the module when the block has no such linear.
const model::DenseLinear* block_linear(const model::BlockWeights& block, const PlannedModule& module);
model::DenseLinear* block_linear(model::BlockWeights& block, const PlannedModule& module);

// A routed expert's linear of role kExpertW1/W2/W3; `E` is ExpertWeights or const ExpertWeights.
template <typename E>
auto* expert_linear(E& expert, model::LinearRole role) {
  if (role == model::LinearRole::kExpertW1) return &expert.w1;
  if (role == model::LinearRole::kExpertW2) return &expert.w2;
  return &expert.w3;
}

// The source weight [rows, cols] fp32 of a module: from `block` when the forward decoded it (not
// null), else decoded from the checkpoint.
std::vector<float> block_source_weight(const model::BlockWeights* block, const Checkpoint& source,
                                       const model::ModelConfig& config, const PlannedModule& module);

// Replaces the block's weights of the solved modules by their dequantized values (pass B);
// solved[i] belongs to modules[i] and must hold its dequant.
void block_substitute(model::BlockWeights& block, const model::ModelConfig& config,
                      const std::vector<const PlannedModule*>& modules, std::vector<SolvedModule>& solved);

}  // namespace dsv4::calib

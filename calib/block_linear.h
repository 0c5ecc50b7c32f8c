// block_linear.h: a block's linears by release module name, and the substitution of solved
// modules into a host block for pass B (the CPU executor, calib/layer_executor_cpu.cpp, and the
// host solves reading a decoded block's source weights, calib/host_solve.h).
//
//   model::DenseLinear* l = block_linear(block, "layers.3.attn.wq_a");
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

// The linear of a block that a release module name refers to (routed experts excluded); fails
// naming the module when the block has no such linear.
const model::DenseLinear* block_linear(const model::BlockWeights& block, const std::string& module);
model::DenseLinear* block_linear(model::BlockWeights& block, const std::string& module);

// The routed expert's linear a release module name (…experts.E.w1/w2/w3) refers to; `E` is
// ExpertWeights or const ExpertWeights.
template <typename E>
auto* expert_linear(E& expert, const std::string& module) {
  if (module.ends_with(".w1")) return &expert.w1;
  if (module.ends_with(".w2")) return &expert.w2;
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

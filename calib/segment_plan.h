// segment_plan.h: what the pipeline does in each segment of the artifact (top, layers.L, mtp.S),
// planned once and identically on every rank before the first layer: the quantized modules of
// each segment in plan order, each module's owner (the rank that solves it,
// dist::ownership_assign over solve costs), and how far the forward passes must go (the last
// layer holding a module that needs data: GPTQ or a static activation scale).
//
//   SegmentPlan p = segment_plan_build(recipe, plan, config, layout.num_segments, world);
//   for (const PlannedModule* m : p.modules[seg]) ...;  p.owners[seg][i];  p.forward(seg);
//
// Modules that need data outside the main layers (head, MTP) are rejected here, naming the
// module and its recipe group. Tests: tests/calib/test_pipeline.cpp.
#pragma once

#include <vector>

#include "calib/module_plan.h"
#include "calib/recipe.h"
#include "model/config.h"

namespace dsv4::calib {

struct SegmentPlan {
  std::vector<std::vector<const PlannedModule*>> modules;  // [segment] quantized modules, plan order
  std::vector<std::vector<int>> owners;                    // [segment][i] the rank solving modules[segment][i]
  int last_data_layer = -1;                                // -1: a data-free recipe, no forward at all

  // Whether segment `seg` runs the forward passes (its layer is at or before last_data_layer).
  bool forward(int seg) const { return seg >= 1 && seg - 1 <= last_data_layer; }
};

SegmentPlan segment_plan_build(const Recipe& recipe, const ModulePlan& plan, const model::ModelConfig& config,
                               int num_segments, int world);

}  // namespace dsv4::calib

// segment_plan.cpp: modules, owners and the forward's reach per segment (see segment_plan.h).
#include "calib/segment_plan.h"

#include <algorithm>

#include "calib/artifact_layout.h"
#include "common/check.h"
#include "dist/ownership.h"

namespace dsv4::calib {

SegmentPlan segment_plan_build(const Recipe& r, const ModulePlan& plan, const model::ModelConfig& c, int num_segments,
                               int world) {
  SegmentPlan p;
  p.modules.resize(static_cast<size_t>(num_segments));
  for (const PlannedModule& m : plan.modules) {
    if (!m.quantized()) continue;
    const int seg = artifact_segment(m.names.release, c);
    DSV4_CHECK_IN("pipeline", seg < num_segments, "%s has no segment in the layout", m.names.release.c_str());
    p.modules[static_cast<size_t>(seg)].push_back(&m);
    if (!m.needs_data()) continue;
    DSV4_CHECK_IN("pipeline", seg >= 1 && seg <= c.num_layers,
                  "%s (%s) needs calibration data, which is supported for the main layers only so far; quantize it "
                  "data-free (QuantizationModifier without static activations) or exclude it",
                  m.names.release.c_str(), m.scheme->key_path.c_str());
    p.last_data_layer = std::max(p.last_data_layer, seg - 1);
  }
  p.owners.resize(p.modules.size());
  for (size_t seg = 0; seg < p.modules.size(); ++seg) {
    std::vector<double> cost;
    for (const PlannedModule* m : p.modules[seg]) {
      cost.push_back(dist::solve_cost(m->rows, m->cols, m->scheme->gptq_solved()));
    }
    p.owners[seg] = dist::ownership_assign(cost, world);
  }
  return p;
}

}  // namespace dsv4::calib

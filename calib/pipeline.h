// pipeline.h: the layer-sequential calibration of one process (DESIGN §2): for each main layer,
// decode its weights, run pass A over the calibration samples with taps collecting Hessians,
// solve every module the recipe quantizes, run pass B with the quantized weights to produce the
// next layer's input (propagate_error), and hand the layer to the writer; then the MTP stages and
// the top level.
//
//   PipelineInputs in{&recipe, &plan, &config, &source, &layout, samples};
//   PipelineReport rep = pipeline_run(in, writer, [](const LayerReport& l) { print(l); });
//
// Forward passes run only up to the last layer holding a module that needs data (GPTQ or a static
// activation scale); a data-free recipe runs no forward at all. GPTQ of the top-level head or of
// MTP modules needs their own forward wiring and is rejected up front, naming the module.
// Tests: tests/calib/test_pipeline.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "calib/artifact_layout.h"
#include "calib/artifact_writer.h"
#include "calib/module_plan.h"
#include "calib/module_solve.h"
#include "model/forward_context.h"

namespace dsv4::calib {

struct PipelineInputs {
  const Recipe* recipe = nullptr;
  const ModulePlan* plan = nullptr;
  const model::ModelConfig* config = nullptr;
  const Checkpoint* source = nullptr;
  const ArtifactLayout* layout = nullptr;
  std::vector<std::vector<int64_t>> samples;  // token ids; may be empty for data-free recipes
  model::NumericMode mode = model::NumericMode::kFp32;
  int threads = 0;                            // module solves in parallel; 0: all cores
};

struct ModuleReport {
  std::string module;
  SolveMethod method = SolveMethod::kRtn;
  double loss = 0.0;
  double rel_error = -1.0;      // tr(ΔHΔᵀ)/tr(WHWᵀ), -1 without a Hessian
  double rtn_rel_error = -1.0;  // the same for RTN (GPTQ modules)
  double dampening_frac = 0.0;
  quant::GptqFallback fallback = quant::GptqFallback::kNone;
  int64_t tokens = 0;
  double seconds = 0.0;
};

struct LayerReport {
  int segment = 0;
  std::string name;  // "layers.3", "mtp.0", "top"
  double seconds = 0.0, seconds_decode = 0.0, seconds_forward = 0.0, seconds_solve = 0.0, seconds_write = 0.0;
  int64_t hessians = 0;
  std::vector<ModuleReport> modules;
  std::vector<int64_t> expert_tokens;  // routed tokens per expert in pass A (empty without one)
  int count(SolveMethod m) const;
  int fallbacks() const;               // modules whose GPTQ raised damping or fell back to RTN
  double mean_rel_error() const;       // over modules with a Hessian; -1 if none
  double mean_rtn_rel_error() const;
};

struct PipelineReport {
  std::vector<LayerReport> layers;
  int64_t samples = 0;
  int64_t tokens = 0;
  double seconds = 0.0;
};

// One line per layer: time split, modules by method, mean H-weighted error vs RTN, fallbacks,
// expert token range.
std::string layer_report_line(const LayerReport& layer, int num_segments);

PipelineReport pipeline_run(const PipelineInputs& inputs, ArtifactWriter& writer,
                            const std::function<void(const LayerReport&)>& on_layer = {});

}  // namespace dsv4::calib

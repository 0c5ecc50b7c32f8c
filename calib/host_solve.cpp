// host_solve.cpp: one layer's solves on the host (see host_solve.h).
#include "calib/host_solve.h"

#include <algorithm>
#include <cmath>

#include "calib/artifact_decode.h"
#include "calib/block_linear.h"
#include "common/parallel.h"

namespace dsv4::calib {
namespace {

float absmax(const std::vector<float>& v) {
  float a = 0.0f;
  for (float x : v) a = std::max(a, std::fabs(x));
  return a;
}

// The module's fused partner for the NVFP4 global scale (vLLM keeps one for w1 and w3).
std::string fused_partner(const std::string& module) {
  if (module.ends_with(".w1")) return module.substr(0, module.size() - 1) + "3";
  if (module.ends_with(".w3")) return module.substr(0, module.size() - 1) + "1";
  return {};
}

}  // namespace

ModuleSolveInput module_solve_input(const HostSolveContext& ctx, const PlannedModule& m,
                                    std::vector<quant::HessianResult>& hs) {
  const RecipeModifier& mod = module_modifier(*ctx.recipe, m);
  const RecipeGroup& group = mod.groups[static_cast<size_t>(m.group)];
  ModuleSolveInput si{&m, &group, mod.kind, &mod.gptq, nullptr, {}, 0.0f, ctx.stats->amax(m.names.release)};
  if (mod.kind == ModifierKind::kGptq && hs.empty()) {
    if (m.names.release.ends_with(".wo_a")) {
      for (int gi = 0; gi < ctx.config->o_groups; ++gi) hs.push_back(ctx.stats->hessian(m.names.release, m.cols, gi));
    } else {
      hs.push_back(ctx.stats->hessian(m.names.release, m.cols));
    }
  }
  for (const quant::HessianResult& h : hs) si.hessians.push_back(&h);
  return si;
}

void host_solve(const HostSolveContext& ctx, const std::vector<const PlannedModule*>& mods,
                const std::vector<size_t>& which, std::vector<SolvedModule>& solved) {
  parallel_for(which.size(), ctx.threads, [&](size_t j) {
    const size_t i = which[j];
    const PlannedModule& m = *mods[i];
    std::vector<float> weight;
    std::vector<quant::HessianResult> hs;
    ModuleSolveInput si = module_solve_input(ctx, m, hs);
    if (module_solve_needs_weight(si, *ctx.source)) {
      weight = block_source_weight(ctx.block, *ctx.source, *ctx.config, m);
      si.weight = weight.data();
    }
    if (si.group->scheme.weights.strategy == quant::Strategy::kTensorGroup) {
      si.amax_tensor = absmax(weight);
      const std::string partner = fused_partner(m.names.release);
      if (!partner.empty()) {
        PlannedModule p = m;
        p.names.release = partner;
        si.amax_tensor = std::max(si.amax_tensor, absmax(block_source_weight(ctx.block, *ctx.source, *ctx.config, p)));
      }
    }
    solved[i] = module_solve(si, *ctx.source);
  });
}

void solved_dequant_rebuild(std::vector<SolvedModule>& solved, const std::vector<const PlannedModule*>& mods,
                            int threads, const std::function<bool(size_t)>& want) {
  parallel_for(solved.size(), threads, [&](size_t i) {
    const PlannedModule& m = *mods[i];
    if (!want(i) || solved[i].dequant.size() == static_cast<size_t>(m.rows * m.cols)) return;
    solved[i].dequant = encoded_linear_decode(solved[i].tensors, m.names.release, m.rows, m.cols);
  });
}

}  // namespace dsv4::calib

// host_solve.cpp: one layer's solves on the host (see host_solve.h).
#include "calib/host_solve.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "calib/artifact_decode.h"
#include "calib/block_linear.h"
#include "calib/heldout_solve.h"
#include "common/check.h"
#include "common/parallel.h"

namespace dsv4::calib {
namespace {

float absmax(const std::vector<float>& v) {
  float a = 0.0f;
  for (float x : v) a = std::max(a, std::fabs(x));
  return a;
}

// The module's fused partner for the NVFP4 global scale (vLLM keeps one for w1 and w3): the same
// expert's other gate/up linear; nullopt for any other module.
std::optional<PlannedModule> fused_partner(const PlannedModule& m) {
  using model::LinearRole;
  if (!model::linear_role_is_w13(m.role)) return std::nullopt;
  PlannedModule p = m;
  const bool w1 = m.role == LinearRole::kExpertW1 || m.role == LinearRole::kSharedW1;
  p.names.release.back() = w1 ? '3' : '1';  // ...w1 <-> ...w3: the release names differ in the digit
  p.role = m.role == LinearRole::kExpertW1   ? LinearRole::kExpertW3
           : m.role == LinearRole::kExpertW3 ? LinearRole::kExpertW1
           : m.role == LinearRole::kSharedW1 ? LinearRole::kSharedW3
                                             : LinearRole::kSharedW1;
  return p;
}

}  // namespace

ModuleSolveInput module_solve_input(const HostSolveContext& ctx, const PlannedModule& m,
                                    std::vector<quant::HessianResult>& hs) {
  ModuleSolveInput si{&m, nullptr, {}, 0.0f, ctx.stats->amax(m.names.release)};
  if (m.scheme->gptq_solved() && hs.empty()) {
    for (const HessianId& id : module_hessian_ids(m, ctx.config->o_groups)) hs.push_back(ctx.stats->hessian(id, m.cols));
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
    std::vector<quant::HessianResult> cross;  // GPTAQ's 2/n ΔX·Xᵀ, one per Hessian
    if (m.scheme->gptq_solved() && m.scheme->gptq.asymmetric) {
      DSV4_CHECK_IN("solve", ctx.stats->cross() != nullptr, "%s (%s): GPTAQ without ΔX·Xᵀ sums",
                    m.names.release.c_str(), m.scheme->key_path.c_str());
      for (const HessianId& id : module_hessian_ids(m, ctx.config->o_groups)) {
        cross.push_back(ctx.stats->cross()->hessian(id, m.cols));
      }
      for (const quant::HessianResult& c : cross) si.cross.push_back(&c);
    }
    if (module_solve_needs_weight(si, *ctx.source)) {
      weight = block_source_weight(ctx.block, *ctx.source, *ctx.config, m);
      si.weight = weight.data();
    }
    if (m.scheme->scheme.weights.strategy == quant::Strategy::kTensorGroup) {
      si.amax_tensor = absmax(weight);
      if (const std::optional<PlannedModule> p = fused_partner(m)) {
        si.amax_tensor = std::max(si.amax_tensor, absmax(block_source_weight(ctx.block, *ctx.source, *ctx.config, *p)));
      }
    }
    if (ctx.stats->heldout() && m.scheme->gptq_solved()) {
      std::vector<quant::HessianResult> ho;
      std::vector<const quant::HessianResult*> ho_ptrs;
      for (const HessianId& id : module_hessian_ids(m, ctx.config->o_groups)) {
        ho.push_back(ctx.stats->heldout()->hessian(id, m.cols));
      }
      for (const quant::HessianResult& h : ho) ho_ptrs.push_back(&h);
      solved[i] = heldout_solve(si, ho_ptrs, ctx.recipe->calibration.heldout, *ctx.source);
      return;
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

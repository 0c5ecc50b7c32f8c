// heldout_solve.h: one GPTQ module solved under held-out validation (calib/heldout.h): GPTQ at
// every candidate damping of calibration.heldout and RTN, each measured by its Hessian-weighted
// relative error on the held-out Hessian(s), the least kept (heldout_choose); with refit the
// chosen damping is solved once more on the Hessian of every sample (calibration and held-out,
// token-weighted), so the kept module uses all the data. The choice goes to SolvedModule::heldout.
//
//   std::vector<const quant::HessianResult*> ho = {&h_heldout};   // one per wo_a group
//   SolvedModule s = heldout_solve(in, ho, recipe.calibration.heldout, checkpoint);
//   s.heldout.chose_rtn();   // then s.method == kRtn and s.codes are round-to-nearest's
//
// A module whose calibration or held-out Hessian saw no token is solved as without validation
// (module_solve; heldout.chosen stays -1). RTN here is quantizer_rtn of the decoded weight with the
// group's observer, the same RTN the reports compare GPTQ against (rtn_rel_error).
// Tests: tests/calib/test_heldout.cpp.
#pragma once

#include <vector>

#include "calib/module_solve.h"
#include "common/safetensors.h"
#include "quant/hessian.h"

namespace dsv4::calib {

SolvedModule heldout_solve(const ModuleSolveInput& in, const std::vector<const quant::HessianResult*>& heldout,
                           const HeldoutOptions& options, const Checkpoint& source);

// implementation details -------------------------------------------------------------------

// tr(ΔHΔᵀ)/tr(WHWᵀ) of q against w over a module's Hessians (one, or one per wo_a output group:
// rows split evenly, group g's rows with hessians[g]); 0 when the denominator is 0.
double heldout_rel_error(const float* w, const float* q, int64_t rows, int64_t cols,
                         const std::vector<const quant::HessianResult*>& hessians);

// (n_a·A + n_b·B)/(n_a + n_b): the Hessian of both token sets (H = 2/n Σxxᵀ), in double then fp32.
quant::HessianResult heldout_hessian_merge(const quant::HessianResult& a, const quant::HessianResult& b);

}  // namespace dsv4::calib

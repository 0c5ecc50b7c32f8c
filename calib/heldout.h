// heldout.h: held-out validation (issue 24, recipe key calibration.heldout): which samples are
// held out, the recipe section, the choice among a module's candidates and how it is reported.
// GPTQ fits its calibration tokens; with few tokens per Hessian column it can lose to RTN on
// unseen text. A held-out share of the samples feeds a second Hessian H_ho; each GPTQ module is
// solved at every candidate damping and by RTN, and the candidate with the least error
// tr(ΔW H_ho ΔWᵀ) is kept (calib/heldout_solve.h runs the candidates).
//
//   calibration:
//     heldout: {fraction: 0.25, dampings: [0.01, 0.1, 1.0], refit: true}
//
//   heldout_sample(o, 7);              // sample 7 is held out (fraction 0.25: samples 3, 7, 11, ...)
//   int k = heldout_choose({3e-3, 2e-3, 4e-3, 1e-3});   // 3: RTN (the last candidate) wins
//
// Samples are picked by their global index (floor((i+1)·f) > floor(i·f): evenly spread, and
// floor(n·f) of n), never by rank, so the split, both Hessians (exact sums) and every choice
// are the same at any world size and after a resume. The held-out samples feed only the
// held-out Hessians: not the calibration Hessians, static activation scales or the reported
// tokens per expert. The section is written to the artifact's recipe.yaml only when enabled,
// under calibration (which llm-compressor never reads), so other recipes' text and hash stay.
// Tests: tests/calib/test_heldout.cpp, tests/e2e/cli_heldout.sh.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "calib/recipe.h"

namespace dsv4::calib {

class YamlReader;

// What the validation of one module found (SolvedModule::heldout, the journal, the manifest).
struct HeldoutChoice {
  std::vector<double> dampings;  // the candidates' dampening_frac; RTN is the candidate after them
  std::vector<double> errors;    // tr(ΔH_hoΔᵀ)/tr(WH_hoWᵀ) per candidate: dampings..., then RTN
  int chosen = -1;               // index into errors (dampings.size(): RTN); -1: not validated
  int64_t tokens = 0;            // held-out tokens behind H_ho (sum over wo_a groups)
  bool validated() const { return chosen >= 0; }
  bool chose_rtn() const { return validated() && chosen == static_cast<int>(dampings.size()); }
};

// Whether the sample of global index `index` is held out.
bool heldout_sample(const HeldoutOptions& o, int64_t index);
// How many of samples [0, num_samples) are held out.
int64_t heldout_count(const HeldoutOptions& o, int64_t num_samples);
// Refuses (naming the recipe and both counts) a split that leaves no held-out sample or no
// calibration sample; no-op when disabled.
void heldout_check_samples(const HeldoutOptions& o, int64_t num_samples, const std::string& origin);

// The index of the least error; the first of equal ones (candidates in order, RTN last), so a
// tie keeps the smaller damping. Throws for an empty list or a non-finite error.
int heldout_choose(const std::vector<double>& errors);

// calibration.heldout of a recipe (absent: disabled), every key checked.
HeldoutOptions heldout_parse(YamlReader& calibration);
// The section as recipe_to_yaml writes it (enabled only).
nlohmann::ordered_json heldout_json(const HeldoutOptions& o);
// One module's choice as the manifest and journal store it:
// {"chosen": "rtn" | "gptq", "dampening_frac": d, "tokens": n, "errors": {"0.01": e, ..., "rtn": e}}.
nlohmann::ordered_json heldout_choice_json(const HeldoutChoice& c);
// The candidate's name in reports: its damping ("0.01") or "rtn".
std::string heldout_candidate_name(const HeldoutChoice& c, int index);

}  // namespace dsv4::calib

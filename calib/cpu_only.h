// cpu_only.h: the recipe options that only the CPU executor runs, refused with --device cuda by
// one rule, naming each recipe key, before a GPU is bound (the CLI) and again in calibrate():
//   - calibration.heldout (held-out validation): the GPU forward batches samples by length and
//     cannot route a held-out sample's taps to the held-out statistics;
//   - calibration.gptq.asymmetric (GPTAQ): the GPU runs one stream of states, and its GPTQ sweep
//     has no asymmetric term.
//
//   cpu_only_check(recipe, /*cuda=*/true);   // throws a user error listing the keys set
//
// Tests: tests/calib/test_recipe.cpp (CpuOnly).
#pragma once

#include <string>
#include <vector>

#include "calib/recipe.h"

namespace dsv4::calib {

// The recipe keys set in `r` that the CUDA executor does not run (empty: none).
std::vector<std::string> cpu_only_keys(const Recipe& r);
// With cuda, fails naming the recipe and cpu_only_keys(r); no-op otherwise or when there are none.
void cpu_only_check(const Recipe& r, bool cuda);

}  // namespace dsv4::calib

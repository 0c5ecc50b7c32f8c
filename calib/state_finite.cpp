// state_finite.cpp: the non-finite scan of the HC states (see state_finite.h).
#include "calib/state_finite.h"

#include "common/check.h"
#include "common/finite_scan.h"

namespace dsv4::calib {

void states_require_finite(const std::string& layer, StatePass pass, int64_t count, int64_t values) {
  if (count == 0) return;
  const long long n = static_cast<long long>(count), of = static_cast<long long>(values);
  if (pass == StatePass::kLoaded) {
    DSV4_USER_FAIL("pipeline",
                   "the HC states the run starts from (the embeddings, or the snapshot a resume reads) hold %lld NaN "
                   "or infinite value(s) of %lld: the embedding table or the snapshot is damaged (dsv4-calib inspect "
                   "scans the checkpoint; --restart recomputes the snapshot)",
                   n, of);
  }
  const bool a = pass == StatePass::kPassA;
  DSV4_USER_FAIL("pipeline",
                 "%s, %s: the block's output holds %lld NaN or infinite value(s) of %lld: the forward overflowed, and "
                 "nothing is solved from it. The weights it read are finite (each is scanned as it is decoded), so "
                 "%s",
                 layer.c_str(), a ? "pass A (the statistics the solves read)" : "pass B (the next layer's input)", n, of,
                 a ? "look for weights near the format's largest value (a norm or a scale) or calibration data that "
                     "drives the activations past it"
                   : "the block with the layer's quantized weights put in overflowed: look at this layer's modules "
                     "in the run's report (a recipe with more bits or a larger dampening_frac for them)");
}

void tap_input_require_finite(const std::string& module, size_t others, int64_t count, int64_t values) {
  if (count == 0) return;
  const std::string sharing = others == 0 ? "" : strfmt(" (and %zu other module(s) reading it)", others);
  DSV4_USER_FAIL("pipeline",
                 "%s, pass A (the statistics the solves read): its input%s holds %lld NaN or infinite value(s) of "
                 "%lld: the forward overflowed, and nothing is solved from it. The weights it read are finite (each "
                 "is scanned as it is decoded), so look for weights near the format's largest value (a norm or a "
                 "scale) or calibration data that drives the activations past it",
                 module.c_str(), sharing.c_str(), static_cast<long long>(count), static_cast<long long>(values));
}

StateCount states_non_finite(const std::vector<std::vector<float>>& states) {
  StateCount c;
  for (const std::vector<float>& s : states) {
    c.non_finite += non_finite_scan(s.data(), s.size()).count;
    c.values += static_cast<int64_t>(s.size());
  }
  return c;
}

}  // namespace dsv4::calib

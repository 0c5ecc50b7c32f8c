// heldout.cpp: the held-out split, the recipe section, the choice and its report (see heldout.h).
#include "calib/heldout.h"

#include <cmath>
#include <cstdio>

#include "calib/yaml_reader.h"
#include "common/check.h"

namespace dsv4::calib {

bool heldout_sample(const HeldoutOptions& o, int64_t index) {
  if (!o.enabled()) return false;
  // Sample i is held out when the running count floor(i·f) steps up at it: evenly spread, and
  // a function of the global index alone (the same on every rank and at any world size).
  return std::floor(static_cast<double>(index + 1) * o.fraction) > std::floor(static_cast<double>(index) * o.fraction);
}

int64_t heldout_count(const HeldoutOptions& o, int64_t num_samples) {
  int64_t n = 0;
  for (int64_t i = 0; i < num_samples; ++i) n += heldout_sample(o, i) ? 1 : 0;
  return n;
}

void heldout_check_samples(const HeldoutOptions& o, int64_t num_samples, const std::string& origin) {
  if (!o.enabled()) return;
  const int64_t held = heldout_count(o, num_samples);
  DSV4_USER_CHECK("calibrate", held > 0 && held < num_samples,
                  "%s: calibration.heldout.fraction %g of %lld samples holds out %lld; held-out validation needs at "
                  "least one held-out and one calibration sample (raise the fraction or dataset.num_samples)",
                  origin.c_str(), o.fraction, static_cast<long long>(num_samples), static_cast<long long>(held));
}

int heldout_choose(const std::vector<double>& errors) {
  DSV4_CHECK_IN("heldout", !errors.empty(), "no candidate to choose from");
  int best = 0;
  for (size_t i = 0; i < errors.size(); ++i) {
    DSV4_CHECK_IN("heldout", std::isfinite(errors[i]), "candidate %zu has a non-finite held-out error", i);
    if (errors[i] < errors[static_cast<size_t>(best)]) best = static_cast<int>(i);
  }
  return best;
}

HeldoutOptions heldout_parse(YamlReader& cal) {
  HeldoutOptions o;
  YamlReader h = cal.child("heldout");
  if (!h.present()) return o;
  o.fraction = h.get_double("fraction", 0.25);
  if (!(o.fraction > 0.0 && o.fraction < 1.0)) h.fail("fraction", "expected a share of the samples in (0, 1)");
  if (h.has("dampings")) {
    const YAML::Node d = h.take("dampings");
    if (!d.IsSequence() || d.size() == 0) h.fail("dampings", "expected a non-empty list of dampening_frac values");
    o.dampings.clear();
    for (const YAML::Node& v : d) {
      double x = 0;
      if (!v.IsScalar() || !YAML::convert<double>::decode(v, x) || !(x > 0.0) || !std::isfinite(x)) {
        h.fail("dampings", "expected positive numbers (dampening_frac candidates), e.g. [0.01, 0.1, 1.0]");
      }
      o.dampings.push_back(x);
    }
  }
  o.refit = h.get_bool("refit", o.refit);
  h.finish({"fraction", "dampings", "refit"});
  return o;
}

nlohmann::ordered_json heldout_json(const HeldoutOptions& o) {
  return {{"fraction", o.fraction}, {"dampings", o.dampings}, {"refit", o.refit}};
}

std::string heldout_candidate_name(const HeldoutChoice& c, int index) {
  if (index == static_cast<int>(c.dampings.size())) return "rtn";
  DSV4_CHECK_IN("heldout", index >= 0 && index < static_cast<int>(c.dampings.size()), "candidate %d of %zu", index,
                c.dampings.size() + 1);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", c.dampings[static_cast<size_t>(index)]);
  return buf;
}

nlohmann::ordered_json heldout_choice_json(const HeldoutChoice& c) {
  nlohmann::ordered_json j;
  j["chosen"] = c.chose_rtn() ? "rtn" : "gptq";
  if (!c.chose_rtn()) j["dampening_frac"] = c.dampings[static_cast<size_t>(c.chosen)];
  j["tokens"] = c.tokens;
  nlohmann::ordered_json errors = nlohmann::ordered_json::object();
  for (size_t i = 0; i < c.errors.size(); ++i) errors[heldout_candidate_name(c, static_cast<int>(i))] = c.errors[i];
  j["errors"] = std::move(errors);
  return j;
}

}  // namespace dsv4::calib

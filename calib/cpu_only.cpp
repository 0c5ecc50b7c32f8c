// cpu_only.cpp: --device cuda refused for the CPU-only recipe options (see cpu_only.h).
#include "calib/cpu_only.h"

#include "common/check.h"

namespace dsv4::calib {

std::vector<std::string> cpu_only_keys(const Recipe& r) {
  std::vector<std::string> keys;
  if (r.calibration.heldout.enabled()) keys.push_back("calibration.heldout");
  if (r.gptaq()) keys.push_back("calibration.gptq.asymmetric");
  return keys;
}

void cpu_only_check(const Recipe& r, bool cuda) {
  const std::vector<std::string> keys = cpu_only_keys(r);
  if (!cuda || keys.empty()) return;
  std::string list;
  for (const std::string& k : keys) list += (list.empty() ? "" : ", ") + k;
  DSV4_USER_FAIL("calibrate",
                 "--device cuda: %s in %s run%s on the CPU path only so far; leave out --device cuda or %s",
                 list.c_str(), r.origin.c_str(), keys.size() == 1 ? "s" : "", keys.size() == 1 ? "that key" : "those keys");
}

}  // namespace dsv4::calib

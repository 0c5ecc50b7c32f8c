// target_match.cpp: the matcher, with regexes run by the data module's PCRE2 wrapper.
#include "calib/target_match.h"

#include "common/check.h"
#include "data/regex.h"

namespace dsv4::calib {

struct TargetMatcher::Compiled {
  data::Regex regex;
};

TargetMatcher::TargetMatcher(std::vector<std::string> entries, const std::string& where)
    : entries_(std::move(entries)) {
  for (size_t i = 0; i < entries_.size(); ++i) {
    const std::string& e = entries_[i];
    DSV4_CHECK_IN("recipe", !e.empty(), "%s[%zu]: empty target", where.c_str(), i);
    if (e.rfind("re:", 0) != 0) {
      compiled_.push_back(nullptr);
      continue;
    }
    DSV4_CHECK_IN("recipe", e.size() > 3, "%s[%zu]: 're:' without a regex", where.c_str(), i);
    const std::string label = where + "[" + std::to_string(i) + "] '" + e + "'";
    compiled_.push_back(std::make_unique<Compiled>(Compiled{data::Regex::compile(e.substr(3), false, label)}));
  }
}

TargetMatcher::TargetMatcher(TargetMatcher&&) noexcept = default;
TargetMatcher& TargetMatcher::operator=(TargetMatcher&&) noexcept = default;
TargetMatcher::~TargetMatcher() = default;

int TargetMatcher::match(const ModuleNames& n) const {
  for (size_t i = 0; i < entries_.size(); ++i) {
    const std::string& e = entries_[i];
    if (compiled_[i]) {
      const data::Regex& re = compiled_[i]->regex;
      if (re.match_at(n.release, 0) >= 0) return static_cast<int>(i);
      if (n.hf && re.match_at(*n.hf, 0) >= 0) return static_cast<int>(i);
      if (n.vllm && re.match_at(*n.vllm, 0) >= 0) return static_cast<int>(i);
      continue;
    }
    if (e == n.release || (n.hf && e == *n.hf) || (n.vllm && e == *n.vllm)) return static_cast<int>(i);
    for (const std::string& c : n.classes) {
      if (e == c) return static_cast<int>(i);
    }
  }
  return -1;
}

}  // namespace dsv4::calib

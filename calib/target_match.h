// target_match.h: compressed-tensors' target/ignore matching (utils/match.py, gptq_and_formats.md
// §2.1) over a module's three names. An entry "re:<regex>" matches when the regex matches at the
// start of a name (Python re.match: anchored at the start only); any other entry must equal a
// name or one of the module's class names ("Linear"). The names tried are the release name and,
// as aliases, the transformers 5.17 and vLLM names, so recipes written for llm-compressor (HF
// names) or for vLLM's config (fused names) select the same release modules.
//
//   TargetMatcher m({"re:.*mlp\\.experts\\.\\d+\\.gate_proj$", "Linear"}, "recipe.yaml: ...targets");
//   int which = m.match(names);   // index of the first matching entry, or -1
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dsv4::calib {

struct ModuleNames {
  std::string release;                // layers.3.ffn.experts.7.w1
  std::optional<std::string> hf;      // model.layers.3.mlp.experts.7.gate_proj (none for MTP)
  std::optional<std::string> vllm;    // model.layers.3.ffn.experts (fused modules: the fused name)
  std::vector<std::string> classes;   // {"Linear"}, {"DeepseekV4GroupedLinear", "Linear"}
};

class TargetMatcher {
 public:
  // `where` names the list in errors (file and key path); an invalid regex is an error quoting
  // the entry, its index and the regex engine's message.
  TargetMatcher(std::vector<std::string> entries, const std::string& where);
  TargetMatcher(TargetMatcher&&) noexcept;
  TargetMatcher& operator=(TargetMatcher&&) noexcept;
  ~TargetMatcher();

  int match(const ModuleNames& names) const;
  const std::vector<std::string>& entries() const { return entries_; }

 private:
  struct Compiled;
  std::vector<std::string> entries_;
  std::vector<std::unique_ptr<Compiled>> compiled_;  // null for non-regex entries
};

}  // namespace dsv4::calib

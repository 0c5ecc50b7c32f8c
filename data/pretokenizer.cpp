// pretokenizer.cpp: loading the pre_tokenizer JSON and running its Split/ByteLevel steps (see
// pretokenizer.h). The split semantics follow tokenizers 0.23: Pattern::find_matches (matches
// plus the gaps between them), SplitDelimiterBehavior, and PreTokenizedString::split dropping
// empty pieces after every step.
#include "data/pretokenizer.h"

#include <algorithm>

#include "common/check.h"
#include "common/json_guard.h"

namespace dsv4::data {
namespace {

// tokenizers' ByteLevel regex (pre_tokenizers/byte_level.rs), GPT-2's contractions/words/numbers.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Part {
  uint32_t begin;
  uint32_t end;
  bool is_match;
};

SplitBehavior behavior_from_json(const nlohmann::json& split, const JsonAt& at) {
  const JsonAt key = at.member("behavior");
  const std::string name = json_string(json_member(split, at, "behavior"), key);
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  DSV4_FAIL("data",
            "%s: unknown split behavior '%s' (expected Removed, Isolated, "
            "MergedWithPrevious, MergedWithNext or Contiguous)",
            key.where().c_str(), name.c_str());
}

PreTokenizer::SplitStep split_from_json(const nlohmann::json& split, const JsonAt& at) {
  const JsonAt pattern_at = at.member("pattern");
  const nlohmann::json& pattern = json_member(split, at, "pattern");
  DSV4_CHECK_IN("data",
                pattern.is_object() && pattern.size() == 1 &&
                    (pattern.contains("Regex") || pattern.contains("String")),
                "%s: expected {\"Regex\": ...} or {\"String\": ...}, got %s",
                pattern_at.where().c_str(), json_excerpt(pattern).c_str());
  const bool literal = pattern.contains("String");
  const JsonAt text_at = pattern_at.member(literal ? "String" : "Regex");
  const std::string text = json_string(pattern.begin().value(), text_at);
  return {Regex::compile(text, literal, text_at.where()), behavior_from_json(split, at),
          json_bool_or(split, at, "invert", false)};
}

struct Loader {
  std::vector<PreTokenizer::SplitStep> steps;
  bool have_byte_level = false;
  bool add_prefix_space = false;
  bool use_regex = false;
  JsonAt byte_level_at;

  void add(const nlohmann::json& value, const JsonAt& at) {
    const std::string type = json_type(value, at);
    DSV4_CHECK_IN("data", !have_byte_level,
                  "%s: a '%s' step after ByteLevel (at '%s'); only "
                  "ByteLevel as the last step is supported",
                  at.where().c_str(), type.c_str(), byte_level_at.key.c_str());
    if (type == "Sequence") {
      const JsonAt list_at = at.member("pretokenizers");
      const nlohmann::json& list = json_member(value, at, "pretokenizers");
      DSV4_CHECK_IN("data", list.is_array(), "%s: expected an array, got %s",
                    list_at.where().c_str(), list.type_name());
      for (size_t i = 0; i < list.size(); ++i) add(list[i], list_at.index(i));
    } else if (type == "Split") {
      steps.push_back(split_from_json(value, at));
    } else if (type == "ByteLevel") {
      have_byte_level = true;
      byte_level_at = at;
      add_prefix_space = json_bool_or(value, at, "add_prefix_space", true);
      use_regex = json_bool_or(value, at, "use_regex", true);
    } else {
      DSV4_FAIL("data",
                "%s: unknown pre-tokenizer type '%s' (supported: Sequence, Split, "
                "ByteLevel)",
                at.member("type").where().c_str(), type.c_str());
    }
  }
};

}  // namespace

void split_apply(const PreTokenizer::SplitStep& step, std::string_view text,
                 std::vector<RegexMatch>& matches, std::vector<TextSpan>& out) {
  out.clear();
  if (text.empty()) return;
  matches.clear();
  step.regex.find_all(text, matches);
  // Pattern::find_matches: the matches and the gaps between them cover the text.
  thread_local std::vector<Part> parts;
  parts.clear();
  uint32_t prev = 0;
  for (const RegexMatch& m : matches) {
    if (m.begin != prev) parts.push_back({prev, m.begin, step.invert});
    parts.push_back({m.begin, m.end, !step.invert});  // empty matches too, as tokenizers
    prev = m.end;
  }
  const auto size = static_cast<uint32_t>(text.size());
  if (prev != size) parts.push_back({prev, size, step.invert});

  auto emit = [&](uint32_t b, uint32_t e) {
    if (e > b) out.push_back({b, e});
  };
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
      for (const Part& p : parts) emit(p.begin, p.end);
      break;
    case SplitBehavior::kRemoved:
      for (const Part& p : parts)
        if (!p.is_match) emit(p.begin, p.end);
      break;
    case SplitBehavior::kContiguous:
    case SplitBehavior::kMergedWithPrevious: {
      // Contiguous fuses a part into the previous one when both are matches (or both gaps);
      // MergedWithPrevious fuses the first match of a run into the part before it.
      const bool contiguous = step.behavior == SplitBehavior::kContiguous;
      bool previous_match = false;
      for (const Part& p : parts) {
        const bool fuse = contiguous ? p.is_match == previous_match : p.is_match && !previous_match;
        if (fuse && !out.empty())
          out.back().end = p.end;
        else
          out.push_back({p.begin, p.end});
        previous_match = p.is_match;
      }
      // Empty matches took part in the fusing (as in tokenizers); now they go.
      std::erase_if(out, [](const TextSpan& s) { return s.end == s.begin; });
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      // Walked backwards: the last match of a run is fused into the part after it.
      bool previous_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty())
          out.back().begin = it->begin;
        else
          out.push_back({it->begin, it->end});
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      std::erase_if(out, [](const TextSpan& s) { return s.end == s.begin; });
      break;
    }
  }
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& value, const JsonAt& at) {
  Loader loader;
  DSV4_CHECK_IN("data", !value.is_null(),
                "%s: null; a byte-level BPE needs a ByteLevel "
                "pre-tokenizer",
                at.where().c_str());
  loader.add(value, at);
  DSV4_CHECK_IN("data", loader.have_byte_level,
                "%s: no ByteLevel step; only byte-level BPE "
                "tokenizers are supported",
                at.where().c_str());
  PreTokenizer pre;
  pre.steps_ = std::move(loader.steps);
  pre.add_prefix_space_ = loader.add_prefix_space;
  if (loader.use_regex) {
    pre.byte_level_regex_ = Regex::compile(kGpt2Pattern, false, loader.byte_level_at.where());
  }
  return pre;
}

void PreTokenizer::split(std::string_view text, PieceSink sink) const {
  if (!text.empty()) run(0, text, sink);
}

void PreTokenizer::run(size_t step, std::string_view piece, PieceSink sink) const {
  if (step == steps_.size()) {
    byte_level(piece, sink);
    return;
  }
  // One span list per recursion level and thread: no allocation per piece once warm. The
  // outer vector is grown before any level takes a reference into it.
  thread_local std::vector<std::vector<TextSpan>> spans_by_level;
  thread_local std::vector<RegexMatch> matches;
  if (spans_by_level.size() < steps_.size()) spans_by_level.resize(steps_.size());
  std::vector<TextSpan>& spans = spans_by_level[step];
  split_apply(steps_[step], piece, matches, spans);
  for (const TextSpan& s : spans) run(step + 1, piece.substr(s.begin, s.end - s.begin), sink);
}

void PreTokenizer::byte_level(std::string_view piece, PieceSink sink) const {
  thread_local std::string prefixed;
  if (add_prefix_space_ && piece.front() != ' ') {
    prefixed.assign(1, ' ');
    prefixed.append(piece);
    piece = prefixed;
  }
  if (!byte_level_regex_) {
    sink(piece);
    return;
  }
  // The GPT-2 split is Isolated: matches and gaps alike become pieces.
  thread_local std::vector<RegexMatch> matches;
  matches.clear();
  byte_level_regex_->find_all(piece, matches);
  uint32_t prev = 0;
  for (const RegexMatch& m : matches) {
    if (m.begin != prev) sink(piece.substr(prev, m.begin - prev));
    if (m.end != m.begin) sink(piece.substr(m.begin, m.end - m.begin));
    prev = m.end;
  }
  if (prev != piece.size()) sink(piece.substr(prev));
}

}  // namespace dsv4::data

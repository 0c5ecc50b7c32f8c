// pretokenizer.h: the "pre_tokenizer" of a byte-level tokenizer.json: Split steps (a regex or a
// literal, with tokenizers' five delimiter behaviors and `invert`) applied one after the other,
// each to every piece the previous step produced, then ByteLevel (optional prefix space and
// GPT-2 regex split). DeepSeek's is Sequence[Split(\p{N}{1,3}), Split(CJK runs), Split(words,
// punctuation, spaces), ByteLevel(add_prefix_space=false, use_regex=false)].
//
//   PreTokenizer pre = PreTokenizer::from_json(json["pre_tokenizer"], {path, "pre_tokenizer"});
//   auto emit = [&](std::string_view piece) { words.emplace_back(piece); };
//   pre.split("Hello 2024!", piece_sink(emit));      // "Hello", " ", "202", "4", "!"
//
// The pieces are raw text; the byte -> symbol mapping of ByteLevel is folded into the BPE model
// (bpe.h), which maps bytes straight to symbol ids.
// Tests: tests/data/test_tokenizer_parts.cpp, tests/data/test_tokenizer.cpp (HF fixtures).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "data/regex.h"
#include "data/tokenizer_json.h"

namespace dsv4::data {

// tokenizers' SplitDelimiterBehavior: what happens to the matches of a Split pattern.
enum class SplitBehavior : uint8_t {
  kRemoved,             // dropped
  kIsolated,            // pieces of their own
  kMergedWithPrevious,  // appended to the piece before
  kMergedWithNext,      // prepended to the piece after
  kContiguous,          // consecutive matches fused into one piece
};

// A callback for each piece, without std::function's allocation: piece_sink(lambda).
struct PieceSink {
  void* context;
  void (*call)(void* context, std::string_view piece);
  void operator()(std::string_view piece) const { call(context, piece); }
};
template <class F>
PieceSink piece_sink(F& f) {
  return {&f, [](void* c, std::string_view piece) { (*static_cast<F*>(c))(piece); }};
}

class PreTokenizer {
 public:
  // `value`: the "pre_tokenizer" JSON (Sequence, Split or ByteLevel). Exactly one ByteLevel,
  // last, is required: without it the pieces would not be byte-level and the vocab could not
  // spell them. Unknown types and invalid regexes throw naming the key.
  static PreTokenizer from_json(const nlohmann::json& value, const JsonAt& at);

  // Calls sink(piece) for every non-empty piece of `text`, in order. A piece views `text`, or a
  // per-thread buffer when add_prefix_space prepends ' '; it is valid during the call only.
  void split(std::string_view text, PieceSink sink) const;

  // implementation details -------------------------------------------------------------------
  struct SplitStep {
    Regex regex;
    SplitBehavior behavior;
    bool invert;
  };

 private:
  void run(size_t step, std::string_view piece, PieceSink sink) const;
  void byte_level(std::string_view piece, PieceSink sink) const;

  std::vector<SplitStep> steps_;
  bool add_prefix_space_ = false;
  std::optional<Regex> byte_level_regex_;  // GPT-2's pattern when ByteLevel.use_regex
};

// The spans of `text` (begin, end) after one Split step, empty spans dropped, exactly as
// tokenizers' NormalizedString::split. Exposed for tests.
struct TextSpan {
  uint32_t begin;
  uint32_t end;
};
void split_apply(const PreTokenizer::SplitStep& step, std::string_view text,
                 std::vector<RegexMatch>& matches_scratch, std::vector<TextSpan>& out);

}  // namespace dsv4::data

// regex.h: the pre-tokenizer regexes of a tokenizer.json, run by PCRE2 (UTF + UCP, JIT when the
// platform has it). Hugging Face `tokenizers` runs them with Oniguruma (Ruby syntax), so a pattern
// is translated first where the two engines read the same text differently (regex_translate_onig).
//
//   Regex re = Regex::compile("\\p{N}{1,3}", false, "tokenizer.json key pre_tokenizer[0]");
//   std::vector<RegexMatch> m;
//   re.find_all("abc 12345", m);                  // {4,7} {7,9}, as tokenizers' find_iter
//
// Tests: tests/data/test_tokenizer_parts.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

// PCRE2's compiled-code type (pcre2.h: typedef struct pcre2_real_code_8 pcre2_code_8), declared
// here so that only regex.cpp includes pcre2.h.
struct pcre2_real_code_8;

namespace dsv4::data {

struct RegexMatch {
  uint32_t begin;  // byte offsets into the searched text
  uint32_t end;
};

class Regex {
 public:
  // `pattern` in Oniguruma syntax (or a literal string when `literal`); `where` names the pattern
  // (file and JSON key) in the error thrown for an invalid pattern, which quotes PCRE2's message
  // and the offset into the translated pattern.
  static Regex compile(std::string_view pattern, bool literal, const std::string& where);

  Regex(Regex&& other) noexcept;
  Regex& operator=(Regex&& other) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Appends every match in `text`, left to right, exactly as tokenizers' Oniguruma find_iter
  // yields them: each search starts where the previous match ended (so lookbehind sees the text
  // before it), and an empty match right where the previous match ended is skipped by advancing
  // one character. Bytes that are not valid UTF-8 never take part in a match.
  void find_all(std::string_view text, std::vector<RegexMatch>& out) const;
  // Length of the match anchored at byte `pos` of `text`, or -1 when there is none.
  int64_t match_at(std::string_view text, size_t pos) const;

  bool jit() const { return jit_; }
  const std::string& pattern() const { return pattern_; }  // the translated PCRE2 pattern

 private:
  Regex() = default;
  int match(std::string_view text, size_t start, uint32_t options, RegexMatch* m) const;

  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
  std::string pattern_;
  std::string where_;
};

// Rewrites the constructs that Oniguruma (Ruby syntax, as tokenizers compiles it) and PCRE2 read
// differently: \s, \S and [:space:] (PCRE2's UCP \s also matches U+180E, which is not
// White_Space), \h and \H (hex digits in Oniguruma, horizontal space in PCRE2), \uHHHH (no
// PCRE2 spelling), and the inline option m (dot-all in Ruby, multi-line in PCRE2). \w, \b and
// the other POSIX classes are left alone: Oniguruma's word class differs from PCRE2's and from
// Unicode's in ways a rewrite cannot follow exactly (neither DeepSeek's nor GPT-2's pattern uses
// them). Character properties (\p{L}, ...) need no rewrite, but PCRE2 10.42 knows Unicode 14
// only: code points assigned in Unicode 15/16 are unassigned (Cn) to it and letters, digits or
// symbols to tokenizers 0.23's Oniguruma, so text using them can split differently.
std::string regex_translate_onig(std::string_view pattern);

}  // namespace dsv4::data

// test_tokenizer_parts.cpp: the tokenizer's parts and the features DeepSeek's file does not use,
// each against Hugging Face `tokenizers` 0.23.3 (tests/data/tokenizer_features_fixture.json, made
// by make_tokenizer_fixture.py): every Split behaviour with and without invert, String patterns,
// ByteLevel's own regex and prefix space, merges as pairs, ignore_merges, byte_fallback, unk and
// fuse_unk, continuing_subword_prefix/end_of_word_suffix, vocab id gaps, added tokens with
// lstrip/rstrip/single_word and normalized overlap, Oniguruma dialect corners (\s vs U+180E, \h,
// \uHHHH, line anchors, (?m)). Plus unit checks of the regex translation (the byte-level tables
// are tested in tests/common/test_byte_level.cpp).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/pretokenizer.h"
#include "data/regex.h"
#include "data/tokenizer.h"

namespace dsv4::data {
namespace {

const nlohmann::json& features() {
  static const nlohmann::json j = [] {
    std::ifstream in(DSV4_SOURCE_DIR "/tests/data/tokenizer_features_fixture.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

std::string ids_string(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

TEST(TokenizerFeatures, EverySuiteMatchesHuggingFace) {
  const nlohmann::json& suites = features().at("suites");
  ASSERT_GE(suites.size(), 25u);
  size_t cases = 0, mismatches = 0;
  for (const nlohmann::json& suite : suites) {
    const std::string name = suite.at("name").get<std::string>();
    const Tokenizer tok = Tokenizer::from_json(suite.at("tokenizer").dump(), name);
    for (const nlohmann::json& c : suite.at("cases")) {
      const std::string text = c.at("text").get<std::string>();
      const auto want = c.at("ids").get<std::vector<int32_t>>();
      const std::vector<int32_t> got = tok.encode(text);
      ++cases;
      if (got != want) {
        ++mismatches;
        ADD_FAILURE() << "suite " << name << " text \"" << text << "\"\n  hf   " << ids_string(want)
                      << "\n  ours " << ids_string(got);
        continue;
      }
      // HF's decode replaces invalid UTF-8 with U+FFFD; ours returns the bytes. Compare only
      // where HF's output has no replacement character.
      const std::string decoded = c.at("decoded").get<std::string>();
      if (decoded.find("\xEF\xBF\xBD") == std::string::npos) {
        EXPECT_EQ(tok.decode(want), decoded) << "suite " << name << " text \"" << text << "\"";
      }
    }
  }
  EXPECT_GT(cases, 500u);
  EXPECT_EQ(mismatches, 0u) << "of " << cases << " cases";
}

TEST(TokenizerRegex, TranslatesOnigurumaSpellings) {
  EXPECT_EQ(regex_translate_onig("\\s+(?!\\S)"), "\\p{White_Space}+(?!\\P{White_Space})");
  EXPECT_EQ(regex_translate_onig("[^\\s\\p{L}]"), "[^\\p{White_Space}\\p{L}]");
  EXPECT_EQ(regex_translate_onig("\\h\\H"), "\\p{ASCII_Hex_Digit}\\P{ASCII_Hex_Digit}");
  EXPECT_EQ(regex_translate_onig("\\uFF5C|\\u12"), "\\x{FF5C}|\\u12");
  EXPECT_EQ(regex_translate_onig("(?m)a.b(?im-x:c)"), "(?s)a.b(?is-x:c)");
  EXPECT_EQ(regex_translate_onig("[(?m)]"), "[(?m)]");  // literal inside a class
  EXPECT_EQ(regex_translate_onig("\\\\s"), "\\\\s");    // escaped backslash, then 's'
  EXPECT_EQ(regex_translate_onig("\\Q\\s\\E\\s"), "\\Q\\s\\E\\p{White_Space}");
  EXPECT_EQ(regex_translate_onig("[[:space:]x]"), "[\\p{White_Space}x]");
  EXPECT_EQ(regex_translate_onig("[]s]\\p{N}{1,3}"), "[]s]\\p{N}{1,3}");
}

TEST(TokenizerRegex, FindAllFollowsOnigurumaIteration) {
  const Regex digits = Regex::compile("\\p{N}{1,3}", false, "test");
  std::vector<RegexMatch> m;
  digits.find_all("abc 12345x٣", m);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].begin, 4u);
  EXPECT_EQ(m[0].end, 7u);
  EXPECT_EQ(m[1].end, 9u);
  EXPECT_EQ(m[2].end, 12u);  // Arabic-Indic three: 2 bytes
  // Empty matches: one per character boundary, none repeated (tokenizers' x* on "ab" -> 3).
  const Regex empty = Regex::compile("x*", false, "test");
  m.clear();
  empty.find_all("ab", m);
  EXPECT_EQ(m.size(), 3u);
  // U+180E is not White_Space (PCRE2's UCP \s would match it).
  const Regex space = Regex::compile("\\s", false, "test");
  m.clear();
  space.find_all("a\u180eb\u3000c", m);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].begin, 5u);  // U+3000 after a, U+180E (3 bytes), b
  // Invalid UTF-8 never matches and never throws.
  const Regex letters = Regex::compile("\\p{L}+", false, "test");
  m.clear();
  letters.find_all(
      "ab\xff\xfe"
      "cd",
      m);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[1].begin, 4u);
  EXPECT_EQ(letters.match_at("xyz1", 1), 2);
  EXPECT_EQ(letters.match_at("xyz1", 3), -1);
}

TEST(TokenizerPreTokenizer, SplitBehaviours) {
  // tokenizers' documented example, " the  dog " split on ' ' (pre_tokenizers/split.rs tests).
  auto run = [](const char* behavior, bool invert) {
    nlohmann::json j = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"String", " "}}},
           {"behavior", behavior},
           {"invert", invert}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    const PreTokenizer pre = PreTokenizer::from_json(j, {"test", "pre_tokenizer"});
    std::vector<std::string> out;
    auto emit = [&](std::string_view p) { out.emplace_back(p); };
    pre.split(" the  dog ", piece_sink(emit));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(run("Removed", false), (V{"the", "dog"}));
  EXPECT_EQ(run("Isolated", false), (V{" ", "the", " ", " ", "dog", " "}));
  EXPECT_EQ(run("MergedWithPrevious", false), (V{" ", "the ", " ", "dog "}));
  EXPECT_EQ(run("MergedWithNext", false), (V{" the", " ", " dog", " "}));
  EXPECT_EQ(run("Contiguous", false), (V{" ", "the", "  ", "dog", " "}));
  EXPECT_EQ(run("MergedWithPrevious", true), (V{" the", " ", " dog", " "}));
  EXPECT_EQ(run("Removed", true), (V{" ", " ", " ", " "}));
}

}  // namespace
}  // namespace dsv4::data

// test_tokenizer.cpp: data::Tokenizer on DeepSeek's tokenizer.json against Hugging Face
// `tokenizers` ids (tests/data/tokenizer_fixture.jsonl, made by make_tokenizer_fixture.py: 1945
// texts of prose, code, CJK, other scripts, emoji, NFC/NFD, digit and whitespace runs, all 818
// added tokens alone and embedded, random code points), decode round trips, the vocab API, and
// the tiny tokenizer of tests/data/data_test_util.h.
//
// The DeepSeek tokenizer is looked up in $DSV4_TOKENIZER_DIR, ../shared/data/deepseek_v3_tokenizer,
// .gpu/tokenizer; when none has it the tests FAIL and say where they looked (CI has ../shared).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/check.h"
#include "data/tokenizer.h"
#include "tests/data/data_test_util.h"

namespace dsv4::data {
namespace {

using ::testing::HasSubstr;

struct FixtureCase {
  std::string text;
  std::vector<int32_t> ids;
};

// Loaded once for the whole binary: parsing the 7.8 MB tokenizer.json is the slowest step.
struct DeepSeek {
  std::unique_ptr<Tokenizer> tok;
  std::string looked;  // where we looked, for the failure message
};

const DeepSeek& deepseek() {
  static const DeepSeek ds = [] {
    DeepSeek d;
    for (const std::string& dir : testing::deepseek_tokenizer_candidates()) {
      d.looked += "\n  " + dir + "/tokenizer.json";
      if (std::filesystem::exists(dir + "/tokenizer.json")) {
        d.tok = std::make_unique<Tokenizer>(Tokenizer::load(dir));
        break;
      }
    }
    return d;
  }();
  return ds;
}

#define REQUIRE_DEEPSEEK()                                                          \
  const Tokenizer* tok = deepseek().tok.get();                                      \
  ASSERT_NE(tok, nullptr) << "DeepSeek's tokenizer.json not found; looked at (set " \
                             "DSV4_TOKENIZER_DIR to override):"                     \
                          << deepseek().looked

const std::vector<FixtureCase>& fixture_cases() {
  static const std::vector<FixtureCase> cases = [] {
    std::vector<FixtureCase> out;
    std::ifstream in(DSV4_SOURCE_DIR "/tests/data/tokenizer_fixture.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (j.contains("meta")) continue;  // header: tokenizers version, sha256, seed
      out.push_back({j.at("text").get<std::string>(), j.at("ids").get<std::vector<int32_t>>()});
    }
    return out;
  }();
  return cases;
}

// Text with control and non-ASCII bytes escaped, for failure messages.
std::string printable(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c < 0x20 || c == 0x7f)
      out += strfmt("\\x%02x", c);
    else
      out += static_cast<char>(c);
  }
  return out.size() > 300 ? out.substr(0, 300) + "..." : out;
}

std::string ids_string(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < 60; ++i) {
    if (i > 0) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + (ids.size() > 60 ? ",...]" : "]");
}

TEST(TokenizerDeepSeek, FixtureIdsMatchHuggingFace) {
  REQUIRE_DEEPSEEK();
  const auto& cases = fixture_cases();
  ASSERT_GE(cases.size(), 1000u) << "tests/data/tokenizer_fixture.jsonl missing or short";
  size_t mismatches = 0, total_ids = 0;
  std::string report;
  for (const FixtureCase& c : cases) {
    const std::vector<int32_t> got = tok->encode(c.text);
    total_ids += c.ids.size();
    if (got == c.ids) continue;
    if (++mismatches <= 5) {
      report += "\n  text \"" + printable(c.text) + "\"\n    hf   " + ids_string(c.ids) +
                "\n    ours " + ids_string(got);
    }
  }
  EXPECT_GT(total_ids, 10000u);  // not vacuous
  EXPECT_EQ(mismatches, 0u) << mismatches << " of " << cases.size()
                            << " fixture texts differ:" << report;
}

TEST(TokenizerDeepSeek, DecodeInvertsEncode) {
  REQUIRE_DEEPSEEK();
  size_t failures = 0;
  std::string report;
  for (const FixtureCase& c : fixture_cases()) {
    const std::string back = tok->decode(c.ids);
    if (back == c.text) continue;
    if (++failures <= 5)
      report += "\n  \"" + printable(c.text) + "\" -> \"" + printable(back) + "\"";
  }
  EXPECT_EQ(failures, 0u) << failures << " of " << fixture_cases().size() << " texts:" << report;
  // Bytes that are not UTF-8 still round-trip: they reach the byte-level BPE as they are.
  for (const std::string& s :
       {std::string("\xff\xfe abc \xc3"), std::string("a\x80\x80 b\xed\xa0\x80"),
        std::string("\xf0\x9f\x98", 3), std::string("x\0y", 3)}) {
    EXPECT_EQ(tok->decode(tok->encode(s)), s) << printable(s);
  }
}

TEST(TokenizerDeepSeek, AddedTokensAndVocabApi) {
  REQUIRE_DEEPSEEK();
  // Ids confirmed with tokenizers 0.23.3 (Tokenizer.from_file(...).token_to_id / encode).
  EXPECT_EQ(tok->vocab_size(), 128815);
  EXPECT_EQ(tok->token_id("<｜begin▁of▁sentence｜>"), 0);
  EXPECT_EQ(tok->token_id("<｜end▁of▁sentence｜>"), 1);
  EXPECT_EQ(tok->token_id("<｜User｜>"), 128803);
  EXPECT_EQ(tok->token_id("<｜Assistant｜>"), 128804);
  EXPECT_EQ(tok->token_id("<｜tool▁sep｜>"), 128814);
  EXPECT_EQ(tok->encode("<｜User｜>hi<｜Assistant｜>"),
            (std::vector<int32_t>{128803, 6366, 128804}));
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{19923, 2058}));
  EXPECT_EQ(tok->token_text(0), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tok->token_text(2058), "Ġworld");
  EXPECT_EQ(tok->token_text(128814), "<｜tool▁sep｜>");
  EXPECT_EQ(tok->find_token_id("Ġworld"), 2058);
  EXPECT_EQ(tok->find_token_id("no such token"), std::nullopt);
  EXPECT_EQ(tok->decode(std::vector<int32_t>{128803, 19923, 2058, 1}),
            "<｜User｜>Hello world<｜end▁of▁sentence｜>");
  EXPECT_TRUE(tok->encode("").empty());
  try {
    (void)tok->token_id("no such token");
    ADD_FAILURE() << "token_id of an unknown token did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'no such token' is not in the vocab"));
    EXPECT_THAT(e.what(), HasSubstr("tokenizer.json"));
  }
  EXPECT_THROW((void)tok->token_text(-1), Error);
  EXPECT_THROW((void)tok->token_text(tok->vocab_size()), Error);
  EXPECT_THROW((void)tok->decode(std::vector<int32_t>{5, 999999}), Error);
}

TEST(TokenizerDeepSeek, ConcurrentEncodesAgree) {
  REQUIRE_DEEPSEEK();
  // encode() is const and keeps its caches per thread: two threads on the same texts must give
  // the single-threaded ids.
  const auto& cases = fixture_cases();
  std::vector<size_t> bad(2, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = 0; i < cases.size(); ++i)
        bad[t] += tok->encode(cases[i].text) != cases[i].ids;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad[0] + bad[1], 0u);
}

TEST(TokenizerTiny, LoadsAndEncodes) {
  // The tiny tokenizer in DeepSeek's shape (tests/data/data_test_util.h, the layout of
  // model/synth_tokenizer.cpp with the chat markers also in the vocab).
  const Tokenizer tok = Tokenizer::from_json(testing::tiny_tokenizer_json(), "tiny");
  EXPECT_EQ(tok.vocab_size(), testing::kTinyThinkClose + 1);
  EXPECT_EQ(tok.token_id("<｜User｜>"), testing::kTinyUser);
  EXPECT_EQ(tok.token_id("</think>"), testing::kTinyThinkClose);
  // BPE by rank: "the" -> t + he (no "t he" merge); " and" -> Ġa + n + d, because "Ġ a" (rank 2)
  // beats "a n" (rank 17). Confirmed with tokenizers 0.23.3 on the same merges.
  const std::vector<int32_t> ids = tok.encode("<｜User｜>the and<think>");
  std::vector<std::string> pieces;
  for (const int32_t id : ids) pieces.emplace_back(tok.token_text(id));
  EXPECT_EQ(pieces, (std::vector<std::string>{"<｜User｜>", "t", "he", "Ġa", "n", "d", "<think>"}));
  EXPECT_EQ(ids.front(), testing::kTinyUser);
  EXPECT_EQ(ids.back(), testing::kTinyThinkOpen);
  EXPECT_EQ(tok.decode(ids), "<｜User｜>the and<think>");
  EXPECT_EQ(tok.encode(" the"), (std::vector<int32_t>{*tok.find_token_id("Ġthe")}));
}

TEST(TokenizerTiny, LoadsFromDirectoryOrFile) {
  testing::TempDir dir("dsv4_tokenizer_load");
  const std::string file = dir.file("tokenizer.json", testing::tiny_tokenizer_json());
  EXPECT_EQ(Tokenizer::load(dir.path()).vocab_size(), testing::kTinyThinkClose + 1);
  EXPECT_EQ(Tokenizer::load(file).vocab_size(), testing::kTinyThinkClose + 1);
  Tokenizer moved = Tokenizer::load(file);
  Tokenizer other = std::move(moved);
  EXPECT_EQ(other.decode(other.encode("moved ok")), "moved ok");
}

}  // namespace
}  // namespace dsv4::data

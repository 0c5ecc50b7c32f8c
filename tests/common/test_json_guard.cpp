// test_json_guard.cpp: the JSON depth limit and bounded excerpts (common/json_guard.h). The
// property that matters: 200k nested brackets (a 400 KB file) is refused with the file and the
// limit named, before anything recursive runs, and no excerpt grows with its value.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/check.h"
#include "common/json_guard.h"

namespace dsv4 {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string nested(int depth, char open = '[', char close = ']') {
  return std::string(static_cast<size_t>(depth), open) + std::string(static_cast<size_t>(depth), close);
}

// The what() of the user error json_parse throws for `text` ("" and a test failure if none).
std::string parse_error_of(const std::string& text) {
  try {
    json_parse(text, "in.json");
  } catch (const Error& e) {
    EXPECT_TRUE(e.user()) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a dsv4::Error for " << text.size() << " bytes";
  return "";
}

TEST(JsonGuard, DeepNestingRefusedNamingFileAndLimit) {
  for (const std::string& text : {nested(200000), nested(200000, '{', '}')}) {
    EXPECT_THAT(parse_error_of(text), AllOf(HasSubstr("in.json"), HasSubstr("more than 64 levels"),
                                            HasSubstr("at byte 64")))
        << text.size() << " bytes";
  }
  // One level past the limit: the 65th bracket, after the 5 bytes of {"a": is byte 68.
  EXPECT_THAT(parse_error_of("{\"a\":" + nested(kJsonMaxDepth)), HasSubstr("at byte 68"));
}

TEST(JsonGuard, AtTheLimitParses) {
  const nlohmann::json j = json_parse(nested(kJsonMaxDepth), "in.json");
  EXPECT_TRUE(j.is_array());
  const auto o = json_parse<nlohmann::ordered_json>("{\"k\":" + nested(kJsonMaxDepth - 1) + "}", "in.json");
  EXPECT_TRUE(o.is_object());
}

TEST(JsonGuard, BracketsInStringsDoNotCount) {
  const std::string deep_string = "{\"s\":\"" + nested(1000) + "\\\"[[[\"}";
  const nlohmann::json j = json_parse(deep_string, "in.json");
  EXPECT_EQ(j["s"].get<std::string>().size(), 2004u);
}

TEST(JsonGuard, MalformedTextIsLeftToTheParser) {
  EXPECT_THROW(json_parse("{\"a\": [1, 2", "in.json"), nlohmann::json::parse_error);
  EXPECT_THROW(json_parse("]]]]", "in.json"), nlohmann::json::parse_error);  // no negative depth
}

TEST(JsonGuard, NumberBeyondADoubleIsAUserErrorNamingTheSource) {
  // Found by tests/fuzz/ (fuzz_journal_line, corpus regression_number_overflow.jsonl): nlohmann
  // throws out_of_range, not parse_error, for 1e999, and no caller caught it.
  for (const std::string text : {"{\"a\": 1.5e999}", "[-1e400]", "{\"report\":{\"t\":1.126e451444478666591}}"}) {
    EXPECT_THAT(parse_error_of(text), AllOf(HasSubstr("in.json: not valid JSON: number overflow parsing"),
                                            HasSubstr("beyond the range of a double")))
        << text;
  }
  EXPECT_EQ(json_parse("[1e308, 18446744073709551615, -9223372036854775808]", "in.json").size(), 3u);
}

TEST(JsonGuard, ErrorTextDropsTheLibraryTag) {
  try {
    json_parse("{\"a\": [1, 2", "in.json");
    ADD_FAILURE() << "expected a parse error";
  } catch (const nlohmann::json::parse_error& e) {
    EXPECT_THAT(json_error_text(e), ::testing::StartsWith("parse error at line 1")) << e.what();
  }
}

TEST(JsonGuard, ExcerptIsBoundedWhateverTheValue) {
  EXPECT_EQ(json_excerpt(nlohmann::json(42)), "42");
  EXPECT_EQ(json_excerpt(nlohmann::json::parse(R"({"a":[1,2]})")), R"({"a":[1,2]})");
  // A deep value built in memory (past any parse-time limit): the excerpt stops, never recurses on.
  nlohmann::json deep = nlohmann::json::array();
  for (int i = 0; i < 100000; ++i) deep = nlohmann::json::array({std::move(deep)});
  const std::string e = json_excerpt(deep, 40);
  EXPECT_EQ(e, std::string(40, '[') + "...");
  nlohmann::json big = nlohmann::json::array();
  for (int i = 0; i < 100000; ++i) big.push_back(i);
  EXPECT_LE(json_excerpt(big).size(), 83u) << json_excerpt(big);
  EXPECT_THAT(json_excerpt(big), HasSubstr("[0,1,2,"));
  const std::string text(1 << 20, 'x');
  EXPECT_EQ(json_excerpt(nlohmann::ordered_json(text), 10), "\"xxxxxxxxx...");
}

}  // namespace
}  // namespace dsv4

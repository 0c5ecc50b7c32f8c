// json_guard.h: what every JSON input goes through (issue 26): a nesting-depth limit checked on
// the text before it is parsed, and bounded excerpts for error messages.
//
//   const nlohmann::json j = json_parse<nlohmann::json>(text, path);  // throws naming path and limit
//   DSV4_USER_FAIL("config", "%s: \"%s\" must be an integer, got %s", f, key, json_excerpt(v).c_str());
//
// Why: nlohmann's parser is iterative, but dump(), copies and comparisons of the parsed value
// recurse once per level, so a 400 KB file of 200k nested brackets overflows the stack in the
// first error message that prints it. No input the tool reads nests anywhere near the limit, so
// the depth check refuses only hostile or damaged files, before anything recursive runs; and an
// excerpt is bounded in both length and depth, whatever the value it prints.
// Tests: tests/common/test_json_guard.cpp, tests/e2e/cli_hostile_inputs.sh.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace dsv4 {

// Deepest nesting accepted in any JSON input. The deepest real ones are a tokenizer.json
// (normalizer/pre_tokenizer sequences, ~6 levels) and a config.json's quantization_config
// (~5 levels); 64 leaves ample room, and recursing 64 levels costs a few KB of stack.
inline constexpr int kJsonMaxDepth = 64;

// Throws a user error naming `source`, the limit and the byte offset where `text` first nests
// deeper than `max_depth` arrays/objects. Brackets inside strings do not count. Malformed text
// is left for the parser to report.
void json_depth_check(std::string_view text, const std::string& source, int max_depth = kJsonMaxDepth);

// Throws the user error for a number nlohmann's parser could not hold (out_of_range 406, e.g.
// 1e999): it names `source` and the number.
[[noreturn]] void json_number_fail(const nlohmann::json::exception& e, const std::string& source);

// json_depth_check, then Json::parse (nlohmann's parse_error propagates unchanged, so callers
// keep their own wording for malformed text). A number beyond a double's range is not a
// parse_error but an out_of_range (found by tests/fuzz/): a user error naming `source` here, so
// no caller lets a raw library exception through.
template <typename Json = nlohmann::json>
Json json_parse(std::string_view text, const std::string& source) {
  json_depth_check(text, source);
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::out_of_range& e) {
    json_number_fail(e, source);
  }
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag, which means nothing to
// a user: "parse error at line 1, column 5: ...".
std::string json_error_text(const nlohmann::json::exception& e);

// At most about `max_chars` characters of `value` as JSON, "..." where it was cut. Never
// recurses deeper than max_chars levels, whatever the value.
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 80);
std::string json_excerpt(const nlohmann::ordered_json& value, size_t max_chars = 80);

}  // namespace dsv4

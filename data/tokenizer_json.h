// tokenizer_json.h: typed access to tokenizer.json values with errors that name the file and the
// key ("tokenizer.json '/m/tokenizer.json': key 'model.merges[7]': expected a string, got
// number"), shared by the loaders of each tokenizer part.
//
//   JsonAt at{origin, "model"};
//   const nlohmann::json& merges = json_member(model, at, "merges");   // throws if absent
//   bool fallback = json_bool_or(model, at, "byte_fallback", false);    // null/absent -> false
//
// Tests: tests/data/test_tokenizer_errors.cpp.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace dsv4::data {

// The file (or other origin) and the dotted key path of a JSON value, for error messages.
struct JsonAt {
  std::string origin;
  std::string key;

  JsonAt member(std::string_view name) const;  // key + "." + name
  JsonAt index(size_t i) const;                // key + "[i]"
  // "tokenizer.json '<origin>': key '<key>'", the prefix of every load error.
  std::string where() const;
};

// The member `name` of the object `obj` (found at `at`); throws if `obj` is not an object or has
// no such member.
const nlohmann::json& json_member(const nlohmann::json& obj, const JsonAt& at, const char* name);
// `value` (found at `at`) as a string; throws naming the actual JSON type otherwise.
std::string json_string(const nlohmann::json& value, const JsonAt& at);
// Optional members: absent or null -> fallback / nullopt; a wrong type throws.
bool json_bool_or(const nlohmann::json& obj, const JsonAt& at, const char* name, bool fallback);
std::optional<std::string> json_optional_string(const nlohmann::json& obj, const JsonAt& at,
                                                const char* name);
// The "type" member of a tokenizer part (pre-tokenizer, normalizer, decoder, model).
std::string json_type(const nlohmann::json& obj, const JsonAt& at);

}  // namespace dsv4::data

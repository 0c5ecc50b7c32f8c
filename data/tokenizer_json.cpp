// tokenizer_json.cpp: checked tokenizer.json accessors (see tokenizer_json.h).
#include "data/tokenizer_json.h"

#include "common/check.h"

namespace dsv4::data {

JsonAt JsonAt::member(std::string_view name) const {
  return {origin, key.empty() ? std::string(name) : key + "." + std::string(name)};
}

JsonAt JsonAt::index(size_t i) const { return {origin, key + "[" + std::to_string(i) + "]"}; }

std::string JsonAt::where() const {
  return "tokenizer.json '" + origin + "': key '" + (key.empty() ? std::string("<root>") : key) +
         "'";
}

const nlohmann::json& json_member(const nlohmann::json& obj, const JsonAt& at, const char* name) {
  DSV4_CHECK_IN("data", obj.is_object(), "%s: expected an object, got %s", at.where().c_str(),
                obj.type_name());
  auto it = obj.find(name);
  DSV4_CHECK_IN("data", it != obj.end(), "%s: missing", at.member(name).where().c_str());
  return *it;
}

std::string json_string(const nlohmann::json& value, const JsonAt& at) {
  DSV4_CHECK_IN("data", value.is_string(), "%s: expected a string, got %s", at.where().c_str(),
                value.type_name());
  return value.get<std::string>();
}

bool json_bool_or(const nlohmann::json& obj, const JsonAt& at, const char* name, bool fallback) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return fallback;
  DSV4_CHECK_IN("data", it->is_boolean(), "%s: expected true/false, got %s",
                at.member(name).where().c_str(), it->type_name());
  return it->get<bool>();
}

std::optional<std::string> json_optional_string(const nlohmann::json& obj, const JsonAt& at,
                                                const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  return json_string(*it, at.member(name));
}

std::string json_type(const nlohmann::json& obj, const JsonAt& at) {
  return json_string(json_member(obj, at, "type"), at.member("type"));
}

}  // namespace dsv4::data

// json_guard.cpp: the JSON depth check and bounded excerpts (see json_guard.h).
#include "common/json_guard.h"

#include "common/check.h"

namespace dsv4 {
namespace {

// A string as JSON, at most `limit` of its bytes (invalid UTF-8, as from a cut, replaced).
template <typename Json>
std::string string_excerpt(const std::string& s, size_t limit) {
  return Json(s.substr(0, limit)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Appends `v` to `out` until `out` reaches `limit` characters. Each nested level appends at least
// one character before recursing, so the recursion depth is bounded by `limit` too.
template <typename Json>
void excerpt_append(const Json& v, size_t limit, std::string& out) {
  if (out.size() >= limit) return;
  if (v.is_string()) {
    out += string_excerpt<Json>(v.template get_ref<const std::string&>(), limit);
    return;
  }
  if (!v.is_structured()) {
    out += v.dump();
    return;
  }
  out += v.is_array() ? '[' : '{';
  bool first = true;
  for (auto it = v.begin(); it != v.end() && out.size() < limit; ++it) {
    if (!first) out += ',';
    first = false;
    if (v.is_object()) out += string_excerpt<Json>(it.key(), limit) + ':';
    excerpt_append(*it, limit, out);
  }
  out += v.is_array() ? ']' : '}';
}

template <typename Json>
std::string excerpt(const Json& v, size_t max_chars) {
  std::string out;
  excerpt_append(v, max_chars, out);
  if (out.size() > max_chars) out = out.substr(0, max_chars) + "...";
  return out;
}

}  // namespace

void json_depth_check(std::string_view text, const std::string& source, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      DSV4_USER_CHECK("json", ++depth <= max_depth,
                      "%s: JSON nested more than %d levels deep (at byte %zu); no valid input nests that deep, "
                      "the file is damaged or not what it should be",
                      source.c_str(), max_depth, i);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

void json_number_fail(const nlohmann::json::exception& e, const std::string& source) {
  DSV4_USER_FAIL("json", "%s: not valid JSON: %s (a number beyond the range of a double)", source.c_str(),
                 json_error_text(e).c_str());
}

std::string json_error_text(const nlohmann::json::exception& e) {
  const std::string why = e.what();
  const size_t tag_end = why.find("] ");
  return why.starts_with("[json.exception.") && tag_end != std::string::npos ? why.substr(tag_end + 2) : why;
}

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) { return excerpt(value, max_chars); }
std::string json_excerpt(const nlohmann::ordered_json& value, size_t max_chars) {
  return excerpt(value, max_chars);
}

}  // namespace dsv4

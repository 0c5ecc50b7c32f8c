// yaml_reader.cpp: key-path-aware YAML getters.
#include "calib/yaml_reader.h"

#include <algorithm>
#include <cstdint>
#include <optional>

#include "common/byte_level.h"
#include "common/check.h"
#include "common/suggest.h"

namespace dsv4::calib {

YamlReader::YamlReader(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {
  if (present() && !node_.IsMap()) {
    DSV4_USER_FAIL("recipe", "%s: %s: expected a mapping of keys, got %s", file_.c_str(),
                   path_.empty() ? "(top level)" : path_.c_str(), node_.IsSequence() ? "a list" : "a single value");
  }
}

std::string YamlReader::key_path(const std::string& key) const {
  if (key.empty()) return path_.empty() ? "(top level)" : path_;
  return path_.empty() ? key : path_ + "." + key;
}

// The recipe is the user's: every failure names the file and key path and is a user error.
void YamlReader::fail(const std::string& key, const std::string& message) const {
  DSV4_USER_FAIL("recipe", "%s: %s: %s", file_.c_str(), key_path(key).c_str(), message.c_str());
}

bool YamlReader::has(const std::string& key) const {
  return present() && node_[key].IsDefined() && !node_[key].IsNull();
}

std::vector<std::string> YamlReader::keys() const {
  std::vector<std::string> out;
  if (!present()) return out;
  for (const auto& kv : node_) {
    // A complex key (`? [a, b]`, `{a: 1}: x`) or a null one: as<std::string>() threw yaml-cpp's
    // "bad conversion" naming neither file nor key (issue 26; found again by tests/fuzz/).
    if (!kv.first.IsScalar()) {
      fail("", std::string("every key must be a plain name, got ") +
                   (kv.first.IsSequence() ? "a list" : kv.first.IsMap() ? "a mapping" : "an empty (null) key"));
    }
    out.push_back(kv.first.Scalar());
  }
  return out;
}

YAML::Node YamlReader::take(const std::string& key) {
  read_.insert(key);
  return present() ? node_[key] : YAML::Node();
}

namespace {

bool yaml_printable(uint32_t c) {
  return c == 0x09 || c == 0x0A || c == 0x0D || (c >= 0x20 && c <= 0x7E) || c == 0x85 || (c >= 0xA0 && c <= 0xD7FF) ||
         (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

}  // namespace

void yaml_text_check(std::string_view text, const std::string& file) {
  size_t line = 1, line_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t at = pos;
    const std::optional<uint32_t> cp = utf8_decode(text, pos);  // common/byte_level.h
    if (!cp || !yaml_printable(*cp)) {
      DSV4_USER_FAIL("recipe", "%s: line %zu column %zu: %s 0x%02X; a YAML file is UTF-8 text of printable characters",
                     file.c_str(), line, at - line_start + 1, cp ? "a control character," : "not UTF-8 at byte",
                     static_cast<unsigned>(cp ? *cp : static_cast<uint8_t>(text[at])));
    }
    if (*cp == '\n') line += 1, line_start = pos;
  }
}

std::string yaml_did_you_mean(const std::string& word, const std::vector<std::string>& known) {
  const std::string near = suggest_nearest(word, known);
  return near.empty() ? "" : " (did you mean " + near + "?)";
}

namespace {

// "a, b, c" of the non-empty entries.
std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) {
    if (!w.empty()) out += (out.empty() ? "" : ", ") + w;
  }
  return out;
}

std::string describe(const YAML::Node& n) {
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "'" + n.Scalar() + "'";
}

}  // namespace

std::string YamlReader::get_string(const std::string& key, const std::string& fallback) {
  const YAML::Node n = take(key);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  if (!n.IsScalar()) fail(key, "expected a string, got " + describe(n));
  return n.Scalar();
}

int64_t YamlReader::get_int(const std::string& key, int64_t fallback) {
  const YAML::Node n = take(key);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  int64_t v = 0;
  if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) {
    fail(key, "expected an integer, got " + describe(n));
  }
  return v;
}

double YamlReader::get_double(const std::string& key, double fallback) {
  const YAML::Node n = take(key);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  double v = 0;
  if (!n.IsScalar() || !YAML::convert<double>::decode(n, v)) {
    fail(key, "expected a number, got " + describe(n));
  }
  return v;
}

bool YamlReader::get_bool(const std::string& key, bool fallback) {
  const YAML::Node n = take(key);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  bool v = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
    fail(key, "expected true or false, got " + describe(n));
  }
  return v;
}

std::vector<std::string> YamlReader::get_strings(const std::string& key,
                                                 const std::vector<std::string>& fallback) {
  const YAML::Node n = take(key);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  if (n.IsScalar()) return {n.Scalar()};
  if (!n.IsSequence()) fail(key, "expected a string or a list of strings, got " + describe(n));
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) {
      fail(key + "[" + std::to_string(i) + "]", "expected a string, got " + describe(n[i]));
    }
    out.push_back(n[i].Scalar());
  }
  return out;
}

std::string YamlReader::get_enum(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& allowed) {
  const std::string v = get_string(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return v;
  fail(key, "expected one of " + join_words(allowed) + ", got '" + v + "'" + yaml_did_you_mean(v, allowed));
}

YamlReader YamlReader::child(const std::string& key) {
  return YamlReader(take(key), file_, key_path(key));
}

void YamlReader::finish(const std::vector<std::string>& accepted_hint) const {
  if (!present()) return;
  const std::vector<std::string> accepted =
      accepted_hint.empty() ? std::vector<std::string>(read_.begin(), read_.end()) : accepted_hint;
  for (const std::string& k : keys()) {
    if (read_.count(k)) continue;
    const std::string list = join_words(accepted);
    fail(k, "unknown key" + yaml_did_you_mean(k, accepted) + (list.empty() ? "" : "; accepted here: " + list));
  }
}

}  // namespace dsv4::calib

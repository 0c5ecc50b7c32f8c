// yaml_reader.h: reads a YAML mapping key by key with the key path in every error, and refuses
// keys nobody asked for (STYLE §4: unknown keys are errors).
//
//   YamlReader r(root, "recipe.yaml", "");
//   YamlReader ds = r.child("dataset");                 // empty reader if absent
//   int64_t n = ds.get_int("num_samples", 512);         // "recipe.yaml: dataset.num_samples: ..."
//   ds.finish();                                        // throws on keys not read
//
// Errors are dsv4::Error("recipe", ...) and read "FILE: key.path: what was expected, got what".
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::calib {

class YamlReader {
 public:
  YamlReader(YAML::Node node, std::string file, std::string path);

  bool present() const { return node_.IsDefined() && !node_.IsNull(); }
  bool has(const std::string& key) const;
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  const std::string& file() const { return file_; }
  std::string key_path(const std::string& key) const;
  std::vector<std::string> keys() const;  // in file order

  // Typed getters: the default when the key is absent or null; an error for a wrong type.
  std::string get_string(const std::string& key, const std::string& fallback);
  int64_t get_int(const std::string& key, int64_t fallback);
  double get_double(const std::string& key, double fallback);
  bool get_bool(const std::string& key, bool fallback);
  // A string or a list of strings (a single string becomes a one-element list).
  std::vector<std::string> get_strings(const std::string& key,
                                       const std::vector<std::string>& fallback);
  // One of `allowed` (the message lists them; "" in `allowed` means the key may be left empty).
  std::string get_enum(const std::string& key, const std::string& fallback,
                       const std::vector<std::string>& allowed);
  // A nested mapping (an empty reader when absent); marks the key as read.
  YamlReader child(const std::string& key);
  // Marks a key as read without interpreting it (the caller handles node()[key] itself).
  YAML::Node take(const std::string& key);

  // Throws naming the first key that no getter asked for, the nearest accepted key, and the keys
  // that are accepted.
  void finish(const std::vector<std::string>& accepted_hint = {}) const;

  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  YAML::Node node_;
  std::string file_;
  std::string path_;
  std::set<std::string> read_;
};

// " (did you mean NEAR?)" for the entry of `known` nearest to `word` (common/suggest.h), or "".
std::string yaml_did_you_mean(const std::string& word, const std::vector<std::string>& known);

// A YAML file's text must be UTF-8 of printable characters (YAML 1.2 §5.1, c-printable: TAB, LF,
// CR, U+0020-U+007E, U+0085, U+00A0-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF). yaml-cpp reads
// other bytes into keys and values unchecked, and its emitter then writes a file that does not
// parse back (tests/fuzz: a config_groups name of 0xFF and ESC bytes made the resolved
// recipe.yaml unreadable). A user error naming the file, line, column and byte.
void yaml_text_check(std::string_view text, const std::string& file);

}  // namespace dsv4::calib

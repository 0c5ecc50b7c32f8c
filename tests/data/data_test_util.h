// data_test_util.h: helpers shared by the data/ tests: a tiny tokenizer.json in DeepSeek's shape
// with the DSV4 chat tokens at fixed ids, the real DeepSeek tokenizer's location, temp files.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace dsv4::data::testing {

// Ids of the tiny tokenizer (the same layout as model/synth_tokenizer.cpp's): 0 BOS, 1 EOS,
// 2 pad, 3..258 the 256 byte tokens, 259..300 merges, then the chat markers.
inline constexpr int32_t kTinyBos = 0, kTinyEos = 1, kTinyUser = 301, kTinyAssistant = 302, kTinyThinkOpen = 303,
                         kTinyThinkClose = 304;

// GPT-2's bytes_to_unicode as UTF-8 strings: printable Latin-1 bytes stand for themselves, the
// other 68 map to U+0100.. in byte order (space = "Ġ").
inline std::vector<std::string> tiny_byte_symbols() {
  auto utf8 = [](uint32_t cp) {
    std::string out;
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    return out;
  };
  std::vector<std::string> out(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    out[b] = utf8(printable ? b : next++);
  }
  return out;
}

// The tokenizer.json text. The chat markers are in the model vocab AND the added tokens with the
// same id, so every reader (HF `tokenizers` uses an added token's id only when the vocab has it)
// numbers them alike.
inline std::string tiny_tokenizer_json() {
  const std::vector<std::string> bytes = tiny_byte_symbols();
  nlohmann::json vocab = nlohmann::json::object();
  vocab["<｜begin▁of▁sentence｜>"] = 0;
  vocab["<｜end▁of▁sentence｜>"] = 1;
  vocab["<｜▁pad▁｜>"] = 2;
  int id = 3;
  for (const auto& s : bytes) vocab[s] = id++;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"Ġ", "t"}, {"h", "e"}, {"Ġ", "a"}, {"i", "n"}, {"Ġt", "he"}, {"e", "r"}, {"o", "n"}, {"r", "e"}, {"Ġ", "s"},
      {"e", "n"}, {"a", "t"}, {"o", "r"}, {"Ġ", "o"}, {"e", "s"}, {"Ġ", "w"}, {"i", "s"}, {"Ġ", "c"}, {"a", "n"},
      {"i", "t"}, {"Ġ", "i"}, {"in", "g"}, {"Ġ", "b"}, {"Ġ", "f"}, {"Ġ", "p"}, {"a", "l"}, {"Ġ", "m"}, {"Ġo", "f"},
      {"an", "d"}, {"Ġ", "and"}, {"Ġt", "o"}, {"Ġi", "n"}, {"Ġ", "d"}, {"l", "l"}, {"o", "u"}, {"Ġ", "h"},
      {"e", "d"}, {"Ġ", "l"}, {"Ġ", "n"}, {"Ġ", "e"}, {"Ġ", "T"}, {"ĠT", "he"}, {"Ġ", "is"}};
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    merge_list.push_back(a + " " + b);
  }
  auto added = [](int i, const char* content, bool special) {
    return nlohmann::json{{"id", i},          {"content", content}, {"single_word", false}, {"lstrip", false},
                          {"rstrip", false},  {"normalized", !special}, {"special", special}};
  };
  nlohmann::json added_tokens = {added(0, "<｜begin▁of▁sentence｜>", true), added(1, "<｜end▁of▁sentence｜>", true),
                                 added(2, "<｜▁pad▁｜>", true)};
  for (const char* t : {"<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"}) {
    vocab[t] = id;
    added_tokens.push_back(added(id++, t, false));
  }
  auto split = [](const std::string& regex) {
    return nlohmann::json{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
  };
  const nlohmann::json pre = {
      {"type", "Sequence"},
      {"pretokenizers",
       {split("\\p{N}{1,3}"), split("[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"),
        split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
              " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  return nlohmann::json{{"version", "1.0"},
                        {"truncation", nullptr},
                        {"padding", nullptr},
                        {"added_tokens", added_tokens},
                        {"normalizer", {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}}},
                        {"pre_tokenizer", pre},
                        {"post_processor", byte_level},
                        {"decoder", byte_level},
                        {"model",
                         {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                          {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                          {"byte_fallback", false}, {"vocab", vocab}, {"merges", merge_list}}}}
      .dump();
}

// The real DeepSeek tokenizer directory: $DSV4_TOKENIZER_DIR, then the shared copy next to the
// repository, then .gpu/tokenizer. Empty if none holds a tokenizer.json.
inline std::vector<std::string> deepseek_tokenizer_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("DSV4_TOKENIZER_DIR"); env != nullptr && *env != '\0') out.push_back(env);
  out.push_back(std::string(DSV4_SOURCE_DIR) + "/../shared/data/deepseek_v3_tokenizer");
  out.push_back(std::string(DSV4_SOURCE_DIR) + "/.gpu/tokenizer");
  return out;
}

// A fresh directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& name) {
    path_ = std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name, const std::string& content) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace dsv4::data::testing

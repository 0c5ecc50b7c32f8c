// tokenizer.h: a Hugging Face tokenizer.json with a byte-level BPE model (DeepSeek's: a Sequence
// of Split pre-tokenizers with Unicode-class regexes run by PCRE2 in UTF mode, then ByteLevel;
// added tokens, special or not, matched before pre-tokenization). Encodes to the ids Hugging Face
// `tokenizers` gives and decodes back.
//
//   const Tokenizer tok = Tokenizer::load("/models/dsv4");        // dir with tokenizer.json, or the file
//   std::vector<int32_t> ids = tok.encode("Hello world");         // no BOS/EOS added
//   std::string text = tok.decode(ids);                           // decode(encode(s)) == s
//   int32_t user = tok.token_id("<｜User｜>");                     // throws naming the token if absent
//
// Tests: tests/data/test_tokenizer.cpp (fixtures from tests/data/make_tokenizer_fixture.py).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::data {

class Tokenizer {
 public:
  // path: a tokenizer.json file or a directory holding one. Errors name the file and the key;
  // `named_by` is the flag or recipe key that gave the path ("--tokenizer"), for a missing one.
  static Tokenizer load(const std::string& path, const std::string& named_by = "");
  // From the JSON text itself; `origin` names it in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& origin);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Plain encoding: added tokens are matched in the text, nothing is prepended or appended.
  std::vector<int32_t> encode(std::string_view text) const;
  // Concatenated token strings, byte-level decoded; special tokens included.
  std::string decode(std::span<const int32_t> ids) const;

  int32_t token_id(std::string_view token) const;                   // throws if unknown
  std::optional<int32_t> find_token_id(std::string_view token) const;
  std::string_view token_text(int32_t id) const;                    // throws if out of range
  int32_t vocab_size() const;  // 1 + the largest id, added tokens included

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4::data

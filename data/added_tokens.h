// added_tokens.h: the "added_tokens" of a tokenizer.json (DeepSeek's 818: BOS/EOS/pad, the chat
// and tool markers, the fim and placeholder tokens). They are cut out of the raw text before
// pre-tokenization, as tokenizers' AddedVocabulary does: first the tokens with normalized=false,
// then, in the text between them, those with normalized=true; each pass takes the leftmost
// match and, among matches starting there, the longest. lstrip/rstrip widen a match over
// neighbouring whitespace; single_word drops a match that touches a word character.
//
//   AddedVocabulary added = AddedVocabulary::from_json(json["added_tokens"], at, bpe);
//   std::vector<TextSegment> segs;
//   added.split("<｜User｜>hi", segs);      // {"<｜User｜>", 128803}, {"hi", -1}
//
// Ids follow tokenizers 0.23: a token whose content is in the model vocab takes that id, the
// others are numbered from the vocab's entry count in list order (the "id" field is not read).
// Tests: tests/data/test_tokenizer.cpp, tests/data/test_tokenizer_parts.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/bpe.h"
#include "data/regex.h"
#include "data/tokenizer_json.h"

namespace dsv4::data {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A stretch of the input: an added token (id >= 0) or plain text for the pre-tokenizer (id -1).
struct TextSegment {
  std::string_view text;
  int32_t id;
};

class AddedVocabulary {
 public:
  static AddedVocabulary from_json(const nlohmann::json& list, const JsonAt& at, const Bpe& model);

  // Replaces `out` with the segments of `text`, in order, empty ones left out.
  void split(std::string_view text, std::vector<TextSegment>& out) const;

  std::optional<int32_t> find(std::string_view content) const;
  const AddedToken* token(int32_t id) const;  // nullptr if `id` is no added token
  int32_t max_id() const { return max_id_; }  // -1 when there are none

  // implementation details -------------------------------------------------------------------
  // A byte trie for leftmost-longest matching (tokenizers uses an Aho-Corasick automaton; with
  // a few hundred tokens that all start with '<', a trie walk from each candidate byte is as
  // fast and much smaller).
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> children;
      int32_t id = -1;  // token ending here
    };
    std::vector<Node> nodes;  // nodes[0] is the root
    int32_t root_child[256];  // first-byte table: most bytes start no token
    bool empty = true;

    void insert(std::string_view content, int32_t id);
    // Leftmost-longest match at or after `from`; false if none.
    bool find(std::string_view text, size_t from, size_t* begin, size_t* end, int32_t* id) const;
  };

 private:
  void find_matches(std::string_view text, const Trie& trie, std::vector<TextSegment>& out) const;
  bool ends_with_word(std::string_view text) const;
  bool starts_with_word(std::string_view text) const;
  size_t trailing_space_start(std::string_view text) const;
  size_t leading_space_bytes(std::string_view text) const;

  std::unordered_map<std::string, int32_t> ids_;    // content -> id
  std::unordered_map<int32_t, AddedToken> tokens_;  // id -> token (the last one given that id)
  Trie raw_;                                        // normalized == false
  Trie normalized_;                                 // normalized == true
  int32_t max_id_ = -1;
  // Unicode classes for the flags, only when some token sets one: Rust regex's \w (UTS #18
  // word) and \s (White_Space), which tokenizers uses for them.
  std::optional<Regex> word_char_;
  std::optional<Regex> space_char_;
};

}  // namespace dsv4::data

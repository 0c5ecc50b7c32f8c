// bpe.h: the "model" of a byte-level tokenizer.json: the BPE vocab and ranked merges, and the
// merge loop that turns one pre-tokenized piece into ids, with tokenizers' exact order (lowest
// merge rank first, leftmost among equal ranks; model/bpe/word.rs merge_all).
//
//   Bpe bpe = Bpe::from_json(json["model"], {path, "model"});
//   std::vector<int32_t> ids;
//   bpe.encode_piece(" hello", ids);      // raw bytes; mapped to byte-level symbols inside
//
// The byte -> symbol step of ByteLevel is folded in: each byte maps straight to the id of its
// symbol, so no mapped string is built on the hot path. A per-thread cache (piece -> ids, as
// tokenizers' BPE_LOCAL_CACHE) makes repeated words one hash lookup.
// Tests: tests/data/test_tokenizer.cpp, tests/data/test_tokenizer_parts.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/tokenizer_json.h"

namespace dsv4::data {

class Bpe {
 public:
  // `model`: the "model" JSON. Requires type BPE (or no type with vocab and merges); merges as
  // "a b" strings or ["a", "b"] pairs; honours continuing_subword_prefix, end_of_word_suffix,
  // unk_token, fuse_unk, byte_fallback and ignore_merges; a non-zero dropout is rejected
  // (random). Errors name the key, e.g. "model.merges[12]".
  static Bpe from_json(const nlohmann::json& model, const JsonAt& at);

  Bpe(Bpe&&) noexcept = default;
  Bpe& operator=(Bpe&&) noexcept = default;

  // Appends the ids of one pre-tokenized piece of raw text. Thread-safe (the cache is per thread).
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;

  std::optional<int32_t> find(std::string_view token) const;
  std::optional<std::string_view> token(int32_t id) const;  // nullopt for ids not in the vocab
  // Number of vocab entries: tokenizers numbers added tokens that are not in the vocab from here.
  size_t vocab_entries() const { return vocab_.size(); }
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

  // implementation details -------------------------------------------------------------------
  struct MergeSlot {
    uint64_t pair;  // (left id << 32) | right id; kEmptyPair marks a free slot
    int32_t rank;
    int32_t new_id;
  };

 private:
  Bpe() = default;
  const MergeSlot* find_merge(int32_t left, int32_t right) const;
  void initial_symbols(std::string_view piece, std::vector<int32_t>& out) const;
  void merge(const std::vector<int32_t>& symbols, std::vector<int32_t>& ids) const;

  std::vector<char> arena_;                    // every token string, back to back
  std::vector<std::string_view> id_to_token_;  // views into arena_; data() null for gaps
  std::unordered_map<std::string_view, int32_t> vocab_;
  std::vector<MergeSlot> merges_;  // open addressing, power-of-two size
  uint64_t merge_mask_ = 0;
  int32_t byte_id_[256];               // id of each byte's symbol, -1 if absent
  bool simple_ = true;                 // every byte has an id, no prefix/suffix
  std::optional<std::string> prefix_;  // continuing_subword_prefix
  std::optional<std::string> suffix_;  // end_of_word_suffix
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  uint64_t cache_owner_ = 0;  // unique per instance: keys the thread caches
};

}  // namespace dsv4::data

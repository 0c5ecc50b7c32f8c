// added_tokens.cpp: added-token ids, the two matching tries and tokenizers' find_matches with
// its lstrip/rstrip/single_word rules (see added_tokens.h).
#include "data/added_tokens.h"

#include <algorithm>

#include "common/check.h"

namespace dsv4::data {
namespace {

AddedToken added_token_from_json(const nlohmann::json& value, const JsonAt& at) {
  AddedToken t;
  t.content = json_string(json_member(value, at, "content"), at.member("content"));
  t.special = json_bool_or(value, at, "special", false);
  t.single_word = json_bool_or(value, at, "single_word", false);
  t.lstrip = json_bool_or(value, at, "lstrip", false);
  t.rstrip = json_bool_or(value, at, "rstrip", false);
  // tokenizers' AddedToken default: special tokens match the raw text, others the normalized.
  t.normalized = json_bool_or(value, at, "normalized", !t.special);
  return t;
}

// Start of the UTF-8 character that ends `text` (stepping back over continuation bytes).
size_t last_char_start(std::string_view text) {
  size_t pos = text.size() - 1;
  for (int k = 0; k < 3 && pos > 0 && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80; ++k) --pos;
  return pos;
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view content, int32_t id) {
  if (nodes.empty()) {
    nodes.emplace_back();
    std::fill(std::begin(root_child), std::end(root_child), -1);
  }
  empty = false;
  int32_t node = 0;
  for (size_t i = 0; i < content.size(); ++i) {
    const auto byte = static_cast<uint8_t>(content[i]);
    int32_t next = -1;
    if (node == 0) {
      next = root_child[byte];
    } else {
      for (const auto& [b, child] : nodes[node].children)
        if (b == byte) next = child;
    }
    if (next < 0) {
      next = static_cast<int32_t>(nodes.size());
      nodes.emplace_back();
      if (node == 0)
        root_child[byte] = next;
      else
        nodes[node].children.emplace_back(byte, next);
    }
    node = next;
  }
  nodes[node].id = id;
}

bool AddedVocabulary::Trie::find(std::string_view text, size_t from, size_t* begin, size_t* end,
                                 int32_t* id) const {
  if (empty) return false;
  for (size_t i = from; i < text.size(); ++i) {
    int32_t node = root_child[static_cast<uint8_t>(text[i])];
    if (node < 0) continue;
    int32_t best_id = nodes[node].id;
    size_t best_end = i + 1;
    for (size_t j = i + 1; j < text.size(); ++j) {
      int32_t next = -1;
      for (const auto& [b, child] : nodes[node].children)
        if (b == static_cast<uint8_t>(text[j])) next = child;
      if (next < 0) break;
      node = next;
      if (nodes[node].id >= 0) {
        best_id = nodes[node].id;
        best_end = j + 1;
      }
    }
    if (best_id >= 0) {
      *begin = i;
      *end = best_end;
      *id = best_id;
      return true;
    }
  }
  return false;
}

AddedVocabulary AddedVocabulary::from_json(const nlohmann::json& list, const JsonAt& at,
                                           const Bpe& model) {
  AddedVocabulary v;
  if (list.is_null()) return v;
  DSV4_CHECK_IN("data", list.is_array(), "%s: expected an array, got %s", at.where().c_str(),
                list.type_name());
  // tokenizers' AddedVocabulary::add_tokens: ids of tokens new to the vocab count up from the
  // number of vocab entries (not from the largest vocab id).
  auto next_id = static_cast<int32_t>(model.vocab_entries());
  bool any_flag = false;
  for (size_t i = 0; i < list.size(); ++i) {
    AddedToken t = added_token_from_json(list[i], at.index(i));
    if (t.content.empty()) continue;
    if (auto it = v.ids_.find(t.content); it != v.ids_.end()) {
      t.id = it->second;
    } else if (auto id = model.find(t.content)) {
      t.id = *id;
    } else {
      t.id = next_id++;
    }
    any_flag = any_flag || t.single_word || t.lstrip || t.rstrip;
    v.ids_[t.content] = t.id;
    v.max_id_ = std::max(v.max_id_, t.id);
    v.tokens_[t.id] = std::move(t);
  }
  for (const auto& [id, t] : v.tokens_)
    (t.normalized ? v.normalized_ : v.raw_).insert(t.content, id);
  if (any_flag) {
    const std::string where = at.where() + " (single_word/lstrip/rstrip classes)";
    v.word_char_ =
        Regex::compile("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", false, where);
    v.space_char_ = Regex::compile("\\p{White_Space}", false, where);
  }
  return v;
}

std::optional<int32_t> AddedVocabulary::find(std::string_view content) const {
  auto it = ids_.find(std::string(content));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

const AddedToken* AddedVocabulary::token(int32_t id) const {
  auto it = tokens_.find(id);
  return it == tokens_.end() ? nullptr : &it->second;
}

bool AddedVocabulary::ends_with_word(std::string_view text) const {
  return !text.empty() && word_char_->match_at(text, last_char_start(text)) > 0;
}

bool AddedVocabulary::starts_with_word(std::string_view text) const {
  return !text.empty() && word_char_->match_at(text, 0) > 0;
}

size_t AddedVocabulary::trailing_space_start(std::string_view text) const {
  size_t start = text.size();
  while (start > 0) {
    const size_t c = last_char_start(text.substr(0, start));
    if (space_char_->match_at(text.substr(0, start), c) <= 0) break;
    start = c;
  }
  return start;
}

size_t AddedVocabulary::leading_space_bytes(std::string_view text) const {
  size_t pos = 0;
  while (pos < text.size()) {
    const int64_t n = space_char_->match_at(text, pos);
    if (n <= 0) break;
    pos += static_cast<size_t>(n);
  }
  return pos;
}

void AddedVocabulary::find_matches(std::string_view text, const Trie& trie,
                                   std::vector<TextSegment>& out) const {
  size_t start_offset = 0;
  size_t from = 0, begin = 0, end = 0;
  int32_t id = -1;
  while (trie.find(text, from, &begin, &end, &id)) {
    // The automaton resumes after the match even when the rules below discard it.
    from = end;
    const AddedToken& t = tokens_.at(id);
    if (t.single_word) {
      const bool space_before = begin == 0 || !ends_with_word(text.substr(0, begin));
      const bool space_after = end == text.size() || !starts_with_word(text.substr(end));
      if (!space_before || !space_after) continue;
    }
    if (t.lstrip) begin = std::max(trailing_space_start(text.substr(0, begin)), start_offset);
    if (t.rstrip) end += leading_space_bytes(text.substr(end));
    if (start_offset < begin) out.push_back({text.substr(start_offset, begin - start_offset), -1});
    out.push_back({text.substr(begin, end - begin), id});
    start_offset = end;
  }
  if (start_offset < text.size()) out.push_back({text.substr(start_offset), -1});
}

void AddedVocabulary::split(std::string_view text, std::vector<TextSegment>& out) const {
  out.clear();
  if (text.empty()) return;
  if (raw_.empty && normalized_.empty) {
    out.push_back({text, -1});
    return;
  }
  // Pass 1 on the raw text, pass 2 on the plain segments it left (the normalizer is the
  // identity: tokenizer.cpp rejects any other, so "normalized" text is the raw text).
  thread_local std::vector<TextSegment> first;
  first.clear();
  find_matches(text, raw_, first);
  for (const TextSegment& s : first) {
    if (s.id >= 0)
      out.push_back(s);
    else
      find_matches(s.text, normalized_, out);
  }
}

}  // namespace dsv4::data

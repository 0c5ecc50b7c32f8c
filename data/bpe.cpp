// bpe.cpp: BPE vocab/merges loading, the merge loop and the per-thread word cache (see bpe.h).
#include "data/bpe.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>

#include "common/byte_level.h"
#include "common/check.h"
#include "common/json_guard.h"

namespace dsv4::data {
namespace {

constexpr uint64_t kEmptyPair = ~uint64_t{0};  // ids are >= 0, so no real pair has all bits set
// Pieces longer than this are not cached: they are rare (long runs of one class) and would
// crowd out the words that repeat.
constexpr size_t kCacheMaxPieceBytes = 256;
// Entries per thread before the cache starts over (~10-20 MiB of words and ids at the limit).
constexpr size_t kCacheMaxEntries = size_t{1} << 17;

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

uint64_t pair_hash(uint64_t k) {  // splitmix64 finaliser: ids are small and dense
  k ^= k >> 30;
  k *= 0xbf58476d1ce4e5b9ULL;
  k ^= k >> 27;
  k *= 0x94d049bb133111ebULL;
  return k ^ (k >> 31);
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// piece -> ids, per thread and per Bpe (owner): tokenizers keeps the same kind of thread-local
// cache, so concurrent encode() calls never contend on a lock.
struct WordCache {
  uint64_t owner = 0;
  uint64_t last_use = 0;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> words;
};

// A few Bpe instances per thread keep their caches (a process may hold DeepSeek's tokenizer and
// a tiny one side by side); a new instance takes the least recently used slot. Owners are never
// reused, so a slot of a destroyed Bpe is never read again, only recycled.
struct ThreadCaches {
  WordCache slots[4];
  uint64_t clock = 0;

  WordCache& get(uint64_t owner) {
    WordCache* lru = &slots[0];
    for (WordCache& c : slots) {
      if (c.owner == owner) {
        c.last_use = ++clock;
        return c;
      }
      if (c.last_use < lru->last_use) lru = &c;
    }
    lru->words.clear();
    lru->owner = owner;
    lru->last_use = ++clock;
    return *lru;
  }
};

std::atomic<uint64_t> g_next_cache_owner{1};

// One symbol of the word being merged (tokenizers' Symbol without the byte length).
struct Symbol {
  int32_t id;
  int32_t prev;  // -1: first
  int32_t next;  // -1: last
  bool alive;
};

// A candidate merge of the symbol at `pos` with its right neighbour.
struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
};

// std heap functions build a max-heap; this order puts the lowest rank, then the leftmost
// position, on top (tokenizers' Merge ordering).
bool candidate_after(const Candidate& a, const Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

// Token ids index a dense id -> token table, so one large id would allocate a table of its size
// (the fuzzer's 433,333,339 asked for 6.9 GB). The bound is the model's: vocab_size is at most
// 2^20 (model/config_bounds.cpp, 8x the release's 129280), and an id past it embeds no row.
constexpr int64_t kMaxTokenIds = int64_t{1} << 20;

// The key path is built only on failure: the vocab has ~128k entries.
int32_t vocab_id(const nlohmann::json& value, const JsonAt& vocab_at, const std::string& token) {
  DSV4_CHECK_IN(
      "data",
      value.is_number_integer() && value.get<int64_t>() >= 0 && value.get<int64_t>() < kMaxTokenIds,
      "%s: expected an id in [0, 2^20) (a model's vocab_size is at most 2^20), got %s",
      vocab_at.member(token).where().c_str(), json_excerpt(value).c_str());
  return static_cast<int32_t>(value.get<int64_t>());
}

}  // namespace

Bpe Bpe::from_json(const nlohmann::json& model, const JsonAt& at) {
  DSV4_CHECK_IN("data", model.is_object(), "%s: expected an object, got %s", at.where().c_str(),
                model.type_name());
  if (model.contains("type")) {
    const std::string type = json_type(model, at);
    DSV4_CHECK_IN("data", type == "BPE", "%s: model type '%s' is not supported (expected BPE)",
                  at.member("type").where().c_str(), type.c_str());
  }
  Bpe bpe;
  bpe.cache_owner_ = g_next_cache_owner.fetch_add(1);
  bpe.prefix_ = json_optional_string(model, at, "continuing_subword_prefix");
  bpe.suffix_ = json_optional_string(model, at, "end_of_word_suffix");
  bpe.fuse_unk_ = json_bool_or(model, at, "fuse_unk", false);
  bpe.byte_fallback_ = json_bool_or(model, at, "byte_fallback", false);
  bpe.ignore_merges_ = json_bool_or(model, at, "ignore_merges", false);
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    DSV4_CHECK_IN("data", it->is_number() && it->get<double>() == 0.0,
                  "%s: BPE dropout %s is random at encode time; only null or 0 is supported",
                  at.member("dropout").where().c_str(), it->dump().c_str());
  }

  // Vocab: every token string goes into one arena first, then the views are taken, so the
  // views never dangle (the arena's buffer survives moves of the Bpe).
  const JsonAt vocab_at = at.member("vocab");
  const nlohmann::json& vocab = json_member(model, at, "vocab");
  DSV4_CHECK_IN("data", vocab.is_object(), "%s: expected an object of token -> id, got %s",
                vocab_at.where().c_str(), vocab.type_name());
  size_t bytes = 0;
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    bytes += it.key().size();
    max_id = std::max(max_id, vocab_id(it.value(), vocab_at, it.key()));
  }
  bpe.arena_.resize(bytes);
  bpe.id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string_view());
  bpe.vocab_.reserve(vocab.size());
  size_t offset = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::string& token = it.key();
    std::memcpy(bpe.arena_.data() + offset, token.data(), token.size());
    const std::string_view view(bpe.arena_.data() + offset, token.size());
    offset += token.size();
    const int32_t id = it.value().get<int32_t>();
    bpe.vocab_[view] = id;
    bpe.id_to_token_[static_cast<size_t>(id)] = view;
  }

  if (auto unk = json_optional_string(model, at, "unk_token")) {
    const auto id = bpe.find(*unk);
    DSV4_CHECK_IN("data", id.has_value(), "%s: unk_token '%s' is not in the vocab",
                  at.member("unk_token").where().c_str(), unk->c_str());
    bpe.unk_id_ = *id;
  }

  // Merges: rank = position in the list; a pair listed twice keeps its last rank (tokenizers
  // collects them into a hash map).
  const JsonAt merges_at = at.member("merges");
  const nlohmann::json& merges = json_member(model, at, "merges");
  DSV4_CHECK_IN("data", merges.is_array(), "%s: expected an array, got %s",
                merges_at.where().c_str(), merges.type_name());
  size_t capacity = 16;
  while (capacity < merges.size() * 2) capacity *= 2;  // load factor <= 1/2
  bpe.merges_.assign(capacity, MergeSlot{kEmptyPair, 0, 0});
  bpe.merge_mask_ = capacity - 1;
  const size_t prefix_bytes = bpe.prefix_ ? bpe.prefix_->size() : 0;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    auto merge_at = [&] { return merges_at.index(rank); };  // for messages only
    const nlohmann::json& m = merges[rank];
    std::string left, right;
    if (m.is_string()) {
      const std::string line = m.get<std::string>();
      const size_t space = line.find(' ');
      DSV4_CHECK_IN("data",
                    space != std::string::npos && line.find(' ', space + 1) == std::string::npos,
                    "%s: expected \"left right\" (one space), got \"%s\"",
                    merge_at().where().c_str(), line.c_str());
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else {
      DSV4_CHECK_IN("data", m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                    "%s: expected \"left right\" or [\"left\", \"right\"], got %s",
                    merge_at().where().c_str(), json_excerpt(m).c_str());
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    }
    const std::string merged = left + right.substr(std::min(prefix_bytes, right.size()));
    const auto left_id = bpe.find(left), right_id = bpe.find(right), new_id = bpe.find(merged);
    const std::string& missing = !left_id ? left : !right_id ? right : merged;
    DSV4_CHECK_IN("data", left_id && right_id && new_id,
                  "%s: merge '%s' + '%s' uses a token that is not in the vocab ('%s')",
                  merge_at().where().c_str(), left.c_str(), right.c_str(), missing.c_str());
    const uint64_t key = pair_key(*left_id, *right_id);
    for (uint64_t slot = pair_hash(key) & bpe.merge_mask_;; slot = (slot + 1) & bpe.merge_mask_) {
      MergeSlot& s = bpe.merges_[slot];
      if (s.pair == kEmptyPair || s.pair == key) {
        s = {key, static_cast<int32_t>(rank), *new_id};
        break;
      }
    }
  }

  for (int b = 0; b < 256; ++b) {
    const auto id = bpe.find(byte_level_symbol(static_cast<uint8_t>(b)));
    bpe.byte_id_[b] = id.value_or(-1);
    if (!id) bpe.simple_ = false;
  }
  if (bpe.prefix_ || bpe.suffix_) bpe.simple_ = false;
  return bpe;
}

std::optional<int32_t> Bpe::find(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string_view> Bpe::token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return std::nullopt;
  const std::string_view t = id_to_token_[static_cast<size_t>(id)];
  if (t.data() == nullptr) return std::nullopt;
  return t;
}

const Bpe::MergeSlot* Bpe::find_merge(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  for (uint64_t slot = pair_hash(key) & merge_mask_;; slot = (slot + 1) & merge_mask_) {
    const MergeSlot& s = merges_[slot];
    if (s.pair == key) return &s;
    if (s.pair == kEmptyPair) return nullptr;
  }
}

void Bpe::initial_symbols(std::string_view piece, std::vector<int32_t>& out) const {
  out.clear();
  if (simple_) {
    for (const char c : piece) out.push_back(byte_id_[static_cast<uint8_t>(c)]);
    return;
  }
  // tokenizers' merge_word: each character of the byte-level word (one per byte) gets the
  // prefix unless first and the suffix if last; a character missing from the vocab falls back
  // to <0xXX> tokens of its UTF-8 bytes, else to unk (fused when fuse_unk), else is dropped.
  int32_t pending_unk = -1;  // an unk not yet emitted (held back so fuse_unk can extend it)
  std::string s;
  for (size_t i = 0; i < piece.size(); ++i) {
    s.clear();
    if (i > 0 && prefix_) s += *prefix_;
    s += byte_level_symbol(static_cast<uint8_t>(piece[i]));
    if (i + 1 == piece.size() && suffix_) s += *suffix_;
    if (const auto id = find(s)) {
      if (pending_unk >= 0) out.push_back(pending_unk);
      pending_unk = -1;
      out.push_back(*id);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (const char c : s) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>",
                      static_cast<unsigned>(static_cast<uint8_t>(c)));
        if (const auto id = find(name))
          bytes.push_back(*id);
        else
          break;
      }
      if (bytes.size() == s.size()) {
        // NOTE: tokenizers adds the fallback bytes without flushing a pending unk first.
        out.insert(out.end(), bytes.begin(), bytes.end());
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) out.push_back(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) out.push_back(pending_unk);
}

void Bpe::merge(const std::vector<int32_t>& ids_in, std::vector<int32_t>& ids) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> queue;
  const auto n = static_cast<int32_t>(ids_in.size());
  symbols.resize(static_cast<size_t>(n));
  queue.clear();
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {ids_in[i], i - 1, i + 1 < n ? i + 1 : -1, true};
    if (i + 1 < n) {
      if (const MergeSlot* m = find_merge(ids_in[i], ids_in[i + 1]))
        queue.push_back({m->rank, i, m->new_id});
    }
  }
  std::make_heap(queue.begin(), queue.end(), candidate_after);
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), candidate_after);
    const Candidate top = queue.back();
    queue.pop_back();
    Symbol& cur = symbols[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const Symbol right = symbols[cur.next];
    // Stale entry: one of the two symbols has merged since it was queued.
    const MergeSlot* m = find_merge(cur.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;
    symbols[cur.next].alive = false;
    cur.id = top.new_id;
    cur.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const MergeSlot* l = find_merge(symbols[cur.prev].id, cur.id)) {
        queue.push_back({l->rank, cur.prev, l->new_id});
        std::push_heap(queue.begin(), queue.end(), candidate_after);
      }
    }
    if (cur.next >= 0) {
      if (const MergeSlot* r = find_merge(cur.id, symbols[cur.next].id)) {
        queue.push_back({r->rank, top.pos, r->new_id});
        std::push_heap(queue.begin(), queue.end(), candidate_after);
      }
    }
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

void Bpe::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.empty()) return;
  thread_local ThreadCaches caches;
  const bool cacheable = piece.size() <= kCacheMaxPieceBytes;
  WordCache* cache = nullptr;
  if (cacheable) {
    cache = &caches.get(cache_owner_);
    auto it = cache->words.find(piece);
    if (it != cache->words.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids.size();
  std::optional<int32_t> whole;
  if (ignore_merges_) {
    std::string mapped;
    byte_level_encode(piece, mapped);
    whole = find(mapped);
  }
  if (whole) {
    ids.push_back(*whole);
  } else {
    thread_local std::vector<int32_t> symbols;
    initial_symbols(piece, symbols);
    merge(symbols, ids);
  }
  if (cache != nullptr) {
    if (cache->words.size() >= kCacheMaxEntries) cache->words.clear();
    cache->words.emplace(std::string(piece), std::vector<int32_t>(ids.begin() + first, ids.end()));
  }
}

}  // namespace dsv4::data

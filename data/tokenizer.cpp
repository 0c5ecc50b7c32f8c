// tokenizer.cpp: Tokenizer's load and public API (see tokenizer.h). The parts live in their own
// files: added_tokens (cut out first), pretokenizer (Split regexes + ByteLevel), bpe (merges),
// common/byte_level (the byte <-> symbol alphabet), regex (PCRE2). Behaviour is that of Hugging Face
// `tokenizers` 0.23 on the same tokenizer.json; tests/data/tokenizer_fixture.jsonl holds its ids.
//
// Not modelled, on purpose: the post_processor (encode() is the plain add_special_tokens=False
// encoding), truncation/padding, offsets, and normalizers other than the identity (none, or an
// empty Sequence as in DeepSeek's file); any other normalizer is a load error rather than a
// silent difference. Two deliberate departures in decode(): it returns the raw bytes where
// tokenizers replaces invalid UTF-8 with U+FFFD (so decode(encode(s)) == s for any bytes), and
// an id outside the vocab throws where tokenizers skips it silently.
#include "data/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/byte_level.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "data/added_tokens.h"
#include "data/bpe.h"
#include "data/pretokenizer.h"
#include "data/tokenizer_json.h"

namespace dsv4::data {

struct Tokenizer::Impl {
  std::string origin;
  Bpe model;
  PreTokenizer pre;
  AddedVocabulary added;
};

namespace {

// Accepts only normalizers that leave the text unchanged: null, or Sequences of those.
void check_identity_normalizer(const nlohmann::json& value, const JsonAt& at) {
  if (value.is_null()) return;
  const std::string type = json_type(value, at);
  DSV4_CHECK_IN("data", type == "Sequence",
                "%s: normalizer type '%s' is not supported (only none or an empty Sequence: "
                "the added-token and pre-tokenizer steps assume unnormalized text)",
                at.member("type").where().c_str(), type.c_str());
  const JsonAt list_at = at.member("normalizers");
  const nlohmann::json& list = json_member(value, at, "normalizers");
  DSV4_CHECK_IN("data", list.is_array(), "%s: expected an array, got %s", list_at.where().c_str(),
                list.type_name());
  for (size_t i = 0; i < list.size(); ++i) check_identity_normalizer(list[i], list_at.index(i));
}

// decode() implements the ByteLevel decoder; anything else would decode differently.
void check_byte_level_decoder(const nlohmann::json& value, const JsonAt& at) {
  DSV4_CHECK_IN("data", !value.is_null(), "%s: null; a byte-level BPE needs the ByteLevel decoder",
                at.where().c_str());
  const std::string type = json_type(value, at);
  if (type == "Sequence") {
    const JsonAt list_at = at.member("decoders");
    const nlohmann::json& list = json_member(value, at, "decoders");
    DSV4_CHECK_IN("data", list.is_array() && list.size() == 1, "%s: expected [ByteLevel], got %s",
                  list_at.where().c_str(), json_excerpt(list).c_str());
    check_byte_level_decoder(list[0], list_at.index(0));
    return;
  }
  DSV4_CHECK_IN("data", type == "ByteLevel",
                "%s: decoder type '%s' is not supported (expected "
                "ByteLevel)",
                at.member("type").where().c_str(), type.c_str());
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path, const std::string& named_by) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // The user's words for where the path came from: "/x (--tokenizer)", or the bare path.
  const std::string who = named_by.empty() ? path : path + " (" + named_by + ")";
  DSV4_USER_CHECK("data", fs::exists(path, ec),
                  "%s: no such file or directory; expected a tokenizer.json or the directory holding one", who.c_str());
  const bool dir = fs::is_directory(path, ec);
  const std::string file = dir ? (fs::path(path) / "tokenizer.json").string() : path;
  regular_file_require(file, named_by.empty() ? "a tokenizer.json" : "the tokenizer.json of " + named_by);
  DSV4_USER_CHECK("data", fs::is_regular_file(file, ec),
                  "%s has no tokenizer.json: expected %s, as a Hugging Face model download has", who.c_str(),
                  file.c_str());
  std::ifstream in(file, std::ios::binary);
  DSV4_USER_CHECK("data", in.good(), "tokenizer.json '%s': cannot open for reading", file.c_str());
  std::ostringstream text;
  text << in.rdbuf();
  DSV4_CHECK_IN("data", !in.bad(), "tokenizer.json '%s': read error", file.c_str());
  return from_json(text.str(), file);
}

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = json_parse(json_text, origin);
  } catch (const nlohmann::json::parse_error& e) {
    DSV4_USER_FAIL("data", "tokenizer.json '%s': malformed JSON, expected the Hugging Face tokenizer format: %s",
                   origin.c_str(), e.what());
  }
  const JsonAt root{origin, ""};
  DSV4_CHECK_IN("data", j.is_object(), "%s: expected an object, got %s", root.where().c_str(),
                j.type_name());
  check_identity_normalizer(j.value("normalizer", nlohmann::json()), root.member("normalizer"));
  check_byte_level_decoder(j.value("decoder", nlohmann::json()), root.member("decoder"));
  auto impl = std::make_unique<Impl>(Impl{
      origin, Bpe::from_json(json_member(j, root, "model"), root.member("model")),
      PreTokenizer::from_json(json_member(j, root, "pre_tokenizer"), root.member("pre_tokenizer")),
      AddedVocabulary()});
  impl->added = AddedVocabulary::from_json(j.value("added_tokens", nlohmann::json()),
                                           root.member("added_tokens"), impl->model);
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);  // ~4 bytes per token on English; fewer reallocations
  thread_local std::vector<TextSegment> segments;
  impl_->added.split(text, segments);
  const Bpe& model = impl_->model;
  auto emit = [&](std::string_view piece) { model.encode_piece(piece, ids); };
  const PieceSink sink = piece_sink(emit);
  for (const TextSegment& s : segments) {
    if (s.id >= 0)
      ids.push_back(s.id);
    else
      impl_->pre.split(s.text, sink);
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (const int32_t id : ids) byte_level_decode_token(token_text(id), out);
  return out;
}

std::optional<int32_t> Tokenizer::find_token_id(std::string_view token) const {
  if (auto id = impl_->added.find(token)) return id;
  return impl_->model.find(token);
}

int32_t Tokenizer::token_id(std::string_view token) const {
  const auto id = find_token_id(token);
  DSV4_CHECK_IN("data", id.has_value(), "token '%.*s' is not in the vocab of '%s'",
                static_cast<int>(token.size()), token.data(), impl_->origin.c_str());
  return *id;
}

std::string_view Tokenizer::token_text(int32_t id) const {
  // An added token shadows a vocab entry with the same id, as in tokenizers' id_to_token.
  if (const AddedToken* t = impl_->added.token(id)) return t->content;
  const auto text = impl_->model.token(id);
  DSV4_CHECK_IN("data", text.has_value(), "token id %d is not in the vocab of '%s' (vocab_size %d)",
                id, impl_->origin.c_str(), vocab_size());
  return *text;
}

int32_t Tokenizer::vocab_size() const {
  return std::max(impl_->model.max_id(), impl_->added.max_id()) + 1;
}

}  // namespace dsv4::data

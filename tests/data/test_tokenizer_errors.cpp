// test_tokenizer_errors.cpp: every tokenizer.json load error names the file and the JSON key and
// says what was expected: missing file, malformed JSON, a non-BPE model, an unknown
// pre-tokenizer, an invalid regex (with PCRE2's message and offset), and the other shapes the
// loader refuses rather than encode differently from Hugging Face.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/check.h"
#include "data/tokenizer.h"
#include "tests/data/data_test_util.h"

namespace dsv4::data {
namespace {

using ::testing::HasSubstr;

// The message of the dsv4::Error that `f` throws, or a failure if it throws none.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no dsv4::Error thrown";
  return "";
}

// The tiny tokenizer as JSON, for mutation.
nlohmann::json tiny() { return nlohmann::json::parse(testing::tiny_tokenizer_json()); }

std::string load_error(const nlohmann::json& j) {
  return error_of([&] { (void)Tokenizer::from_json(j.dump(), "/models/x/tokenizer.json"); });
}

TEST(TokenizerErrors, MissingFileNamesThePath) {
  const std::string msg = error_of([] { (void)Tokenizer::load("/nonexistent/dsv4/tok"); });
  EXPECT_THAT(msg, HasSubstr("/nonexistent/dsv4/tok"));
  EXPECT_THAT(msg, HasSubstr("no such file"));
  testing::TempDir dir("dsv4_tokenizer_empty_dir");
  const std::string in_dir = error_of([&] { (void)Tokenizer::load(dir.path()); });
  EXPECT_THAT(in_dir, HasSubstr(dir.path() + "/tokenizer.json"));
}

TEST(TokenizerErrors, MalformedJsonNamesTheFile) {
  const std::string msg =
      error_of([] { (void)Tokenizer::from_json("{\"model\": {", "/m/tokenizer.json"); });
  EXPECT_THAT(msg, HasSubstr("/m/tokenizer.json"));
  EXPECT_THAT(msg, HasSubstr("malformed JSON"));
  EXPECT_THAT(error_of([] { (void)Tokenizer::from_json("[1, 2]", "/m/t.json"); }),
              HasSubstr("expected an object"));
}

TEST(TokenizerErrors, ModelMustBeBpe) {
  nlohmann::json j = tiny();
  j["model"]["type"] = "WordPiece";
  const std::string msg = load_error(j);
  EXPECT_THAT(msg, HasSubstr("/models/x/tokenizer.json"));
  EXPECT_THAT(msg, HasSubstr("key 'model.type'"));
  EXPECT_THAT(msg, HasSubstr("'WordPiece' is not supported (expected BPE)"));
  j = tiny();
  j.erase("model");
  EXPECT_THAT(load_error(j), HasSubstr("key 'model': missing"));
  j = tiny();
  j["model"].erase("vocab");
  EXPECT_THAT(load_error(j), HasSubstr("key 'model.vocab': missing"));
  j = tiny();
  j["model"]["dropout"] = 0.1;
  EXPECT_THAT(load_error(j), HasSubstr("key 'model.dropout'"));
}

TEST(TokenizerErrors, TokenIdPastAnyVocabSizeIsRefused) {
  // Found by tests/fuzz/ (fuzz_tokenizer_json, session 18; corpus regression_vocab_id_huge.json):
  // one vocab id of 433,333,339 sized the dense id -> token table at 6.9 GB (an out-of-memory).
  nlohmann::json j = tiny();
  const std::string token = j["model"]["vocab"].begin().key();
  j["model"]["vocab"][token] = 433333339;
  const std::string msg = load_error(j);
  EXPECT_THAT(msg, HasSubstr("/models/x/tokenizer.json"));
  EXPECT_THAT(msg, HasSubstr("expected an id in [0, 2^20)"));
  EXPECT_THAT(msg, HasSubstr("got 433333339"));
  j["model"]["vocab"][token] = (1 << 20) - 1;  // the largest id taken
  EXPECT_NO_THROW((void)Tokenizer::from_json(j.dump(), "/models/x/tokenizer.json"));
}

TEST(TokenizerErrors, BadMergesNameTheEntry) {
  nlohmann::json j = tiny();
  j["model"]["merges"][3] = "he llo";
  std::string msg = load_error(j);
  EXPECT_THAT(msg, HasSubstr("key 'model.merges[3]'"));
  EXPECT_THAT(msg, HasSubstr("not in the vocab ('llo')"));
  j = tiny();
  j["model"]["merges"][0] = "a b c";
  EXPECT_THAT(load_error(j), HasSubstr("key 'model.merges[0]': expected \"left right\""));
  j = tiny();
  j["model"]["merges"][1] = 7;
  EXPECT_THAT(load_error(j), HasSubstr("key 'model.merges[1]'"));
  j = tiny();
  j["model"]["vocab"]["x"] = "seven";
  EXPECT_THAT(load_error(j), HasSubstr("key 'model.vocab.x': expected an id"));
}

TEST(TokenizerErrors, UnknownPreTokenizerType) {
  nlohmann::json j = tiny();
  j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Whitespace"}};
  const std::string msg = load_error(j);
  EXPECT_THAT(msg, HasSubstr("/models/x/tokenizer.json"));
  EXPECT_THAT(msg, HasSubstr("key 'pre_tokenizer.pretokenizers[1].type'"));
  EXPECT_THAT(msg, HasSubstr("unknown pre-tokenizer type 'Whitespace'"));
  j = tiny();
  j["pre_tokenizer"]["pretokenizers"].erase(3);  // no ByteLevel
  EXPECT_THAT(load_error(j), HasSubstr("no ByteLevel step"));
  j = tiny();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  EXPECT_THAT(load_error(j),
              HasSubstr("key 'pre_tokenizer.pretokenizers[0].behavior': unknown split behavior"));
}

TEST(TokenizerErrors, InvalidRegexQuotesPcre2) {
  nlohmann::json j = tiny();
  j["pre_tokenizer"]["pretokenizers"][2]["pattern"]["Regex"] = "(ab|[c";
  const std::string msg = load_error(j);
  EXPECT_THAT(msg, HasSubstr("/models/x/tokenizer.json"));
  EXPECT_THAT(msg, HasSubstr("key 'pre_tokenizer.pretokenizers[2].pattern.Regex'"));
  EXPECT_THAT(msg, HasSubstr("invalid regex /(ab|[c/"));
  EXPECT_THAT(msg, HasSubstr("missing terminating ] for character class"));
  EXPECT_THAT(msg, HasSubstr("at offset 6"));
  j = tiny();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Glob", "*"}};
  EXPECT_THAT(load_error(j),
              HasSubstr("key 'pre_tokenizer.pretokenizers[0].pattern': expected {\"Regex\""));
}

TEST(TokenizerErrors, UnsupportedNormalizerAndDecoder) {
  nlohmann::json j = tiny();
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_THAT(load_error(j),
              HasSubstr("key 'normalizer.type': normalizer type 'NFC' is not supported"));
  j = tiny();
  j["normalizer"]["normalizers"] = {{{"type", "Lowercase"}}};
  EXPECT_THAT(load_error(j), HasSubstr("key 'normalizer.normalizers[0].type'"));
  j = tiny();
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(load_error(j),
              HasSubstr("key 'decoder.type': decoder type 'WordPiece' is not supported"));
  j = tiny();
  j["added_tokens"][0]["content"] = 5;
  EXPECT_THAT(load_error(j), HasSubstr("key 'added_tokens[0].content': expected a string"));
}

}  // namespace
}  // namespace dsv4::data

// synth_tokenizer.cpp: writes the tiny byte-level BPE tokenizer (see synth_tokenizer.h).
// Ids: 0 BOS, 1 EOS, 2 pad, 3..258 the 256 byte tokens, then merges, then the chat tokens.
#include "model/synth_tokenizer.h"

#include <string>
#include <utility>
#include <vector>

#include "common/byte_level.h"
#include "common/check.h"

namespace dsv4::model {
namespace {

// A fixed list of common English merges, each joining two tokens that already exist.
const std::vector<std::pair<const char*, const char*>> kMerges = {
    {"Ġ", "t"}, {"h", "e"}, {"Ġ", "a"}, {"i", "n"}, {"Ġt", "he"}, {"e", "r"}, {"o", "n"},
    {"r", "e"}, {"Ġ", "s"}, {"e", "n"}, {"a", "t"}, {"o", "r"}, {"Ġ", "o"}, {"e", "s"},
    {"Ġ", "w"}, {"i", "s"}, {"Ġ", "c"}, {"a", "n"}, {"i", "t"}, {"Ġ", "i"}, {"in", "g"},
    {"Ġ", "b"}, {"Ġ", "f"}, {"Ġ", "p"}, {"a", "l"}, {"Ġ", "m"}, {"Ġo", "f"}, {"an", "d"},
    {"Ġ", "and"}, {"Ġt", "o"}, {"Ġi", "n"}, {"Ġ", "d"}, {"l", "l"}, {"o", "u"}, {"Ġ", "h"},
    {"e", "d"}, {"Ġ", "l"}, {"Ġ", "n"}, {"Ġ", "e"}, {"Ġ", "T"}, {"ĠT", "he"}, {"Ġ", "is"},
};

nlohmann::json added_token(int id, const char* content, bool special) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", !special}, {"special", special}};
}

nlohmann::json split(const std::string& regex) {
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

}  // namespace

nlohmann::json synth_tokenizer_json(int vocab_size) {
  nlohmann::json vocab = nlohmann::json::object();
  // BOS/EOS/pad are both model-vocab entries and added tokens, as in DeepSeek's file: HF
  // `tokenizers` ignores an added token's "id" unless the model vocab holds it, and numbers the
  // others from the end of the vocab in list order (which the chat tokens below rely on).
  vocab[kTokenBos] = 0;
  vocab[kTokenEos] = 1;
  vocab[kTokenPad] = 2;
  int id = 3;
  // The 256 byte tokens: GPT-2's byte-level symbols (common/byte_level.h, the table data/'s
  // tokenizer reads them back with), in byte order.
  for (int b = 0; b < 256; ++b) vocab[std::string(byte_level_symbol(static_cast<uint8_t>(b)))] = id++;
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [a, b] : kMerges) {
    const std::string merged = std::string(a) + b;
    DSV4_CHECK_IN("tokenizer", vocab.contains(a) && vocab.contains(b) && !vocab.contains(merged),
                  "bad built-in merge '%s %s'", a, b);
    vocab[merged] = id++;
    merges.push_back(std::string(a) + " " + b);
  }
  nlohmann::json added = nlohmann::json::array();
  added.push_back(added_token(0, kTokenBos, true));
  added.push_back(added_token(1, kTokenEos, true));
  added.push_back(added_token(2, kTokenPad, true));
  // The chat markers are not "special" in DeepSeek's file (normalized, special=false), so
  // decode keeps them; the think markers follow the same convention.
  for (const char* t : {kTokenUser, kTokenAssistant, kTokenThinkOpen, kTokenThinkClose}) {
    added.push_back(added_token(id++, t, false));
  }
  DSV4_CHECK_IN("tokenizer", id <= vocab_size,
                "the tiny tokenizer needs %d ids but vocab_size is %d", id, vocab_size);

  // Pre-tokenizer identical to DeepSeek's tokenizer.json (digits in runs of up to 3, CJK runs,
  // then the word/punctuation/space pattern), so tokenizer tests cover the same regexes.
  nlohmann::json pre = {
      {"type", "Sequence"},
      {"pretokenizers",
       {split("\\p{N}{1,3}"),
        split("[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"),
        split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
              " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  nlohmann::json post = byte_level;
  post["trim_offsets"] = false;
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}}},
          {"pre_tokenizer", pre},
          {"post_processor", post},
          {"decoder", byte_level},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
            {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", vocab}, {"merges", merges}}}};
}

nlohmann::json synth_tokenizer_config_json() {
  return {{"add_bos_token", true},
          {"add_eos_token", false},
          {"bos_token", kTokenBos},
          {"eos_token", kTokenEos},
          {"pad_token", kTokenEos},
          {"unk_token", nullptr},
          {"clean_up_tokenization_spaces", false},
          {"model_max_length", 131072},
          {"tokenizer_class", "LlamaTokenizerFast"}};
}

}  // namespace dsv4::model

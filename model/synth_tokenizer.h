// synth_tokenizer.h: the built-in tiny checkpoint's tokenizer: a byte-level BPE tokenizer.json in
// the same shape as DeepSeek's (Split pre-tokenizers with the same Unicode-class regexes, then
// ByteLevel; BPE model; ByteLevel decoder), with the 256 byte tokens, a few dozen English merges
// (so the merge path runs), and the DSV4 special tokens (BOS, EOS, pad, <｜User｜>,
// <｜Assistant｜>, <think>, </think>). Loadable by Hugging Face `tokenizers`.
//
//   nlohmann::json tok = synth_tokenizer_json(512);        // vocab_size bound
//   nlohmann::json cfg = synth_tokenizer_config_json();    // tokenizer_config.json
#pragma once

#include <nlohmann/json.hpp>

namespace dsv4::model {

nlohmann::json synth_tokenizer_json(int vocab_size);
nlohmann::json synth_tokenizer_config_json();

// The DSV4 chat special tokens, in id order after BOS/EOS/pad.
inline constexpr const char* kTokenBos = "<｜begin▁of▁sentence｜>";
inline constexpr const char* kTokenEos = "<｜end▁of▁sentence｜>";
inline constexpr const char* kTokenPad = "<｜▁pad▁｜>";
inline constexpr const char* kTokenUser = "<｜User｜>";
inline constexpr const char* kTokenAssistant = "<｜Assistant｜>";
inline constexpr const char* kTokenThinkOpen = "<think>";
inline constexpr const char* kTokenThinkClose = "</think>";

}  // namespace dsv4::model

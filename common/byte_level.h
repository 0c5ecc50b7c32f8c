// byte_level.h: GPT-2's byte-level alphabet (bytes_to_unicode), as Hugging Face's ByteLevel
// pre-tokenizer and decoder use it. In common/ because two modules need the one table: data/'s
// tokenizer (bpe, decode) and model/'s synthetic tokenizer, and model/ may not include data/. Every byte stands for one visible character so that BPE never sees raw
// control bytes or spaces: printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for
// themselves, the other 68 bytes for U+0100.. in byte order (space is 'Ġ' U+0120, '\n' is 'Ċ').
//
//   std::string_view g = byte_level_symbol(' ');        // "Ġ" (UTF-8 C4 A0)
//   std::string out;
//   byte_level_decode_token("Ġhello", out);             // out == " hello"
//
// Tests: tests/common/test_byte_level.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsv4 {

// UTF-8 of the character that stands for byte `b`.
std::string_view byte_level_symbol(uint8_t b);
// Appends the byte-level form of `bytes` (each byte replaced by its symbol).
void byte_level_encode(std::string_view bytes, std::string& out);
// Appends the bytes a token stands for, as tokenizers' ByteLevel decoder does: when every
// character of `token` is a byte-level symbol, their bytes; otherwise (an added token such as
// "<｜User｜>") the token's own UTF-8 unchanged.
void byte_level_decode_token(std::string_view token, std::string& out);

// implementation details -------------------------------------------------------------------
// Decodes the UTF-8 character at `pos` (advancing it); a malformed byte decodes as U+FFFD and
// advances by one. Token strings come from JSON and are valid, so this is never lossy there.
uint32_t utf8_next(std::string_view s, size_t& pos);
// The same decode, strict: nullopt, and `pos` unchanged, where the bytes at `pos` are not UTF-8
// (a stray continuation byte; a truncated, overlong or surrogate sequence; past U+10FFFF).
std::optional<uint32_t> utf8_decode(std::string_view s, size_t& pos);
// Appends the UTF-8 encoding of `code_point`.
void utf8_append(uint32_t code_point, std::string& out);

}  // namespace dsv4

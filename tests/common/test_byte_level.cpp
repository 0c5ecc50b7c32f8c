// test_byte_level.cpp: common/byte_level.h, GPT-2's bytes_to_unicode table shared by data/'s
// tokenizer and model/'s synthetic tokenizer: known symbols, the table's shape (256 distinct
// single characters, printable Latin-1 bytes standing for themselves, the other 68 at
// U+0100..U+0143 in byte order), encode/decode round trips, literal tokens, and the UTF-8 helpers
// on valid and malformed input.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/byte_level.h"

namespace dsv4 {
namespace {

TEST(ByteLevel, KnownSymbols) {
  EXPECT_EQ(byte_level_symbol(' '), "Ġ");
  EXPECT_EQ(byte_level_symbol('\n'), "Ċ");
  EXPECT_EQ(byte_level_symbol('A'), "A");
  EXPECT_EQ(byte_level_symbol(0x00), "Ā");  // U+0100: the first non-printable byte
  EXPECT_EQ(byte_level_symbol(0xAD), "Ń");  // soft hyphen: the 68th and last stand-in, U+0143
}

TEST(ByteLevel, TableIsGpt2BytesToUnicode) {
  std::set<uint32_t> seen;
  uint32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const std::string_view s = byte_level_symbol(static_cast<uint8_t>(b));
    size_t pos = 0;
    const uint32_t cp = utf8_next(s, pos);
    ASSERT_EQ(pos, s.size()) << "byte " << b << ": one character";
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    EXPECT_EQ(cp, printable ? static_cast<uint32_t>(b) : next++) << "byte " << b;
    EXPECT_TRUE(seen.insert(cp).second) << "byte " << b << " shares its symbol";
  }
  EXPECT_EQ(next, 0x100u + 68) << "68 bytes are not printable";
}

TEST(ByteLevel, EncodeDecodeRoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string mapped, back;
  byte_level_encode(all, mapped);
  EXPECT_GT(mapped.size(), all.size()) << "the non-ASCII symbols take two UTF-8 bytes";
  byte_level_decode_token(mapped, back);
  EXPECT_EQ(back, all);
  back.clear();
  byte_level_decode_token("ĠhelloĊ", back);
  EXPECT_EQ(back, " hello\n");
}

TEST(ByteLevel, TokenOutsideTheAlphabetIsLiteral) {
  std::string out = "x";
  byte_level_decode_token("<｜User｜>", out);  // '｜' is no symbol: the token is literal text
  EXPECT_EQ(out, "x<｜User｜>") << "what was decoded before is kept";
  out.clear();
  byte_level_decode_token("Ġa b", out);  // a plain space is no symbol either: all or nothing
  EXPECT_EQ(out, "Ġa b");
}

TEST(ByteLevel, Utf8HelpersRoundTripAndReplaceMalformedBytes) {
  for (const uint32_t cp : {0x41u, 0x120u, 0x7FFu, 0x800u, 0xFF5Cu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    utf8_append(cp, s);
    size_t pos = 0;
    EXPECT_EQ(utf8_next(s, pos), cp) << std::hex << cp;
    EXPECT_EQ(pos, s.size()) << std::hex << cp;
  }
  const std::string bad = "\xC0\xAF" "\xED\xA0\x80" "\xE2\x82";  // overlong, surrogate, truncated
  size_t pos = 0, count = 0;
  while (pos < bad.size()) {
    EXPECT_EQ(utf8_next(bad, pos), 0xFFFDu) << "at byte " << pos;
    ++count;
  }
  EXPECT_EQ(count, bad.size()) << "each malformed byte decodes alone";
}

}  // namespace
}  // namespace dsv4

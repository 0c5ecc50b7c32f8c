// byte_level.cpp: the byte <-> symbol tables of GPT-2's bytes_to_unicode (see byte_level.h).
#include "common/byte_level.h"

#include <array>

namespace dsv4 {
namespace {

// The 68 non-printable bytes take U+0100.. in byte order, so no symbol is above U+0143.
constexpr uint32_t kMaxSymbol = 0x100 + 68;

struct Tables {
  std::array<std::string, 256> symbol;             // byte -> UTF-8 of its stand-in
  std::array<int16_t, kMaxSymbol> byte_of_symbol;  // code point -> byte, -1 if not a symbol

  Tables() {
    byte_of_symbol.fill(-1);
    uint32_t next = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? b : next++;
      utf8_append(cp, symbol[b]);
      byte_of_symbol[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

std::optional<uint32_t> utf8_decode(std::string_view s, size_t& pos) {
  const auto c0 = static_cast<unsigned char>(s[pos]);
  const size_t left = s.size() - pos;
  auto cont = [&](size_t k) {
    return k < left && (static_cast<unsigned char>(s[pos + k]) & 0xC0) == 0x80;
  };
  auto byte = [&](size_t k) {
    return static_cast<uint32_t>(static_cast<unsigned char>(s[pos + k]) & 0x3F);
  };
  if (c0 < 0x80) {
    pos += 1;
    return c0;
  }
  if (c0 >= 0xC2 && c0 < 0xE0 && cont(1)) {
    const uint32_t cp = ((c0 & 0x1Fu) << 6) | byte(1);
    pos += 2;
    return cp;
  }
  if (c0 >= 0xE0 && c0 < 0xF0 && cont(1) && cont(2)) {
    const uint32_t cp = ((c0 & 0x0Fu) << 12) | (byte(1) << 6) | byte(2);
    if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) {
      pos += 3;
      return cp;
    }
  }
  if (c0 >= 0xF0 && c0 < 0xF5 && cont(1) && cont(2) && cont(3)) {
    const uint32_t cp = ((c0 & 0x07u) << 18) | (byte(1) << 12) | (byte(2) << 6) | byte(3);
    if (cp >= 0x10000 && cp <= 0x10FFFF) {
      pos += 4;
      return cp;
    }
  }
  return std::nullopt;
}

uint32_t utf8_next(std::string_view s, size_t& pos) {
  if (const std::optional<uint32_t> cp = utf8_decode(s, pos)) return *cp;
  pos += 1;
  return 0xFFFD;
}

void utf8_append(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string_view byte_level_symbol(uint8_t b) { return tables().symbol[b]; }

void byte_level_encode(std::string_view bytes, std::string& out) {
  const Tables& t = tables();
  for (const char c : bytes) out += t.symbol[static_cast<uint8_t>(c)];
}

void byte_level_decode_token(std::string_view token, std::string& out) {
  const Tables& t = tables();
  const size_t rollback = out.size();
  size_t pos = 0;
  while (pos < token.size()) {
    const uint32_t cp = utf8_next(token, pos);
    if (cp >= kMaxSymbol || t.byte_of_symbol[cp] < 0) {
      // NOTE: all or nothing per token, as tokenizers' decoder: one character outside the
      // alphabet (a space, '｜', ...) means the token is literal text.
      out.resize(rollback);
      out.append(token);
      return;
    }
    out.push_back(static_cast<char>(t.byte_of_symbol[cp]));
  }
}

}  // namespace dsv4

// regex.cpp: PCRE2 wrapper for the pre-tokenizer regexes (see regex.h): Oniguruma-to-PCRE2
// translation, compile + JIT, and the find_iter emulation.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/regex.h"

#include <pcre2.h>

#include <algorithm>
#include <cstring>

#include "common/check.h"

namespace dsv4::data {
namespace {

// Compile options, chosen to read patterns the way tokenizers' Oniguruma does:
//   UTF + UCP            \p{..}, \d and POSIX classes see Unicode properties, not bytes;
//   MULTILINE            Ruby syntax makes ^ and $ line anchors (checked: Split("^a") splits
//                        "ab\nab" at both a's under tokenizers 0.23.3);
//   MATCH_INVALID_UTF    encode() takes arbitrary bytes; invalid sequences can never be part of
//                        a match, so they fall into the gaps and still reach the byte-level BPE.
constexpr uint32_t kCompileOptions =
    PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_MATCH_INVALID_UTF;

// One match-data block per thread: encode() is const and may run on many threads at once, and
// allocating one per search would dominate short pieces. Only the whole-match pair is read.
struct MatchData {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  ~MatchData() { pcre2_match_data_free(data); }
};

pcre2_match_data* thread_match_data() {
  thread_local MatchData md;
  DSV4_CHECK_IN("data", md.data != nullptr, "out of memory for PCRE2 match data");
  return md.data;
}

size_t utf8_char_bytes(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 1;
  const auto lead = static_cast<unsigned char>(text[pos]);
  const size_t n = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return std::min(n, text.size() - pos);
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0)
    return "PCRE2 error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

std::string regex_translate_onig(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  int class_depth = 0;  // Oniguruma classes nest ([a-z&&[^aeiou]]); options never apply inside
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      switch (e) {
        case 's':
          out += "\\p{White_Space}";
          continue;
        case 'S':
          out += "\\P{White_Space}";
          continue;
        case 'h':
          out += "\\p{ASCII_Hex_Digit}";
          continue;
        case 'H':
          out += "\\P{ASCII_Hex_Digit}";
          continue;
        case 'u':
          if (i + 4 < p.size() && is_hex(p[i + 1]) && is_hex(p[i + 2]) && is_hex(p[i + 3]) &&
              is_hex(p[i + 4])) {
            out += "\\x{";
            out.append(p.substr(i + 1, 4));
            out += '}';
            i += 4;
            continue;
          }
          break;
        case 'Q': {  // literal up to \E: copy untouched, escapes inside are not escapes
          const size_t end = p.find("\\E", i + 1);
          const size_t stop = end == std::string_view::npos ? p.size() : end + 2;
          out += "\\Q";
          out.append(p.substr(i + 1, stop - (i + 1)));
          i = stop - 1;
          continue;
        }
        default:
          break;
      }
      out += '\\';
      out += e;
      continue;
    }
    if (c == '[') {
      const bool posix = class_depth > 0 && i + 1 < p.size() && p[i + 1] == ':';
      // [[:space:]] is White_Space in Oniguruma too (no U+180E), like \s.
      if (posix && p.substr(i).starts_with("[:space:]")) {
        out += "\\p{White_Space}";
        i += 8;
        continue;
      }
      if (posix && p.substr(i).starts_with("[:^space:]")) {
        out += "\\P{White_Space}";
        i += 9;
        continue;
      }
      if (!posix) {
        ++class_depth;
        out += c;
        // A ']' right after '[' or '[^' is a literal member, not the end of the class.
        if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
        if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
        continue;
      }
    } else if (c == ']' && class_depth > 0) {
      --class_depth;
    } else if (c == '(' && class_depth == 0 && i + 2 < p.size() && p[i + 1] == '?') {
      // Inline options (?imx-imx) or (?imx-imx:...): Ruby's m is PCRE2's s (dot matches \n).
      size_t j = i + 2;
      while (j < p.size() && p[j] != '\0' && std::strchr("imx-", p[j]) != nullptr) ++j;
      if (j > i + 2 && j < p.size() && (p[j] == ')' || p[j] == ':')) {
        out += "(?";
        for (size_t k = i + 2; k < j; ++k) out += p[k] == 'm' ? 's' : p[k];
        i = j - 1;
        continue;
      }
    }
    out += c;
  }
  return out;
}

Regex Regex::compile(std::string_view pattern, bool literal, const std::string& where) {
  Regex re;
  re.pattern_ = literal ? std::string(pattern) : regex_translate_onig(pattern);
  re.where_ = where;
  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  DSV4_CHECK_IN("data", context != nullptr, "out of memory compiling the regex of %s",
                where.c_str());
  // Oniguruma's line anchors know only '\n'; PCRE2's default newline is a build-time choice.
  pcre2_set_newline(context, PCRE2_NEWLINE_LF);
  int error = 0;
  PCRE2_SIZE offset = 0;
  // PCRE2_LITERAL refuses UCP and MULTILINE, which a literal does not need anyway.
  const uint32_t options =
      literal ? PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_LITERAL : kCompileOptions;
  re.code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.pattern_.data()), re.pattern_.size(),
                           options, &error, &offset, context);
  pcre2_compile_context_free(context);
  if (re.code_ == nullptr) {
    DSV4_FAIL("data", "%s: invalid regex /%.*s/ (as PCRE2 reads it: /%s/): %s at offset %zu",
              where.c_str(), static_cast<int>(pattern.size()), pattern.data(), re.pattern_.c_str(),
              pcre2_message(error).c_str(), static_cast<size_t>(offset));
  }
  // JIT is 3-10x faster on these patterns; without it (no JIT support in this libpcre2 build,
  // or no executable memory) the interpreter gives the same matches.
  re.jit_ = pcre2_jit_compile(re.code_, PCRE2_JIT_COMPLETE) == 0;
  return re;
}

Regex::Regex(Regex&& other) noexcept { *this = std::move(other); }

Regex& Regex::operator=(Regex&& other) noexcept {
  if (this != &other) {
    pcre2_code_free(code_);
    code_ = other.code_;
    jit_ = other.jit_;
    pattern_ = std::move(other.pattern_);
    where_ = std::move(other.where_);
    other.code_ = nullptr;
  }
  return *this;
}

Regex::~Regex() { pcre2_code_free(code_); }

int Regex::match(std::string_view text, size_t start, uint32_t options, RegexMatch* m) const {
  pcre2_match_data* md = thread_match_data();
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  // pcre2_jit_match skips the option checks and would silently ignore a match-time
  // PCRE2_ANCHORED (JIT code cannot honour it); pcre2_match runs the interpreter for it.
  const bool use_jit = jit_ && (options & PCRE2_ANCHORED) == 0;
  int rc = use_jit ? pcre2_jit_match(code_, subject, text.size(), start, options, md, nullptr)
                   : pcre2_match(code_, subject, text.size(), start, options, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
    // The JIT stack (32 KiB by default) ran out on a pathological piece; the interpreter keeps
    // its backtracking state on the heap and gives the same answer.
    rc = pcre2_match(code_, subject, text.size(), start, options | PCRE2_NO_JIT, md, nullptr);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return 0;
  // rc == 0 means "ovector too small for the capture groups": the whole match is still there.
  if (rc < 0) {
    DSV4_FAIL("data", "%s: regex /%s/ failed on a %zu-byte piece at offset %zu: %s", where_.c_str(),
              pattern_.c_str(), text.size(), start, pcre2_message(rc).c_str());
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  m->begin = static_cast<uint32_t>(ov[0]);
  m->end = static_cast<uint32_t>(ov[1]);
  return 1;
}

void Regex::find_all(std::string_view text, std::vector<RegexMatch>& out) const {
  DSV4_CHECK_IN("data", text.size() < UINT32_MAX, "%s: a %zu-byte piece is over the 4 GiB limit",
                where_.c_str(), text.size());
  size_t search_from = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (search_from <= text.size()) {
    RegexMatch m;
    if (match(text, search_from, 0, &m) == 0) break;
    if (m.begin == m.end && have_last && m.end == last_end) {
      // Oniguruma's iterator refuses an empty match where the previous one ended (no endless
      // loop) and retries one character further on.
      search_from += utf8_char_bytes(text, search_from);
      continue;
    }
    out.push_back(m);
    search_from = m.end;
    last_end = m.end;
    have_last = true;
  }
}

int64_t Regex::match_at(std::string_view text, size_t pos) const {
  RegexMatch m;
  if (match(text, pos, PCRE2_ANCHORED, &m) == 0) return -1;
  return static_cast<int64_t>(m.end) - static_cast<int64_t>(m.begin);
}

}  // namespace dsv4::data

// tokenizer_throughput.cpp: single-thread encode throughput of data::Tokenizer.
//
//   bench_tokenizer TOKENIZER_DIR [TEXT_FILE] [--passes N] [--doc-bytes B]
//
// Encodes TEXT_FILE (or, without one, ~4 MB of deterministic English-like text: Zipf-distributed
// words from a fixed pseudo-word list, sentences, numbers and paragraphs) as documents of about
// B bytes (default 8192, cut at line ends, as a calibration set is encoded document by document),
// N times on one thread. Pass 1 runs with cold caches; the figure printed last is the best of the
// later passes, when the per-thread word cache holds the text's vocabulary:
//
//   bench: tokenizer 9.52 MB in 0.239 s = 39.77 MB/s per core (11.53M tokens/s)
//
// Build Release (`cmake -S . -B build/rel -G Ninja -DCMAKE_BUILD_TYPE=Release`); figures and
// exact commands go to docs/PERFORMANCE.md.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/check.h"
#include "data/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Deterministic English-like text: 4000 pseudo-words built from syllables, drawn with Zipf
// weights (rank r has weight 1/r, like word frequencies in prose), so the word cache sees both
// a hot core vocabulary and a long tail of rarer words.
std::string english_like_text(size_t bytes) {
  static const char* kSyllables[] = {"the", "an",  "ing", "er", "re",  "on",  "at",   "en",
                                     "ed",  "ti",  "al",  "st", "or",  "ar",  "is",   "it",
                                     "ou",  "le",  "co",  "de", "pro", "con", "ment", "tion",
                                     "ver", "com", "per", "ex", "un",  "ly"};
  uint64_t state = 0x9E3779B97F4A7C15ULL;
  auto next = [&state] {  // xorshift64*: fixed sequence on every platform
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1DULL;
  };
  std::vector<std::string> words;
  for (int i = 0; i < 4000; ++i) {
    std::string w;
    const int n = 1 + static_cast<int>(next() % 3);
    for (int k = 0; k < n; ++k)
      w += kSyllables[next() % (sizeof(kSyllables) / sizeof(*kSyllables))];
    words.push_back(w);
  }
  std::vector<double> cumulative(words.size());
  double total = 0;
  for (size_t r = 0; r < words.size(); ++r)
    cumulative[r] = total += 1.0 / static_cast<double>(r + 1);
  std::string out;
  out.reserve(bytes + 256);
  bool sentence_start = true;
  while (out.size() < bytes) {
    const double u = static_cast<double>(next() % 1000000) / 1e6 * total;
    const size_t r = std::lower_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin();
    std::string w = words[std::min(r, words.size() - 1)];
    if (sentence_start) w[0] = static_cast<char>(w[0] - 'a' + 'A');
    if (next() % 40 == 0) w = std::to_string(next() % 100000);
    out += w;
    sentence_start = false;
    const uint64_t p = next() % 100;
    if (p < 6) {
      out += ". ";
      sentence_start = true;
      if (next() % 8 == 0) out += "\n\n";
    } else if (p < 10) {
      out += ", ";
    } else {
      out += ' ';
    }
  }
  return out;
}

// Documents of about doc_bytes, cut after a newline when there is one nearby.
std::vector<std::string_view> split_documents(std::string_view text, size_t doc_bytes) {
  std::vector<std::string_view> docs;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = std::min(text.size(), pos + doc_bytes);
    if (end < text.size()) {
      const size_t nl = text.find('\n', end);
      end = nl == std::string_view::npos ? text.size() : std::min(text.size(), nl + 1);
    }
    docs.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return docs;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> positional;
    int passes = 5;
    size_t doc_bytes = 8192;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--passes" && i + 1 < argc)
        passes = std::max(2, std::atoi(argv[++i]));
      else if (a == "--doc-bytes" && i + 1 < argc)
        doc_bytes = std::max(1L, std::atol(argv[++i]));
      else
        positional.push_back(a);
    }
    if (positional.empty() || positional.size() > 2) {
      std::fprintf(stderr, "usage: %s TOKENIZER_DIR [TEXT_FILE] [--passes N] [--doc-bytes B]\n",
                   argv[0]);
      return 2;
    }
    auto t0 = Clock::now();
    const dsv4::data::Tokenizer tok = dsv4::data::Tokenizer::load(positional[0]);
    std::printf("load: %s in %.2f s (vocab_size %d)\n", positional[0].c_str(), seconds_since(t0),
                tok.vocab_size());

    std::string text;
    if (positional.size() == 2) {
      std::ifstream in(positional[1], std::ios::binary);
      DSV4_CHECK(in.good(), "cannot open text file '%s'", positional[1].c_str());
      std::ostringstream ss;
      ss << in.rdbuf();
      text = ss.str();
      std::printf("text: %s, %zu bytes\n", positional[1].c_str(), text.size());
    } else {
      text = english_like_text(size_t{4} << 20);
      std::printf("text: generated English-like, %zu bytes\n", text.size());
    }
    const std::vector<std::string_view> docs = split_documents(text, doc_bytes);
    const double mb = static_cast<double>(text.size()) / 1e6;

    double best = 1e30;
    size_t tokens = 0;
    for (int pass = 0; pass < passes; ++pass) {
      t0 = Clock::now();
      size_t n = 0;
      for (const std::string_view d : docs) n += tok.encode(d).size();
      const double s = seconds_since(t0);
      tokens = n;
      std::printf("pass %d%s: %.3f s = %.2f MB/s, %zu tokens (%.2f bytes/token)\n", pass + 1,
                  pass == 0 ? " (cold caches)" : "", s, mb / s, n,
                  static_cast<double>(text.size()) / static_cast<double>(n));
      if (pass > 0) best = std::min(best, s);
    }
    std::printf("bench: tokenizer %.2f MB in %.3f s = %.2f MB/s per core (%.2fM tokens/s)\n", mb,
                best, mb / best, static_cast<double>(tokens) / best / 1e6);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
}

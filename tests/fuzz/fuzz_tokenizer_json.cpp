// fuzz_tokenizer_json.cpp: the bytes as tokenizer.json through Tokenizer::from_json; a tokenizer
// it accepts then encodes and decodes a short fixed text (special tokens, digits, non-ASCII), so
// the merges and pre-tokenizer regexes it accepted are exercised too.
// Seeds: tests/fuzz/corpus/tokenizer_json/ (the DeepSeek V3 tokenizer cut to a few hundred tokens).
#include <cstddef>
#include <cstdint>

#include "data/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv4;
  fuzz::expect_errors([&] {
    const data::Tokenizer tok = data::Tokenizer::from_json(fuzz::text(data, size), "tokenizer.json");
    const std::vector<int32_t> ids = tok.encode("Hello world 123, naïve 東京!\n<｜User｜>hi");
    (void)tok.decode(ids);
  });
  return 0;
}

// fuzz_calib_jsonl.cpp: the bytes as one line of a calibration JSONL file ("messages" or "text"
// records) through dataset_parse_jsonl_line, the parse dataset_index and dataset_record_read use.
// The first byte picks the reader options (chat-only, text-only, both), the rest is the line.
// Seeds: tests/fuzz/corpus/calib_jsonl/ (lines of the tiny preset's calib.jsonl and variants).
#include <cstddef>
#include <cstdint>

#include "data/dataset_reader.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv4;
  if (size == 0) return 0;
  data::ReadOptions options;
  options.accept_text = (data[0] & 1) == 0;
  options.accept_messages = (data[0] & 2) == 0;
  fuzz::expect_errors([&] {
    (void)data::dataset_parse_jsonl_line(fuzz::text(data + 1, size - 1), "calib.jsonl", 1, options);
  });
  return 0;
}

// fuzz_journal_line.cpp: the bytes as a run journal (OUT/.calib_run/journal.jsonl) through
// journal_parse, the reader a resume starts with: complete lines, a torn tail, depth guard.
// Seeds: tests/fuzz/corpus/journal_line/ (journals of a tiny run, one cut mid-line).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "calib/run_journal.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv4;
  fuzz::expect_errors([&] {
    const calib::JournalRead r = calib::journal_parse(fuzz::text(data, size), "journal.jsonl");
    // What journal_repair relies on: the valid prefix lies inside the file.
    if (r.valid_bytes > r.file_bytes || r.file_bytes != size) std::abort();
  });
  return 0;
}

// run_journal.h: reading the run journal (OUT/.calib_run/journal.jsonl, see run_checkpoint.h) up
// to its last complete record, and repairing a torn tail before anything is appended to it.
//
//   JournalRead j = journal_read(path);      // j.records: header, then one per committed segment
//   journal_repair(path, j);                 // rank 0, before the next append
//
// A record is complete when its line ends in '\n': append() writes the line and its newline in
// one write and fsyncs it, so a kill or a full disk mid-append leaves a fragment at the end
// without its newline. Appending after that fragment would glue the next record onto it, and
// every later resume would stop reading there and redo those segments; so the fragment is cut
// off first (with a log line). A complete line that does not parse (or nests too deep) was
// damaged after it was written: a user error naming the line, never a silent redo.
// Tests: tests/calib/test_run_journal.cpp, tests/e2e/cli_hostile_inputs.sh.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::calib {

struct JournalRead {
  std::vector<nlohmann::ordered_json> records;  // the complete records, in file order
  uint64_t valid_bytes = 0;                     // where the last complete record's line ends
  uint64_t file_bytes = 0;
};

// Throws a user error naming the line when a complete line is damaged.
JournalRead journal_read(const std::string& path);
// journal_read of text already in memory; `path` only names it in errors (the fuzz harness's entry).
JournalRead journal_parse(std::string_view text, const std::string& path);

// Truncates `path` to `read.valid_bytes` (fsync'd) when it holds more, logging how many bytes were
// dropped and how many records remain. Returns whether it truncated.
bool journal_repair(const std::string& path, const JournalRead& read);

}  // namespace dsv4::calib

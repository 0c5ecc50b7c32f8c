// dataset_reader.h: calibration records from JSONL and plain-text files, with the file and line
// each came from. A first pass (dataset_index) parses and validates every record, so a bad line
// is reported before any work starts, but keeps only where each record is; the records actually
// sampled are read again (dataset_record_read), so a 200k-conversation file costs no memory.
//
//   DatasetIndex idx = dataset_index({"ultrachat.jsonl"}, {});
//   RawRecord r = dataset_record_read(idx, 17);       // r.messages or r.text; r.line
//
// JSONL: one JSON object per line; blank lines are ignored. A record has either
//   "messages": [{"role": "system"|"user"|"assistant", "content": str|null,
//                 "reasoning_content": str (assistant, optional)}, ...]   (ultrachat style)
//   or "text": str. Other keys of the record (ultrachat's "prompt", "prompt_id") and of a
//   message are ignored. The reasoning may also be spelled "reasoning" or "thinking"; two
//   spellings in one message are an error. The conversation must follow chat_validate().
// Plain text (any other extension, or format kText): records are paragraphs (runs of non-blank
//   lines; the default), single non-blank lines, or the whole file (TextUnit). A record's text
//   is its exact bytes without the final line break.
// A malformed record throws an error naming file and line ("data.jsonl:17: ..."), or, with
// skip_malformed, is counted and left out (the first few are logged as warnings).
// Tests: tests/data/test_dataset.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/chat_encoding.h"

namespace dsv4::data {

enum class DatasetFormat { kAuto, kJsonl, kText };  // kAuto: .jsonl/.json -> JSONL, else text
enum class TextUnit { kParagraph, kLine, kFile };

struct ReadOptions {
  DatasetFormat format = DatasetFormat::kAuto;
  TextUnit text_unit = TextUnit::kParagraph;
  bool skip_malformed = false;
  bool accept_text = true;      // false: a "text" record is malformed (chat-only data)
  bool accept_messages = true;  // false: a "messages" record is malformed (chat mode off)
};

// A record before tokenization: exactly one of messages / text is used.
struct RawRecord {
  int32_t file = 0;  // index into DatasetIndex::files
  int64_t line = 0;  // 1-based line where the record starts
  bool is_chat = false;
  std::vector<ChatMessage> messages;
  std::string text;
};

// Where a record lives, for reading it again.
struct RecordRef {
  int32_t file = 0;
  int64_t line = 0;
  int64_t byte_offset = 0;
  int64_t num_bytes = 0;
};

struct DatasetFile {
  std::string path;
  DatasetFormat format = DatasetFormat::kJsonl;  // resolved, never kAuto
  int64_t num_bytes = 0;
  int64_t num_records = 0;
};

struct DatasetIndex {
  std::vector<DatasetFile> files;
  std::vector<RecordRef> records;  // file order, then line order
  ReadOptions options;
  int64_t malformed_skipped = 0;
};

DatasetIndex dataset_index(const std::vector<std::string>& paths, const ReadOptions& options);
RawRecord dataset_record_read(const DatasetIndex& index, int64_t record);
// One JSONL line to a record; `file`/`line` only name it in errors. Throws on a malformed line.
RawRecord dataset_parse_jsonl_line(std::string_view line, const std::string& file, int64_t line_no,
                                   const ReadOptions& options);

DatasetFormat dataset_format_resolve(const std::string& path, DatasetFormat format);
std::string_view dataset_format_name(DatasetFormat format);
std::string_view text_unit_name(TextUnit unit);

}  // namespace dsv4::data

// dataset_reader.cpp: JSONL and plain-text record indexing and reading (formats in
// dataset_reader.h).
#include "data/dataset_reader.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <utility>

#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "common/log.h"

namespace dsv4::data {
namespace {

constexpr int kMalformedWarnings = 5;  // how many skipped records are logged one by one

bool is_blank(std::string_view line) { return line.find_first_not_of(" \t\r\f\v") == std::string_view::npos; }

std::string_view strip_cr(std::string_view line) {
  return !line.empty() && line.back() == '\r' ? line.substr(0, line.size() - 1) : line;
}

// Offset of the first invalid UTF-8 byte, or npos. Text files are fed to the tokenizer, whose
// regexes run in PCRE2's UTF mode and would reject such bytes later, without a line number.
size_t utf8_invalid_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || (n == 2 && c < 0xC2) || i + n > s.size()) return i;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return i;
    }
    i += n;
  }
  return std::string_view::npos;
}

[[noreturn]] void fail_at(const std::string& file, int64_t line, const std::string& what) {
  DSV4_USER_FAIL("data", "%s:%lld: %s", file.c_str(), static_cast<long long>(line), what.c_str());
}

// Reads `path` line by line, calling `on_line(text, line_no, byte_offset)`; text excludes '\n'.
// The file must be a regular one: it is read twice (indexed here, then each sample by offset,
// read_bytes), which a pipe cannot be, and a FIFO would block the open until a writer came.
int64_t for_each_line(const std::string& path, const std::function<void(std::string_view, int64_t, int64_t)>& on_line) {
  regular_file_require(path, "dataset.files, or --dataset / --data",
                       "a dataset is read twice, indexed and then sampled by offset; write a stream to a file first");
  std::ifstream in(path, std::ios::binary);
  DSV4_USER_CHECK("data", in.good(), "cannot open dataset file '%s' (dataset.files, or --dataset / --data)",
                  path.c_str());
  std::string line;
  int64_t line_no = 0, offset = 0;
  while (std::getline(in, line)) {
    ++line_no;
    on_line(line, line_no, offset);
    offset += static_cast<int64_t>(line.size()) + (in.eof() ? 0 : 1);
  }
  DSV4_CHECK_IN("data", in.eof(), "read error in dataset file '%s' after line %lld", path.c_str(),
                static_cast<long long>(line_no));
  return offset;
}

std::string message_text(const nlohmann::json& m, const char* key, size_t index) {
  const auto it = m.find(key);
  if (it == m.end() || it->is_null()) return {};
  if (!it->is_string()) {
    DSV4_FAIL("data", "messages[%zu].%s is %s, expected a string", index, key, it->type_name());
  }
  return it->get<std::string>();
}

ChatMessage parse_message(const nlohmann::json& m, size_t index) {
  DSV4_CHECK_IN("data", m.is_object(), "messages[%zu] is %s, expected an object with role and content", index,
                m.type_name());
  const auto role_it = m.find("role");
  DSV4_CHECK_IN("data", role_it != m.end() && role_it->is_string(), "messages[%zu] has no string \"role\"", index);
  const std::string role_name = role_it->get<std::string>();
  const std::optional<ChatRole> role = chat_role_parse(role_name);
  DSV4_CHECK_IN("data", role.has_value(), "messages[%zu].role = '%s', expected system, user or assistant", index,
                role_name.c_str());
  DSV4_CHECK_IN("data", m.contains("content"), "messages[%zu] has no \"content\"", index);
  ChatMessage out{*role, message_text(m, "content", index), {}};
  const char* reasoning_key = nullptr;
  for (const char* key : {"reasoning_content", "reasoning", "thinking"}) {
    if (!m.contains(key)) continue;
    DSV4_CHECK_IN("data", reasoning_key == nullptr, "messages[%zu] has both \"%s\" and \"%s\", expected one", index,
                  reasoning_key, key);
    reasoning_key = key;
    out.reasoning = message_text(m, key, index);
  }
  DSV4_CHECK_IN("data", out.reasoning.empty() || *role == ChatRole::kAssistant,
                "messages[%zu] is a %s message with \"%s\"; only assistant messages carry reasoning", index,
                role_name.c_str(), reasoning_key);
  return out;
}

RawRecord parse_jsonl_record(std::string_view line, const ReadOptions& options) {
  nlohmann::json j;
  try {
    j = json_parse(line, "the record");
  } catch (const nlohmann::json::parse_error& e) {
    DSV4_FAIL("data", "invalid JSON: %s", e.what());
  }
  DSV4_CHECK_IN("data", j.is_object(), "the line is a JSON %s, expected an object with \"messages\" or \"text\"",
                j.type_name());
  const bool has_messages = j.contains("messages"), has_text = j.contains("text");
  DSV4_CHECK_IN("data", has_messages != has_text, "the record has %s, expected exactly one of \"messages\" and \"text\"",
                has_messages ? "both \"messages\" and \"text\"" : "neither \"messages\" nor \"text\"");
  RawRecord r;
  if (has_text) {
    DSV4_CHECK_IN("data", options.accept_text, "a \"text\" record, but this dataset takes chat records (\"messages\") only");
    DSV4_CHECK_IN("data", j["text"].is_string(), "\"text\" is %s, expected a string", j["text"].type_name());
    r.text = j["text"].get<std::string>();
    return r;
  }
  DSV4_CHECK_IN("data", options.accept_messages,
                "a \"messages\" record, but chat encoding is off (enable a chat mode: chat or thinking)");
  const nlohmann::json& ms = j["messages"];
  DSV4_CHECK_IN("data", ms.is_array() && !ms.empty(), "\"messages\" is %s, expected a non-empty array",
                ms.is_array() ? "an empty array" : ms.type_name());
  r.is_chat = true;
  for (size_t i = 0; i < ms.size(); ++i) r.messages.push_back(parse_message(ms[i], i));
  chat_validate(r.messages);
  return r;
}

// Text records of one file, in order: `on_record(ref, text)` gets each record's location and its
// bytes (without the final line break and a CR before it). Returns the file size in bytes.
int64_t index_text_file(const std::string& path, int32_t file, TextUnit unit,
                        const std::function<void(const RecordRef&, std::string_view)>& on_record) {
  RecordRef open{file, 0, 0, 0};
  std::string text;  // the open record's bytes so far, including its inner line breaks
  bool in_record = false;
  auto close = [&]() {
    if (in_record) on_record(open, std::string_view(text).substr(0, static_cast<size_t>(open.num_bytes)));
    in_record = false;
  };
  const int64_t bytes = for_each_line(path, [&](std::string_view line, int64_t line_no, int64_t offset) {
    if (is_blank(line)) {
      if (unit != TextUnit::kFile) close();
      if (in_record) text.append(line).push_back('\n');
      return;
    }
    if (!in_record || unit == TextUnit::kLine) {
      close();
      open = {file, line_no, offset, 0};
      text.clear();
      in_record = true;
    }
    // The record ends where this line's text ends (its line break and a CR before it excluded).
    open.num_bytes = offset + static_cast<int64_t>(strip_cr(line).size()) - open.byte_offset;
    text.append(line).push_back('\n');
  });
  close();
  return bytes;
}

std::string read_bytes(const std::string& path, int64_t offset, int64_t bytes) {
  std::ifstream in(path, std::ios::binary);
  DSV4_CHECK_IN("data", in.good(), "cannot open dataset file '%s'", path.c_str());
  std::string s(static_cast<size_t>(bytes), '\0');
  in.seekg(offset);
  in.read(s.data(), bytes);
  DSV4_CHECK_IN("data", in.gcount() == bytes, "dataset file '%s' changed while in use: %lld bytes at offset %lld unreadable",
                path.c_str(), static_cast<long long>(bytes), static_cast<long long>(offset));
  return s;
}

}  // namespace

DatasetFormat dataset_format_resolve(const std::string& path, DatasetFormat format) {
  if (format != DatasetFormat::kAuto) return format;
  const bool jsonl = path.ends_with(".jsonl") || path.ends_with(".json");
  return jsonl ? DatasetFormat::kJsonl : DatasetFormat::kText;
}

std::string_view dataset_format_name(DatasetFormat format) {
  switch (format) {
    case DatasetFormat::kAuto: return "auto";
    case DatasetFormat::kJsonl: return "jsonl";
    case DatasetFormat::kText: return "text";
  }
  return "?";
}

std::string_view text_unit_name(TextUnit unit) {
  switch (unit) {
    case TextUnit::kParagraph: return "paragraph";
    case TextUnit::kLine: return "line";
    case TextUnit::kFile: return "file";
  }
  return "?";
}

RawRecord dataset_parse_jsonl_line(std::string_view line, const std::string& file, int64_t line_no,
                                   const ReadOptions& options) {
  try {
    RawRecord r = parse_jsonl_record(line, options);
    r.line = line_no;
    return r;
  } catch (const Error& e) {
    fail_at(file, line_no, e.message());
  }
}

DatasetIndex dataset_index(const std::vector<std::string>& paths, const ReadOptions& options) {
  DSV4_CHECK_IN("data", !paths.empty(), "no dataset files given");
  DatasetIndex idx;
  idx.options = options;
  for (const std::string& path : paths) {
    const int32_t file = static_cast<int32_t>(idx.files.size());
    DatasetFile f{path, dataset_format_resolve(path, options.format), 0, 0};
    const size_t first = idx.records.size();
    if (f.format == DatasetFormat::kText) {
      DSV4_CHECK_IN("data", options.accept_text, "'%s' is a plain-text file, but this dataset takes chat records only",
                    path.c_str());
      f.num_bytes = index_text_file(path, file, options.text_unit, [&](const RecordRef& ref, std::string_view text) {
        const size_t bad = utf8_invalid_at(text);
        if (bad == std::string_view::npos) {
          idx.records.push_back(ref);
          return;
        }
        const std::string what = strfmt("%s:%lld: invalid UTF-8 at byte %zu of the record", path.c_str(),
                                        static_cast<long long>(ref.line), bad);
        DSV4_CHECK_IN("data", options.skip_malformed, "%s", what.c_str());
        if (idx.malformed_skipped++ < kMalformedWarnings) log_warn("skipping malformed record: %s", what.c_str());
      });
    } else {
      f.num_bytes = for_each_line(path, [&](std::string_view line, int64_t line_no, int64_t offset) {
        if (is_blank(line)) return;
        try {
          dataset_parse_jsonl_line(line, path, line_no, options);
          idx.records.push_back({file, line_no, offset, static_cast<int64_t>(line.size())});
        } catch (const Error& e) {
          if (!options.skip_malformed) throw;
          if (idx.malformed_skipped++ < kMalformedWarnings) log_warn("skipping malformed record: %s", e.message().c_str());
        }
      });
    }
    f.num_records = static_cast<int64_t>(idx.records.size() - first);
    idx.files.push_back(std::move(f));
  }
  if (idx.malformed_skipped > kMalformedWarnings) {
    log_warn("skipped %lld malformed records in total", static_cast<long long>(idx.malformed_skipped));
  }
  return idx;
}

RawRecord dataset_record_read(const DatasetIndex& index, int64_t record) {
  DSV4_CHECK_IN("data", record >= 0 && record < static_cast<int64_t>(index.records.size()),
                "record %lld, expected 0 <= record < %zu", static_cast<long long>(record), index.records.size());
  const RecordRef& ref = index.records[static_cast<size_t>(record)];
  const DatasetFile& f = index.files[static_cast<size_t>(ref.file)];
  std::string bytes = read_bytes(f.path, ref.byte_offset, ref.num_bytes);
  RawRecord r;
  if (f.format == DatasetFormat::kJsonl) {
    r = dataset_parse_jsonl_line(bytes, f.path, ref.line, index.options);
  } else {
    r.text = std::move(bytes);
    r.line = ref.line;
  }
  r.file = ref.file;
  return r;
}

}  // namespace dsv4::data

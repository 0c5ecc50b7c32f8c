// test_dataset.cpp: the dataset readers (data/dataset_reader.h): JSONL chat and text records,
// plain-text units, line numbers in errors, skipping malformed records; and calib_data_build end
// to end on the tiny tokenizer (data/calib_data.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/check.h"
#include "data/calib_data.h"
#include "data/dataset_reader.h"
#include "data/tokenizer.h"
#include "tests/data/data_test_util.h"

namespace dsv4::data {
namespace {

using testing::TempDir;

// Expects `body` to throw a dsv4::Error whose text contains every string of `parts`.
template <typename F>
void expect_error(F body, const std::vector<std::string>& parts) {
  try {
    body();
    ADD_FAILURE() << "expected an error containing '" << parts.front() << "'";
  } catch (const Error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

const char* kChatJsonl =
    R"({"prompt": "ignored", "prompt_id": "x", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!", "reasoning_content": "greet"}]})"
    "\n"
    "\n"  // blank lines are not records but still count as lines
    R"({"text": "plain text record"})"
    "\r\n"
    R"({"messages": [{"role": "system", "content": null}, {"role": "user", "content": "Q", "extra": 1}, {"role": "assistant", "content": "A", "thinking": "t"}]})";

TEST(DatasetReader, JsonlRecordsWithLineNumbers) {
  TempDir dir("dsv4_test_dataset_jsonl");
  const std::string path = dir.file("a.jsonl", kChatJsonl);
  const DatasetIndex idx = dataset_index({path}, {});
  ASSERT_EQ(idx.records.size(), 3u);
  ASSERT_EQ(idx.files.size(), 1u);
  EXPECT_EQ(idx.files[0].format, DatasetFormat::kJsonl);
  EXPECT_EQ(idx.files[0].num_records, 3);
  EXPECT_EQ(idx.files[0].num_bytes, static_cast<int64_t>(std::string(kChatJsonl).size()));

  const RawRecord r0 = dataset_record_read(idx, 0);
  EXPECT_EQ(r0.line, 1);
  ASSERT_TRUE(r0.is_chat);
  ASSERT_EQ(r0.messages.size(), 2u);
  EXPECT_EQ(r0.messages[0].role, ChatRole::kUser);
  EXPECT_EQ(r0.messages[0].content, "Hi");
  EXPECT_EQ(r0.messages[1].reasoning, "greet");

  const RawRecord r1 = dataset_record_read(idx, 1);
  EXPECT_EQ(r1.line, 3);
  EXPECT_FALSE(r1.is_chat);
  EXPECT_EQ(r1.text, "plain text record");

  const RawRecord r2 = dataset_record_read(idx, 2);
  EXPECT_EQ(r2.line, 4);
  ASSERT_EQ(r2.messages.size(), 3u);
  EXPECT_EQ(r2.messages[0].role, ChatRole::kSystem);
  EXPECT_EQ(r2.messages[0].content, "");  // null content is empty
  EXPECT_EQ(r2.messages[2].reasoning, "t");  // "thinking" spelling
}

TEST(DatasetReader, MalformedLinesNameFileAndLine) {
  TempDir dir("dsv4_test_dataset_bad");
  struct Case {
    const char* line;
    const char* what;
  };
  const std::vector<Case> cases = {
      {R"({"text": "ok"} trailing)", "invalid JSON"},
      {R"(["not", "an", "object"])", "expected an object"},
      {R"({"txt": "typo"})", "neither \"messages\" nor \"text\""},
      {R"({"text": "a", "messages": []})", "both \"messages\" and \"text\""},
      {R"({"text": 5})", "\"text\" is number, expected a string"},
      {R"({"messages": []})", "expected a non-empty array"},
      {R"({"messages": [{"role": "tool", "content": "x"}]})", "messages[0].role = 'tool'"},
      {R"({"messages": [{"role": "user"}]})", "messages[0] has no \"content\""},
      {R"({"messages": [{"role": "user", "content": ["part"]}]})", "messages[0].content is array"},
      {R"({"messages": [{"role": "assistant", "content": "first"}]})", "does not follow a user message"},
      {R"({"messages": [{"role": "user", "content": "q", "reasoning_content": "r"}]})", "only assistant messages"},
      {R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning": "r", "thinking": "t"}]})",
       "has both \"reasoning\" and \"thinking\""},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = dir.file("bad" + std::to_string(i) + ".jsonl",
                                      std::string(R"({"text": "good line"})") + "\n" + cases[i].line + "\n");
    expect_error([&] { dataset_index({path}, {}); }, {path + ":2:", cases[i].what});
  }
}

TEST(DatasetReader, SkipMalformedCountsAndKeepsTheRest) {
  TempDir dir("dsv4_test_dataset_skip");
  const std::string path = dir.file("mixed.jsonl", "{\"text\": \"one\"}\nnot json\n{\"text\": \"three\"}\n{\"x\": 1}\n");
  expect_error([&] { dataset_index({path}, {}); }, {path + ":2:", "invalid JSON"});
  ReadOptions o;
  o.skip_malformed = true;
  const DatasetIndex idx = dataset_index({path}, o);
  EXPECT_EQ(idx.malformed_skipped, 2);
  ASSERT_EQ(idx.records.size(), 2u);
  EXPECT_EQ(dataset_record_read(idx, 1).text, "three");
  EXPECT_EQ(dataset_record_read(idx, 1).line, 3);
}

TEST(DatasetReader, RecordKindsCanBeRefused) {
  TempDir dir("dsv4_test_dataset_kinds");
  const std::string path = dir.file("a.jsonl", kChatJsonl);
  expect_error([&] { dataset_index({path}, {.accept_messages = false}); }, {path + ":1:", "chat encoding is off"});
  expect_error([&] { dataset_index({path}, {.accept_text = false}); }, {path + ":3:", "chat records (\"messages\") only"});
}

TEST(DatasetReader, PlainTextUnits) {
  TempDir dir("dsv4_test_dataset_text");
  const std::string text = "first para line 1\r\nfirst para line 2\n\n  \nsecond para\n\n\nthird\n";
  const std::string path = dir.file("corpus.txt", text);

  const DatasetIndex para = dataset_index({path}, {});
  EXPECT_EQ(para.files[0].format, DatasetFormat::kText);
  ASSERT_EQ(para.records.size(), 3u);
  EXPECT_EQ(dataset_record_read(para, 0).text, "first para line 1\r\nfirst para line 2");
  EXPECT_EQ(dataset_record_read(para, 0).line, 1);
  EXPECT_EQ(dataset_record_read(para, 1).text, "second para");
  EXPECT_EQ(dataset_record_read(para, 1).line, 5);
  EXPECT_EQ(dataset_record_read(para, 2).line, 8);

  const DatasetIndex lines = dataset_index({path}, {.text_unit = TextUnit::kLine});
  ASSERT_EQ(lines.records.size(), 4u);
  EXPECT_EQ(dataset_record_read(lines, 0).text, "first para line 1");  // CR of CRLF dropped
  EXPECT_EQ(dataset_record_read(lines, 1).text, "first para line 2");
  EXPECT_EQ(dataset_record_read(lines, 1).line, 2);

  const DatasetIndex whole = dataset_index({path}, {.text_unit = TextUnit::kFile});
  ASSERT_EQ(whole.records.size(), 1u);
  EXPECT_EQ(dataset_record_read(whole, 0).text, text.substr(0, text.size() - 1));

  // Format override: a .jsonl-named file read as text, and several files in order.
  const std::string j = dir.file("x.jsonl", "{\"text\": 1}\n");
  const DatasetIndex two = dataset_index({j, path}, {.format = DatasetFormat::kText});
  ASSERT_EQ(two.records.size(), 4u);
  EXPECT_EQ(dataset_record_read(two, 0).text, "{\"text\": 1}");
  EXPECT_EQ(dataset_record_read(two, 1).file, 1);
}

TEST(DatasetReader, InvalidUtf8InTextIsMalformed) {
  TempDir dir("dsv4_test_dataset_utf8");
  const std::string path = dir.file("bad.txt", "good\n\nbad \xff byte\n\nfine\n");
  expect_error([&] { dataset_index({path}, {}); }, {path + ":3:", "invalid UTF-8 at byte 4"});
  const DatasetIndex idx = dataset_index({path}, {.skip_malformed = true});
  EXPECT_EQ(idx.malformed_skipped, 1);
  EXPECT_EQ(idx.records.size(), 2u);
  expect_error([&] { dataset_index({dir.path() + "/missing.jsonl"}, {}); }, {"cannot open dataset file"});
}

// ---- calib_data_build on the tiny tokenizer -------------------------------------------------

std::string many_chats(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += R"({"messages": [{"role": "user", "content": "question )" + std::to_string(i) +
           R"( about the weather"}, {"role": "assistant", "content": "answer )" + std::to_string(i) +
           R"( is that it rains and then the sun is out"}]})" + "\n";
  }
  return out;
}

TEST(CalibData, BuildIsDeterministicAndRecordsProvenance) {
  const Tokenizer tok = Tokenizer::from_json(testing::tiny_tokenizer_json(), "tiny tokenizer");
  TempDir dir("dsv4_test_calib_data");
  DatasetOptions o;
  o.files = {dir.file("chats.jsonl", many_chats(40)), dir.file("notes.txt", "a short note\n\nanother note\n")};
  o.num_samples = 12;
  o.seq_len = 24;
  o.min_len = 4;
  o.seed = 5;
  const CalibData a = calib_data_build(tok, o);
  const CalibData b = calib_data_build(tok, o);
  ASSERT_EQ(a.samples.size(), 12u);
  EXPECT_EQ(a.num_records, 42);
  EXPECT_EQ(calib_data_hash(a), calib_data_hash(b));
  for (size_t i = 0; i < a.samples.size(); ++i) {
    const CalibSample& s = a.samples[i];
    ASSERT_EQ(s.sources.size(), 1u);
    EXPECT_LE(s.ids.size(), 24u);
    EXPECT_EQ(s.ids[0], testing::kTinyBos) << "every sample starts with BOS (chat and text records)";
    // The source points at the record that encodes to these ids.
    const DatasetIndex idx = dataset_index(o.files, o.reading());
    const RawRecord r = dataset_record_read(idx, s.sources[0].record);
    EXPECT_EQ(r.line, s.sources[0].line);
    std::vector<int32_t> full = calib_record_encode(tok, r, o);
    full.resize(s.ids.size());
    EXPECT_EQ(s.ids, full) << "sample " << i;
  }
  o.seed = 6;
  EXPECT_NE(calib_data_hash(calib_data_build(tok, o)), calib_data_hash(a));

  const nlohmann::ordered_json m = calib_data_manifest(a);
  EXPECT_EQ(m["num_samples"], 12);
  EXPECT_EQ(m["options"]["chat"], "chat");
  EXPECT_EQ(m["files"][1]["records"], 2);
  EXPECT_EQ(m["samples"].size(), 12u);
}

TEST(CalibData, PackingAndChatOff) {
  const Tokenizer tok = Tokenizer::from_json(testing::tiny_tokenizer_json(), "tiny tokenizer");
  TempDir dir("dsv4_test_calib_pack");
  DatasetOptions o;
  o.files = {dir.file("chats.jsonl", many_chats(30))};
  o.num_samples = 5;
  o.seq_len = 64;
  o.packing = true;
  const CalibData d = calib_data_build(tok, o);
  ASSERT_EQ(d.samples.size(), 5u);
  for (const CalibSample& s : d.samples) {
    EXPECT_EQ(s.ids.size(), 64u);
    int64_t n = 0;
    for (const CalibSource& c : s.sources) n += c.num_tokens;
    EXPECT_EQ(n, 64);
  }
  o.chat.reset();
  expect_error([&] { calib_data_build(tok, o); }, {":1:", "chat encoding is off"});
  o.files = {dir.path() + "/none.jsonl"};
  expect_error([&] { calib_data_build(tok, o); }, {"cannot open dataset file"});
  o.files.clear();
  expect_error([&] { calib_data_build(tok, o); }, {"dataset.files is empty"});
}

}  // namespace
}  // namespace dsv4::data

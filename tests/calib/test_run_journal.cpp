// test_run_journal.cpp: reading the run journal and repairing a torn tail (calib/run_journal.h).
// The property that matters: after an append cut short (a kill, a full disk), the next append
// starts on a fresh line, so every later resume reads every record; a line damaged after it was
// written is a user error naming it, never a silent redo.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "calib/run_journal.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "tests/scratch_dir.h"

namespace dsv4::calib {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

const std::string kHeader = R"({"kind":"header","version":1})" "\n";
const std::string kSeg0 = R"({"kind":"segment","segment":0,"report":{"layer":"embed"}})" "\n";
const std::string kSeg1 = R"({"kind":"segment","segment":1,"report":{"layer":"layers.0"}})" "\n";

std::string journal_with(const std::string& name, const std::string& text) {
  const std::string path = dsv4::testing::scratch_path(name);
  write_file_atomic(path, text);
  return path;
}

std::string read_error_of(const std::string& path) {
  try {
    journal_read(path);
  } catch (const Error& e) {
    EXPECT_TRUE(e.user()) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected journal_read to throw for " << path;
  return "";
}

TEST(RunJournal, CompleteJournalNeedsNoRepair) {
  const std::string path = journal_with("complete.jsonl", kHeader + kSeg0 + kSeg1);
  const JournalRead r = journal_read(path);
  EXPECT_EQ(r.records.size(), 3u);
  EXPECT_EQ(r.valid_bytes, r.file_bytes);
  EXPECT_FALSE(journal_repair(path, r));
  EXPECT_EQ(read_file(path), kHeader + kSeg0 + kSeg1);
}

TEST(RunJournal, TornTailIsCutOffBeforeTheNextAppend) {
  // A disk that filled mid-append: the fragment of segment 1 has no newline.
  const std::string fragment = kSeg1.substr(0, 25);
  const std::string path = journal_with("torn.jsonl", kHeader + kSeg0 + fragment);
  const JournalRead r = journal_read(path);
  ASSERT_EQ(r.records.size(), 2u) << "the fragment is not a record";
  EXPECT_EQ(r.records[1]["segment"], 0);
  EXPECT_EQ(r.valid_bytes, kHeader.size() + kSeg0.size());
  EXPECT_EQ(r.file_bytes, r.valid_bytes + fragment.size());
  EXPECT_TRUE(journal_repair(path, r));
  EXPECT_EQ(read_file(path), kHeader + kSeg0);
  // The next append now starts a line of its own, and the whole journal reads.
  write_file_atomic(path, read_file(path) + kSeg1);
  EXPECT_EQ(journal_read(path).records.size(), 3u);
}

TEST(RunJournal, WholeRecordWithoutNewlineIsTorn) {
  // Cut just before the newline: the JSON is whole, but the append never finished.
  const std::string path = journal_with("no_newline.jsonl", kHeader + kSeg0 + kSeg1.substr(0, kSeg1.size() - 1));
  const JournalRead r = journal_read(path);
  EXPECT_EQ(r.records.size(), 2u);
  EXPECT_TRUE(journal_repair(path, r));
  EXPECT_EQ(read_file(path), kHeader + kSeg0);
}

TEST(RunJournal, DamagedLineIsAUserErrorNamingIt) {
  // What the old append produced after a torn line: the fragment glued to the next record.
  const std::string glued = kSeg1.substr(0, 25) + kSeg1;
  const std::string path = journal_with("damaged.jsonl", kHeader + kSeg0 + glued);
  EXPECT_THAT(read_error_of(path), AllOf(HasSubstr(path + " line 3 is damaged"), HasSubstr("parse error"),
                                         HasSubstr("pass --restart")));
}

TEST(RunJournal, DeepLineIsRefusedNotACrash) {
  const std::string deep = R"({"kind":"segment","report":)" + std::string(200000, '[') + std::string(200000, ']') + "}\n";
  const std::string path = journal_with("deep.jsonl", kHeader + deep);
  EXPECT_THAT(read_error_of(path), AllOf(HasSubstr(path + " line 2"), HasSubstr("more than 64 levels")));
}

TEST(RunJournal, ParseOfTextIsTheReadOfTheFile) {
  // journal_parse is journal_read without the file (the fuzz harness's entry): same records, same
  // valid prefix, and its errors name the path it is given.
  const std::string text = kHeader + kSeg0 + kSeg1.substr(0, 25);
  const JournalRead from_file = journal_read(journal_with("parse.jsonl", text));
  const JournalRead from_text = journal_parse(text, "mem.jsonl");
  ASSERT_EQ(from_text.records.size(), 2u);
  EXPECT_EQ(from_text.records, from_file.records);
  EXPECT_EQ(from_text.valid_bytes, from_file.valid_bytes);
  EXPECT_EQ(from_text.file_bytes, text.size());
  try {
    journal_parse(kHeader + "{oops\n", "mem.jsonl");
    ADD_FAILURE() << "a damaged complete line must throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("mem.jsonl line 2 is damaged"));
  }
}

}  // namespace
}  // namespace dsv4::calib

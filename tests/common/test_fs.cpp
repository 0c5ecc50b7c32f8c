// test_fs.cpp: AtomicFile (commit, abandonment, replacement) and the read/mkdir/fsync helpers.
// The property that matters: at no point is a torn file visible under the final name, and an
// abandoned write never costs the previous valid file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/fs.h"
#include "tests/fifo_guard.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

class FsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "dsv4_fs_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  // Every entry of the temp dir, so a leftover "<path>.tmp.<pid>" shows up in failures.
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string dir_;
};

using AtomicFileTest = FsTest;

TEST_F(AtomicFileTest, CommitWritesContentAndLeavesNoTemp) {
  const std::string p = path("out.bin");
  {
    AtomicFile f(p);
    f.write("hello ", 6);
    f.write("world", 5);
    EXPECT_EQ(f.bytes_written(), 11u);
    EXPECT_EQ(f.path(), p);
    EXPECT_FALSE(fs::exists(p)) << "the final name must not appear before commit()";
    f.commit();
  }
  EXPECT_EQ(read_file(p), "hello world");
  EXPECT_EQ(entries(), std::vector<std::string>{"out.bin"});
}

TEST_F(AtomicFileTest, TempNameIsPathDotTmpDotPid) {
  const std::string p = path("x.json");
  AtomicFile f(p);
  EXPECT_TRUE(fs::exists(p + ".tmp." + std::to_string(::getpid())));
}

TEST_F(AtomicFileTest, DestroyedWithoutCommitLeavesNothing) {
  {
    AtomicFile f(path("out.bin"));
    f.write("partial", 7);
  }
  EXPECT_TRUE(entries().empty()) << "leftover: " << ::testing::PrintToString(entries());
}

TEST_F(AtomicFileTest, DestroyedWithoutCommitKeepsExistingFile) {
  const std::string p = path("config.json");
  write_file_atomic(p, "old and valid");
  {
    AtomicFile f(p);
    f.write("new but torn", 12);
  }
  EXPECT_EQ(read_file(p), "old and valid");
  EXPECT_EQ(entries(), std::vector<std::string>{"config.json"});
}

TEST_F(AtomicFileTest, CommitReplacesExistingFile) {
  const std::string p = path("config.json");
  write_file_atomic(p, "a much longer old content");
  write_file_atomic(p, "new");
  EXPECT_EQ(read_file(p), "new");
  EXPECT_EQ(entries(), std::vector<std::string>{"config.json"});
}

TEST_F(AtomicFileTest, LargeWriteIsComplete) {
  // 3 MiB in one call plus odd-sized chunks: the write loop must account for every byte.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) >> 3);
  const std::string p = path("big.bin");
  AtomicFile f(p);
  f.write(big.data(), big.size());
  for (size_t off = 0; off < 1000; off += 7) f.write(big.data() + off, 7);
  f.commit();
  const std::string back = read_file(p);
  ASSERT_EQ(back.size(), big.size() + 1001) << "bytes_written " << f.bytes_written();
  EXPECT_EQ(f.bytes_written(), back.size());
  EXPECT_EQ(back.substr(0, big.size()), big);
  EXPECT_EQ(back.substr(big.size(), 7), big.substr(0, 7));
}

TEST_F(AtomicFileTest, ZeroByteFileCommits) {
  const std::string p = path("empty");
  write_file_atomic(p, "");
  EXPECT_TRUE(fs::exists(p));
  EXPECT_EQ(read_file(p), "");
}

TEST_F(AtomicFileTest, WriteAfterCommitThrows) {
  const std::string p = path("once");
  AtomicFile f(p);
  f.commit();
  try {
    f.write("x", 1);
    FAIL() << "write after commit must throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(p));
    EXPECT_THAT(e.what(), HasSubstr("after commit"));
  }
  EXPECT_THROW(f.commit(), Error);
}

TEST_F(AtomicFileTest, MissingDirectoryThrowsNamingPath) {
  const std::string p = path("no/such/dir/file.bin");
  try {
    AtomicFile f(p);
    FAIL() << "opening inside a missing directory must throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(p));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
  }
}

using FsHelpers = FsTest;

TEST_F(FsHelpers, ReadFileRoundTripsBinary) {
  const std::string content("a\0b\xff\n", 5);
  write_file_atomic(path("bin"), content);
  EXPECT_EQ(read_file(path("bin")), content);
}

TEST_F(FsHelpers, ReadFileMissingThrowsNamingPath) {
  const std::string p = path("missing.json");
  try {
    read_file(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(p));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
  }
}

TEST_F(FsHelpers, ReadFileOfDirectoryThrows) {
  try {
    read_file(dir_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir_));
    EXPECT_THAT(e.what(), HasSubstr("directory"));
  }
}

// A FIFO (say a config.json replaced by one) is refused at once, naming it; reading it would wait
// for a writer forever.
TEST_F(FsHelpers, ReadFileOfFifoIsRefusedWithoutBlocking) {
  dsv4::testing::FifoGuard fifo(path("config.json"));
  try {
    read_file(fifo.path());
    ADD_FAILURE() << "read_file of a FIFO returned";
  } catch (const Error& e) {
    EXPECT_TRUE(e.user()) << e.what();
    EXPECT_THAT(e.what(), AllOf(HasSubstr(fifo.path()), HasSubstr("not a regular file")));
  }
  EXPECT_LT(fifo.elapsed(), std::chrono::seconds(2)) << "read_file blocked on the FIFO";
}

TEST_F(FsHelpers, MakeDirectoriesIsRecursiveAndIdempotent) {
  const std::string p = path("a/b/c");
  make_directories(p);
  EXPECT_TRUE(fs::is_directory(p));
  make_directories(p);  // existing: fine
  write_file_atomic(p + "/f", "x");
  EXPECT_EQ(read_file(p + "/f"), "x");
}

TEST_F(FsHelpers, MakeDirectoriesOverFileThrows) {
  const std::string p = path("plain");
  write_file_atomic(p, "x");
  try {
    make_directories(p);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(p));
  }
  try {
    make_directories(p + "/sub");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(p + "/sub"));
  }
}

TEST_F(FsHelpers, FsyncDirectory) {
  fsync_directory(dir_);
  try {
    fsync_directory(path("nope"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path("nope")));
  }
}

TEST_F(FsHelpers, BareFileNameCommitsInWorkingDirectory) {
  // A path without '/' must fsync "." rather than fail on an empty parent.
  struct Restore {
    fs::path old = fs::current_path();
    ~Restore() { fs::current_path(old); }
  } restore;
  fs::current_path(dir_);
  write_file_atomic("bare.txt", "ok");
  EXPECT_EQ(read_file(path("bare.txt")), "ok");
}

}  // namespace
}  // namespace dsv4

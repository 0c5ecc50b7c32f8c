// fs.h: crash-safe file output. Everything the tool writes goes through AtomicFile, so a kill
// at any instant leaves either the old file or the complete new one, never a torn file:
// write to "<path>.tmp.<pid>", fsync, rename over <path>, fsync the directory.
//
//   AtomicFile f("out/config.json");
//   f.write(text.data(), text.size());
//   f.commit();            // without commit(), the destructor removes the temporary
//
//   write_file_atomic("out/recipe.yaml", yaml_text);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv4 {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  uint64_t bytes_written() const { return bytes_written_; }
  const std::string& path() const { return path_; }
  void commit();  // fsync, rename to path(), fsync the parent directory

 private:
  std::string path_;
  std::string temp_path_;
  static constexpr uint64_t kWritebackChunk = 64ull << 20;
  int fd_ = -1;
  uint64_t bytes_written_ = 0;
  uint64_t writeback_started_ = 0;  // bytes whose writeback write() has started
};

void write_file_atomic(const std::string& path, std::string_view content);
std::string read_file(const std::string& path);  // throws naming the path; refuses what is not a regular file
// A user error when `path` exists but is not a regular file (a FIFO, socket or device, which a
// stream reader would block on or read only once), naming it, `what` it is (e.g. "--jsonl") and,
// when given, `why` it must be a file; for the readers that open a path themselves. stat() never
// blocks; a missing path passes (the caller's open names it).
void regular_file_require(const std::string& path, const std::string& what, const std::string& why = "");
// `path` opened read-only for a reader that expects `expected` there (e.g. "a safetensors file"):
// the descriptor (the caller closes it) and the file's size. The open never blocks (O_NONBLOCK:
// a FIFO would wait for a writer forever, and the flag changes nothing for a regular file), and
// a path that cannot be opened, or is a directory, FIFO, socket or device, is a user error naming
// it: "PATH: not a regular file (a directory); expected a safetensors file".
struct RegularFileFd {
  int fd = -1;
  uint64_t bytes = 0;
};
RegularFileFd regular_file_open(const std::string& path, const char* expected);
void fsync_directory(const std::string& dir);
void make_directories(const std::string& dir);  // mkdir -p, throws naming the path
// `path` made absolute if it exists, else its nearest existing parent (what an output directory
// not yet created will live on).
std::string nearest_existing_path(const std::string& path);
// Bytes available to this user on the filesystem holding nearest_existing_path(path); -1 when
// the filesystem cannot tell.
int64_t filesystem_available_bytes(const std::string& path);

}  // namespace dsv4

// safetensors.h: validated, zero-copy reading of safetensors files and sharded checkpoints,
// and streaming atomic writing of them.
//
// Reading (mmap; tensors are byte spans into the mapping, nothing is copied):
//   Checkpoint ckpt = Checkpoint::open("/models/DeepSeek-V4-Flash");  // index or single file
//   const TensorInfo& t = ckpt.info("layers.0.attn.wq_a.weight");     // throws naming the tensor
//   std::span<const std::byte> raw = ckpt.bytes(t.name);
//
// Everything is validated at open, before any tensor is used, and each violation throws a
// dsv4::Error naming the file (and tensor): header length inside the file and below
// kMaxHeaderBytes; well-formed JSON; known dtypes; shapes of non-negative ints; byte length =
// dtype size × element count; offsets inside the data area, non-overlapping, and covering it
// without holes (as the safetensors spec requires); index entries naming files inside the
// checkpoint directory (no "..", no absolute paths), files that exist, and tensors those files
// hold.
//
// Writing (streaming: the header is computed from the specs, then bytes are appended in spec
// order, so a 5 GB shard never sits in memory):
//   CheckpointWriter w("out", specs, /*max_shard_bytes=*/5ull << 30);
//   for (auto& s : specs) w.write(s.name, bytes_of(s));   // in spec order, in one or more chunks
//   w.finish();   // shards + model.safetensors.index.json (total_size = sum of tensor bytes)
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/dtype.h"
#include "common/fs.h"

namespace dsv4 {

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the safetensors library's own cap

struct TensorSpec {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  int64_t numel() const;
  uint64_t bytes() const;  // dtype_size × numel
};

// "[2048, 4096]": shapes in error messages and reports.
std::string shape_string(const std::vector<int64_t>& shape);

struct TensorInfo : TensorSpec {
  uint64_t data_begin = 0;  // relative to the start of the data area (as in the header)
  uint64_t data_end = 0;
};

// One mmapped .safetensors file.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in header order
  const TensorInfo* find(std::string_view name) const;                 // nullptr if absent
  std::span<const std::byte> bytes(const TensorInfo& info) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
  const std::byte* map_ = nullptr;  // whole file
  uint64_t file_bytes_ = 0;
  uint64_t data_offset_ = 0;  // 8 + header length
};

// A checkpoint directory: model.safetensors.index.json plus shards, or one model.safetensors.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool contains(std::string_view name) const;
  const TensorInfo& info(std::string_view name) const;  // throws naming tensor and checkpoint
  std::span<const std::byte> bytes(std::string_view name) const;
  const std::string& file_of(std::string_view name) const;  // shard file name (not a path)
  std::vector<std::string> names() const;                   // sorted
  size_t num_tensors() const { return where_.size(); }
  uint64_t tensor_bytes() const;            // sum of tensor byte sizes
  uint64_t index_total_size() const { return index_total_size_; }  // 0 without an index
  std::vector<std::string> shard_files() const;  // sorted file names
  // Asks the kernel to read the bytes of every tensor whose name starts with `prefix` in the
  // background (madvise WILLNEED on the mapping), so a later decode finds them in the page cache;
  // returns the tensor bytes advised. The pipeline prefetches layer L+1 while it computes layer L.
  uint64_t prefetch(std::string_view prefix) const;

 private:
  struct Location {
    size_t shard;
    const TensorInfo* info;
  };
  std::string dir_;
  std::vector<std::string> shard_names_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::unordered_map<std::string, Location> where_;
  uint64_t index_total_size_ = 0;
};

// Streams one .safetensors file: header from the specs, then tensor bytes in spec order.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string path, std::vector<TensorSpec> specs,
                    std::map<std::string, std::string> metadata = {{"format", "pt"}});
  // Appends bytes of tensor `name`, which must be the current tensor in spec order; a tensor
  // may arrive in several chunks. Throws on wrong order or too many bytes.
  void write(std::string_view name, std::span<const std::byte> chunk);
  void finish();  // checks every tensor is complete, then commits atomically
  uint64_t data_bytes() const;
  // finish() in two steps, for CheckpointWriter, which seals each shard as it completes but
  // commits them all only in its own finish(), so an abandoned checkpoint leaves no shard behind.
  void check_complete();  // throws naming the first incomplete tensor
  void commit();

 private:
  std::vector<TensorSpec> specs_;
  size_t current_ = 0;
  uint64_t current_written_ = 0;
  AtomicFile file_;
};

// Splits specs (kept in order) into shards of at most max_shard_bytes of tensor data (a tensor
// larger than that gets a shard of its own), named model-0000i-of-0000n.safetensors, and writes
// model.safetensors.index.json after the last shard. Shards are committed only in finish(), so
// a writer destroyed before finish() leaves no shard behind. Empty specs give an index only.
class CheckpointWriter {
 public:
  CheckpointWriter(std::string dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes);
  // Explicit shards (an output profile that keeps its source's shard names): spec i goes to
  // shard `shard_index[i]` (nondecreasing, from 0, every shard in `shard_names` used), and each
  // (key, value) of `metadata` joins total_size in the index's metadata.
  CheckpointWriter(std::string dir, std::vector<TensorSpec> specs, const std::vector<size_t>& shard_index,
                   std::vector<std::string> shard_names,
                   std::vector<std::pair<std::string, std::string>> metadata = {});
  void write(std::string_view name, std::span<const std::byte> chunk);
  void finish();
  const std::vector<std::string>& shard_names() const { return shard_names_; }
  // The sharding rule, for callers that need the shard count before writing: shard index of
  // each spec. A tensor of non-zero size starts a new shard when the current one already holds
  // data and the tensor would take it past max_shard_bytes.
  static std::vector<size_t> plan_shards(const std::vector<TensorSpec>& specs,
                                         uint64_t max_shard_bytes);
  // The most shards 5-digit names hold; plan_shards refuses a shard size that needs more.
  static constexpr size_t kMaxShards = 99999;
  // "model-0000i-of-0000n.safetensors" for shard i (0-based) of n.
  static std::string shard_name(size_t i, size_t n);

  // Resumable runs (calib/run_journal.h): commit each shard as soon as it is complete and report
  // it, instead of all at finish(); and start writing at shard `first` because the shards before
  // it are already on disk, committed by an earlier process. Both only before the first write.
  void commit_when_sealed(std::function<void(const std::string& shard_name)> on_commit);
  void start_at_shard(size_t first);
  size_t shard_of(std::string_view name) const;  // throws for a name not in the specs
  size_t current_shard() const { return shard_; }

 private:
  std::string dir_;
  std::vector<std::vector<TensorSpec>> shard_specs_;
  std::vector<std::string> shard_names_;
  size_t shard_ = 0;
  std::unique_ptr<SafetensorsWriter> writer_;
  std::vector<std::unique_ptr<SafetensorsWriter>> sealed_;  // complete shards, not yet committed
  std::unordered_map<std::string, size_t> shard_of_;         // tensor name -> shard index
  std::vector<std::pair<std::string, std::string>> weight_map_;  // name -> file
  std::vector<std::pair<std::string, std::string>> metadata_;    // extra index metadata
  uint64_t total_size_ = 0;
  bool finished_ = false;
  bool wrote_ = false;
  std::function<void(const std::string&)> on_commit_;  // set: commit shards as they seal
  void place(std::vector<TensorSpec> specs, const std::vector<size_t>& plan);
  void open_shard(size_t i);
  void seal_current();
};

}  // namespace dsv4

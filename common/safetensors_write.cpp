// safetensors_write.cpp: streaming, atomic writing of .safetensors files and of sharded
// checkpoints (shards + model.safetensors.index.json).
//
// The header is fully determined by the specs, so it is written first and tensor bytes are
// appended as they arrive; a 5 GB shard never has to sit in memory. Everything goes through
// AtomicFile, so an interrupted write leaves no half-written file under the final name.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "common/check.h"
#include "common/safetensors.h"

namespace dsv4 {
namespace {

constexpr const char* kComponent = "safetensors";

// Runs before the AtomicFile member is constructed, so bad specs never create a temp file.
std::vector<TensorSpec> checked_specs(const std::string& path, std::vector<TensorSpec> specs) {
  std::unordered_set<std::string> seen;
  for (const TensorSpec& s : specs) {
    DSV4_CHECK_IN(kComponent, s.name != "__metadata__",
                  "%s: '__metadata__' is reserved and cannot be a tensor name", path.c_str());
    DSV4_CHECK_IN(kComponent, seen.insert(s.name).second,
                  "%s: tensor '%s' appears twice in the specs", path.c_str(), s.name.c_str());
    s.bytes();  // throws naming the tensor on a negative or overflowing shape
  }
  return specs;
}

// Header JSON in spec order, padded with spaces so that 8 + header length is a multiple of 8
// (what the safetensors library does): the data area then starts 8-byte aligned in the file,
// and so in an mmap of it.
std::string header_json(const std::vector<TensorSpec>& specs,
                        const std::map<std::string, std::string>& metadata) {
  // Assembled piece by piece rather than as one ordered_json, whose linear-time insertion would
  // make a header of tens of thousands of tensors quadratic.
  std::string text = "{";
  if (!metadata.empty()) text += "\"__metadata__\":" + nlohmann::json(metadata).dump();
  uint64_t offset = 0;
  for (const TensorSpec& s : specs) {
    const uint64_t end = offset + s.bytes();
    nlohmann::ordered_json entry;  // the key order of the safetensors library's own files
    entry["dtype"] = std::string(dtype_name(s.dtype));
    entry["shape"] = s.shape;
    entry["data_offsets"] = {offset, end};
    if (text.size() > 1) text += ",";
    text += nlohmann::json(s.name).dump() + ":" + entry.dump();
    offset = end;
  }
  text += "}";
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorSpec> specs,
                                     std::map<std::string, std::string> metadata)
    : specs_(checked_specs(path, std::move(specs))), file_(path) {
  const std::string header = header_json(specs_, metadata);
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(header.size() >> (8 * i));
  file_.write(length, sizeof(length));
  file_.write(header.data(), header.size());
}

void SafetensorsWriter::write(std::string_view name, std::span<const std::byte> chunk) {
  const char* f = file_.path().c_str();
  // Complete tensors are passed over, so a zero-byte tensor needs no write() call at all (an
  // empty write() naming it is accepted too).
  while (current_ < specs_.size() && specs_[current_].name != name &&
         current_written_ == specs_[current_].bytes()) {
    ++current_;
    current_written_ = 0;
  }
  if (current_ >= specs_.size()) {
    DSV4_FAIL(kComponent, "%s: write to tensor '%.*s', but every tensor is already complete (it "
              "is unknown or was written earlier)", f, static_cast<int>(name.size()), name.data());
  }
  const TensorSpec& spec = specs_[current_];
  if (spec.name != name) {
    DSV4_FAIL(kComponent, "%s: write to tensor '%.*s' out of order: tensor '%s' is current, "
              "with %llu of %llu bytes written", f, static_cast<int>(name.size()), name.data(),
              spec.name.c_str(), static_cast<unsigned long long>(current_written_),
              static_cast<unsigned long long>(spec.bytes()));
  }
  const uint64_t size = spec.bytes();
  if (chunk.size() > size - current_written_) {
    DSV4_FAIL(kComponent, "%s: tensor '%s' (%s %s) is %llu bytes, but %llu were already written "
              "and this chunk adds %zu", f, spec.name.c_str(),
              std::string(dtype_name(spec.dtype)).c_str(),
              nlohmann::json(spec.shape).dump().c_str(), static_cast<unsigned long long>(size),
              static_cast<unsigned long long>(current_written_), chunk.size());
  }
  file_.write(chunk.data(), chunk.size());
  current_written_ += chunk.size();
}

void SafetensorsWriter::check_complete() {
  while (current_ < specs_.size() && current_written_ == specs_[current_].bytes()) {
    ++current_;
    current_written_ = 0;
  }
  if (current_ < specs_.size()) {
    const TensorSpec& spec = specs_[current_];
    DSV4_FAIL(kComponent, "%s: tensor '%s' is incomplete: %llu of %llu bytes written (%zu of "
              "%zu tensors complete)", file_.path().c_str(), spec.name.c_str(),
              static_cast<unsigned long long>(current_written_),
              static_cast<unsigned long long>(spec.bytes()), current_, specs_.size());
  }
}

void SafetensorsWriter::commit() { file_.commit(); }

void SafetensorsWriter::finish() {
  check_complete();
  commit();
}

uint64_t SafetensorsWriter::data_bytes() const {
  uint64_t sum = 0;
  for (const TensorSpec& s : specs_) sum += s.bytes();
  return sum;
}

std::vector<size_t> CheckpointWriter::plan_shards(const std::vector<TensorSpec>& specs,
                                                  uint64_t max_shard_bytes) {
  // Greedy packing in spec order, as transformers' save_pretrained does. A tensor that alone
  // exceeds the limit starts a fresh shard and the next tensor starts another, so it sits alone.
  std::vector<size_t> plan;
  plan.reserve(specs.size());
  size_t shard = 0;
  uint64_t shard_bytes = 0;
  for (const TensorSpec& s : specs) {
    const uint64_t b = s.bytes();  // throws naming the tensor on a bad shape
    // A zero-byte tensor never opens a shard, even after an over-limit one.
    if (shard_bytes > 0 && b > 0 && shard_bytes + b > max_shard_bytes) {
      ++shard;
      shard_bytes = 0;
    }
    shard_bytes += b;
    plan.push_back(shard);
  }
  // Checked here, where every caller (the writer, the run's planned shard names, make-model's
  // plan) learns the count before any work: a user's small shard size is the cause.
  DSV4_USER_CHECK(kComponent, shard + 1 <= kMaxShards || plan.empty(),
                  "a shard size of %llu bytes splits the checkpoint into %zu shards, more than the %zu that "
                  "5-digit shard names hold: raise the shard size (output.shard_size in the recipe, or "
                  "make-model --shard-size)", static_cast<unsigned long long>(max_shard_bytes), shard + 1, kMaxShards);
  return plan;
}

std::string CheckpointWriter::shard_name(size_t i, size_t n) {
  char name[64];
  std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return name;
}

CheckpointWriter::CheckpointWriter(std::string dir, std::vector<TensorSpec> specs,
                                   uint64_t max_shard_bytes)
    : dir_(std::move(dir)) {
  const std::vector<size_t> plan = plan_shards(specs, max_shard_bytes);  // at most kMaxShards
  size_t n = plan.empty() ? 0 : plan.back() + 1;
  for (size_t i = 0; i < n; ++i) shard_names_.push_back(shard_name(i, n));
  place(std::move(specs), plan);
}

CheckpointWriter::CheckpointWriter(std::string dir, std::vector<TensorSpec> specs,
                                   const std::vector<size_t>& shard_index, std::vector<std::string> shard_names,
                                   std::vector<std::pair<std::string, std::string>> metadata)
    : dir_(std::move(dir)), shard_names_(std::move(shard_names)), metadata_(std::move(metadata)) {
  DSV4_CHECK_IN(kComponent, shard_index.size() == specs.size(), "%s: %zu shard indices for %zu tensors",
                dir_.c_str(), shard_index.size(), specs.size());
  for (size_t i = 0; i < shard_index.size(); ++i) {
    const size_t want = i == 0 ? 0 : shard_index[i - 1];
    DSV4_CHECK_IN(kComponent, shard_index[i] == want || shard_index[i] == want + 1,
                  "%s: tensor '%s' goes to shard %zu after shard %zu (shards must be filled in order)",
                  dir_.c_str(), specs[i].name.c_str(), shard_index[i], want);
  }
  DSV4_CHECK_IN(kComponent, (shard_index.empty() ? 0 : shard_index.back() + 1) == shard_names_.size(),
                "%s: %zu shard names for %zu shards", dir_.c_str(), shard_names_.size(),
                shard_index.empty() ? size_t{0} : shard_index.back() + 1);
  place(std::move(specs), shard_index);
}

// Groups the specs by shard (plan[i] of spec i, nondecreasing) and opens the first shard.
void CheckpointWriter::place(std::vector<TensorSpec> specs, const std::vector<size_t>& plan) {
  for (size_t i = 0; i < specs.size(); ++i) {
    DSV4_CHECK_IN(kComponent, shard_of_.emplace(specs[i].name, plan[i]).second,
                  "%s: tensor '%s' appears twice in the specs", dir_.c_str(),
                  specs[i].name.c_str());
    total_size_ += specs[i].bytes();
    if (plan[i] == shard_specs_.size()) shard_specs_.emplace_back();
    shard_specs_[plan[i]].push_back(std::move(specs[i]));
  }
  // No specs, no shards: the index alone (with an empty weight_map) describes the checkpoint.
  for (size_t i = 0; i < shard_specs_.size(); ++i) {
    for (const TensorSpec& s : shard_specs_[i]) weight_map_.emplace_back(s.name, shard_names_[i]);
  }
  std::sort(weight_map_.begin(), weight_map_.end());
  make_directories(dir_);
  if (!shard_specs_.empty()) open_shard(0);
}

void CheckpointWriter::open_shard(size_t i) {
  shard_ = i;
  const std::string path = (std::filesystem::path(dir_) / shard_names_[i]).string();
  writer_ = std::make_unique<SafetensorsWriter>(path, shard_specs_[i]);
}

void CheckpointWriter::write(std::string_view name, std::span<const std::byte> chunk) {
  const auto it = shard_of_.find(std::string(name));
  if (it == shard_of_.end()) {
    DSV4_FAIL(kComponent, "%s: write to tensor '%.*s', which is not in the specs", dir_.c_str(),
              static_cast<int>(name.size()), name.data());
  }
  DSV4_CHECK_IN(kComponent, writer_ != nullptr, "%s: write to tensor '%.*s' after finish()",
                dir_.c_str(), static_cast<int>(name.size()), name.data());
  if (it->second < shard_) {
    DSV4_FAIL(kComponent, "%s: write to tensor '%.*s' out of order: its shard %s is already "
              "complete", dir_.c_str(), static_cast<int>(name.size()), name.data(),
              shard_names_[it->second].c_str());
  }
  // Moving on seals every shard before the tensor's own (throwing, naming the incomplete
  // tensor, if one is short). Sealed shards are committed only in finish(): until then an
  // abandoned checkpoint leaves nothing behind.
  while (shard_ < it->second) {
    seal_current();
    open_shard(shard_ + 1);
  }
  wrote_ = true;
  writer_->write(name, chunk);
}

void CheckpointWriter::seal_current() {
  writer_->check_complete();
  if (on_commit_) {
    writer_->commit();
    writer_.reset();
    on_commit_(shard_names_[shard_]);
  } else {
    sealed_.push_back(std::move(writer_));
  }
}

void CheckpointWriter::commit_when_sealed(std::function<void(const std::string&)> on_commit) {
  DSV4_CHECK_IN(kComponent, !wrote_, "%s: commit_when_sealed after the first write", dir_.c_str());
  on_commit_ = std::move(on_commit);
}

void CheckpointWriter::start_at_shard(size_t first) {
  DSV4_CHECK_IN(kComponent, !wrote_, "%s: start_at_shard after the first write", dir_.c_str());
  DSV4_CHECK_IN(kComponent, first < shard_specs_.size(), "%s: start at shard %zu of %zu", dir_.c_str(), first,
                shard_specs_.size());
  writer_.reset();
  open_shard(first);
}

size_t CheckpointWriter::shard_of(std::string_view name) const {
  const auto it = shard_of_.find(std::string(name));
  DSV4_CHECK_IN(kComponent, it != shard_of_.end(), "%s: tensor '%.*s' is not in the specs", dir_.c_str(),
                static_cast<int>(name.size()), name.data());
  return it->second;
}

void CheckpointWriter::finish() {
  DSV4_CHECK_IN(kComponent, !finished_, "%s: finish() called twice", dir_.c_str());
  // Seal the remaining shards first (trailing shards may hold only zero-byte tensors).
  while (writer_ != nullptr) {
    seal_current();
    writer_.reset();
    if (shard_ + 1 < shard_specs_.size()) open_shard(shard_ + 1);
  }
  for (const auto& w : sealed_) w->commit();
  sealed_.clear();

  // The index last: a reader that sees it can rely on every shard being complete.
  nlohmann::json index;
  index["metadata"]["total_size"] = total_size_;
  for (const auto& [key, value] : metadata_) index["metadata"][key] = value;
  index["weight_map"] = nlohmann::json::object();
  for (const auto& [name, file] : weight_map_) index["weight_map"][name] = file;
  write_file_atomic((std::filesystem::path(dir_) / "model.safetensors.index.json").string(),
                    index.dump(2) + "\n");
  finished_ = true;
}

}  // namespace dsv4

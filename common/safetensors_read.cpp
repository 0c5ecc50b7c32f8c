// safetensors_read.cpp: opening and validating .safetensors files (mmap, zero-copy) and
// checkpoint directories (index + shards, or one model.safetensors).
//
// Everything is checked at open, before a single tensor byte is used: a truncated download or
// a hand-edited index must fail with a message naming the file and tensor, not as a wrong
// Hessian ten layers later. The rules follow the safetensors library (Rust crate `safetensors`,
// `validate`): offsets are relative to the end of the header, tensors cover the data area
// exactly (no holes, no overlaps, no trailing bytes), and byte length = dtype size × numel.
// A file that breaks them is the user's to fix (a damaged download, a hand-edited index), so it
// is a user error naming the file; only failed system calls (fstat, mmap) are internal.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <unordered_set>

#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "common/safetensors.h"

namespace dsv4 {
namespace {

constexpr const char* kComponent = "safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

// Plain (std::map) json: ordered_json inserts in linear time, which makes a 70k-tensor header
// quadratic. The header order that tensors() promises is recorded by KeyScanner instead.
using Json = nlohmann::json;

struct DuplicateKey {
  std::string key;     // empty: no key repeats
  std::string parent;  // "/a/b" style path of the enclosing object; "" for the root object
};

// nlohmann's DOM keeps the last of two equal keys silently. For a checkpoint that would hide a
// tensor written twice (or an index naming a tensor twice), so a second, SAX pass over the text
// records every object's keys and reports the first repeat; it also records the root object's
// keys in document order. (A parse callback could do this in one pass, but nlohmann's callback
// parser rescans the parent object after each member, which is quadratic in the tensor count.)
class KeyScanner : public nlohmann::json_sax<Json> {
 public:
  DuplicateKey duplicate;
  std::vector<std::string> root_keys;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_array(std::size_t) override {
    stack_.push_back({false, {}, {}});
    return true;
  }
  bool end_array() override { return pop(); }
  bool start_object(std::size_t) override {
    stack_.push_back({true, {}, {}});
    return true;
  }
  bool end_object() override { return pop(); }
  bool key(string_t& key) override {
    Level& level = stack_.back();
    if (stack_.size() == 1) root_keys.push_back(key);
    if (!level.keys.insert(key).second && duplicate.key.empty()) {
      duplicate.key = key;
      for (size_t i = 0; i + 1 < stack_.size(); ++i) {
        if (stack_[i].is_object) duplicate.parent += "/" + stack_[i].last_key;
      }
    }
    level.last_key = key;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;  // unreachable: the text was parsed successfully before the scan
  }

 private:
  struct Level {
    bool is_object;
    std::unordered_set<std::string> keys;
    std::string last_key;
  };
  std::vector<Level> stack_;
  bool pop() {
    stack_.pop_back();
    return true;
  }
};

// Parses `text` (throwing with nlohmann's message naming the position if it is malformed), then
// scans it for repeated keys and the root object's key order.
Json parse_json_checked(std::string_view text, const std::string& path, const char* what,
                        KeyScanner* scan) {
  Json j;
  try {
    j = json_parse<Json>(text, path);
  } catch (const Json::parse_error& e) {
    // nlohmann's "[json.exception.parse_error.101] " tag means nothing to the user; the rest
    // says where the JSON breaks.
    std::string why = e.what();
    if (why.starts_with("[json.exception.") && why.find("] ") != std::string::npos) why.erase(0, why.find("] ") + 2);
    DSV4_USER_FAIL(kComponent, "%s: the %s is not well-formed JSON (the file is damaged): %s", path.c_str(), what,
                   why.c_str());
  }
  Json::sax_parse(text.begin(), text.end(), scan);
  return j;
}

const char* json_type(const Json& j) { return j.type_name(); }

// A non-negative JSON integer, or std::nullopt (negative, fractional, not a number, too big).
std::optional<uint64_t> as_u64(const Json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  return std::nullopt;
}

// "123" -> 123; nullopt for anything but 1-20 decimal digits that fit in 64 bits.
std::optional<uint64_t> u64_of_decimal(const std::string& s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Parses and checks one header entry; everything that can be known without the other tensors.
TensorInfo parse_entry(const std::string& path, const std::string& name, const Json& entry,
                       uint64_t data_bytes) {
  const char* f = path.c_str();
  const char* t = name.c_str();
  if (!entry.is_object()) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': header entry must be an object with dtype, shape "
                   "and data_offsets, got %s", f, t, json_type(entry));
  }
  TensorInfo info;
  info.name = name;

  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': dtype must be a string, got %s", f, t,
                   dtype_it == entry.end() ? "nothing (missing)" : json_type(*dtype_it));
  }
  const std::string& dtype_str = dtype_it->get_ref<const std::string&>();
  const std::optional<DType> dtype = dtype_from_name(dtype_str);
  if (!dtype) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': unknown dtype '%s'", f, t, dtype_str.c_str());
  }
  info.dtype = *dtype;

  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': shape must be an array of non-negative integers, "
                   "got %s", f, t, shape_it == entry.end() ? "nothing (missing)" : json_type(*shape_it));
  }
  for (size_t i = 0; i < shape_it->size(); ++i) {
    const Json& d = (*shape_it)[i];
    if (d.is_number_integer() && !d.is_number_unsigned()) {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s': shape entry %zu is negative (%lld); expected a "
                     "non-negative integer", f, t, i, static_cast<long long>(d.get<int64_t>()));
    }
    const std::optional<uint64_t> v = as_u64(d);
    if (!v) {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s': shape entry %zu is %s, not an integer", f, t, i,
                     json_excerpt(d).c_str());
    }
    if (*v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s': shape entry %zu (%llu) does not fit in int64", f,
                     t, i, static_cast<unsigned long long>(*v));
    }
    info.shape.push_back(static_cast<int64_t>(*v));
  }
  // Element count and byte count with overflow checks: a crafted shape must not wrap around to
  // a small number that then "matches" the offsets.
  int64_t numel = 1;
  for (const int64_t d : info.shape) {
    if (__builtin_mul_overflow(numel, d, &numel)) {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s': element count of shape %s overflows int64", f, t,
                     shape_text(info.shape).c_str());
    }
  }
  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(info.dtype),
                             &expected_bytes)) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': byte count of shape %s × %s overflows uint64", f, t,
                   shape_text(info.shape).c_str(), dtype_str.c_str());
  }

  const auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': data_offsets must be an array [begin, end] of two "
                   "non-negative integers, got %s", f, t,
                   off_it == entry.end() ? "nothing (missing)" : off_it->dump().c_str());
  }
  const std::optional<uint64_t> begin = as_u64((*off_it)[0]);
  const std::optional<uint64_t> end = as_u64((*off_it)[1]);
  if (!begin || !end) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': data_offsets must be two non-negative integers, "
                   "got %s", f, t, off_it->dump().c_str());
  }
  if (*end < *begin) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': data_offsets [%llu, %llu] decrease; expected "
                   "begin <= end", f, t, static_cast<unsigned long long>(*begin),
                   static_cast<unsigned long long>(*end));
  }
  if (*end - *begin != expected_bytes) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes, but "
                   "%s %s needs %llu (dtype size × element count)", f, t,
                   static_cast<unsigned long long>(*begin), static_cast<unsigned long long>(*end),
                   static_cast<unsigned long long>(*end - *begin), dtype_str.c_str(),
                   shape_text(info.shape).c_str(), static_cast<unsigned long long>(expected_bytes));
  }
  if (*end > data_bytes) {
    DSV4_USER_FAIL(kComponent, "%s: tensor '%s': data_offsets end %llu is beyond the data area "
                   "(%llu bytes after the header); the file is truncated or the header is wrong", f,
                   t, static_cast<unsigned long long>(*end),
                   static_cast<unsigned long long>(data_bytes));
  }
  info.data_begin = *begin;
  info.data_end = *end;
  return info;
}

// Tensors must tile the data area exactly, as the safetensors library requires: sorting by
// offset, each tensor starts where the previous one ended, the first at 0, the last at the end.
void check_coverage(const std::string& path, const std::vector<TensorInfo>& tensors,
                    uint64_t data_bytes) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(tensors[a].data_begin, tensors[a].data_end) <
           std::pair(tensors[b].data_begin, tensors[b].data_end);
  });
  uint64_t covered = 0;
  const TensorInfo* prev = nullptr;
  for (const size_t i : order) {
    const TensorInfo& t = tensors[i];
    if (t.data_begin < covered) {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s' [%llu, %llu] overlaps tensor '%s' [%llu, %llu]; "
                     "tensors must not share bytes", path.c_str(), t.name.c_str(),
                     static_cast<unsigned long long>(t.data_begin),
                     static_cast<unsigned long long>(t.data_end), prev->name.c_str(),
                     static_cast<unsigned long long>(prev->data_begin),
                     static_cast<unsigned long long>(prev->data_end));
    }
    if (t.data_begin > covered) {
      DSV4_USER_FAIL(kComponent, "%s: hole in the data area: bytes [%llu, %llu) before tensor '%s' "
                     "belong to no tensor; tensors must cover the data area without gaps",
                     path.c_str(), static_cast<unsigned long long>(covered),
                     static_cast<unsigned long long>(t.data_begin), t.name.c_str());
    }
    covered = t.data_end;
    prev = &t;
  }
  if (covered != data_bytes) {
    DSV4_USER_FAIL(kComponent, "%s: trailing bytes [%llu, %llu) of the data area belong to no "
                   "tensor (unindexed data after %s)", path.c_str(),
                   static_cast<unsigned long long>(covered),
                   static_cast<unsigned long long>(data_bytes),
                   prev ? ("tensor '" + prev->name + "'").c_str() : "the header");
  }
}

// A file name from the index must stay inside the checkpoint directory. The test is lexical on
// purpose: Hugging Face cache snapshots hold symlinks into ../../blobs, which must keep working.
bool index_file_name_ok(const std::string& file) {
  return !file.empty() && file.front() != '/' && file.find("..") == std::string::npos;
}

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    DSV4_CHECK_IN(kComponent, shape[i] >= 0, "tensor '%s': dimension %zu of shape %s is negative",
                  name.c_str(), i, shape_text(shape).c_str());
    const bool overflow = __builtin_mul_overflow(n, shape[i], &n);
    DSV4_CHECK_IN(kComponent, !overflow, "tensor '%s': element count of shape %s overflows int64",
                  name.c_str(), shape_text(shape).c_str());
  }
  return n;
}

uint64_t TensorSpec::bytes() const {
  uint64_t b = 0;
  const bool overflow =
      __builtin_mul_overflow(static_cast<uint64_t>(numel()), dtype_size(dtype), &b);
  DSV4_CHECK_IN(kComponent, !overflow, "tensor '%s': byte count of shape %s overflows uint64",
                name.c_str(), shape_text(shape).c_str());
  return b;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  // Owned from the start, so the destructor unmaps on every error path below.
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const char* f = path.c_str();

  const RegularFileFd opened = regular_file_open(path, "a safetensors file");  // never blocks on a FIFO
  const int fd = opened.fd;
  file->file_bytes_ = opened.bytes;
  if (file->file_bytes_ < 8) {
    ::close(fd);
    DSV4_USER_FAIL(kComponent, "%s: file is %llu bytes, shorter than the 8-byte header length; "
                   "expected a safetensors file", f, static_cast<unsigned long long>(file->file_bytes_));
  }
  // MAP_PRIVATE + PROT_READ: pages come from the page cache and are shared by every rank on the
  // node; nothing is copied until a tensor is actually read.
  void* map = ::mmap(nullptr, file->file_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) DSV4_FAIL(kComponent, "%s: mmap failed: %s", f, std::strerror(map_err));
  file->map_ = static_cast<const std::byte*>(map);

  // u64 little-endian header length, assembled byte by byte so the host order does not matter.
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | uint64_t(file->map_[i]);
  if (header_bytes == 0) {
    DSV4_USER_FAIL(kComponent, "%s: header length is 0; expected a JSON header of at least 2 bytes",
                   f);
  }
  if (header_bytes > kMaxHeaderBytes) {
    DSV4_USER_FAIL(kComponent, "%s: header length %llu exceeds the limit of %llu bytes; not a "
                   "safetensors file?", f, static_cast<unsigned long long>(header_bytes),
                   static_cast<unsigned long long>(kMaxHeaderBytes));
  }
  if (header_bytes > file->file_bytes_ - 8) {
    DSV4_USER_FAIL(kComponent, "%s: header length %llu runs past the end of the file (%llu bytes); "
                   "the file is truncated", f, static_cast<unsigned long long>(header_bytes),
                   static_cast<unsigned long long>(file->file_bytes_));
  }
  file->data_offset_ = 8 + header_bytes;
  const uint64_t data_bytes = file->file_bytes_ - file->data_offset_;

  const std::string_view text(reinterpret_cast<const char*>(file->map_) + 8, header_bytes);
  KeyScanner scan;
  const Json header = parse_json_checked(text, path, "header", &scan);
  const DuplicateKey& dup = scan.duplicate;
  if (!header.is_object()) {
    DSV4_USER_FAIL(kComponent, "%s: header must be a JSON object, got %s", f, json_type(header));
  }
  if (!dup.key.empty()) {
    if (dup.parent.empty()) {
      DSV4_USER_FAIL(kComponent, "%s: duplicate tensor name '%s' in the header", f, dup.key.c_str());
    }
    DSV4_USER_FAIL(kComponent, "%s: duplicate key '%s' inside '%s' in the header", f,
                   dup.key.c_str(), dup.parent.c_str());
  }

  file->tensors_.reserve(scan.root_keys.size());
  for (const std::string& name : scan.root_keys) {
    const Json& value = header.at(name);
    if (name == "__metadata__") {
      if (!value.is_object()) {
        DSV4_USER_FAIL(kComponent, "%s: __metadata__ must be an object of strings, got %s", f,
                       json_type(value));
      }
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) {
          DSV4_USER_FAIL(kComponent, "%s: __metadata__ value of '%s' must be a string, got %s", f,
                         key.c_str(), json_type(v));
        }
        file->metadata_[key] = v.get<std::string>();
      }
      continue;
    }
    file->tensors_.push_back(parse_entry(path, name, value, data_bytes));
    file->by_name_.emplace(name, file->tensors_.size() - 1);
  }
  check_coverage(path, file->tensors_, data_bytes);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), file_bytes_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& info) const {
  // Guards against a TensorInfo that came from another file.
  DSV4_CHECK_IN(kComponent,
                info.data_begin <= info.data_end &&
                    info.data_end <= file_bytes_ - data_offset_,
                "%s: tensor '%s' [%llu, %llu] is not inside this file's data area", path_.c_str(),
                info.name.c_str(), static_cast<unsigned long long>(info.data_begin),
                static_cast<unsigned long long>(info.data_end));
  return {map_ + data_offset_ + info.data_begin, info.data_end - info.data_begin};
}

Checkpoint Checkpoint::open(const std::string& dir) {
  namespace fs = std::filesystem;
  Checkpoint ckpt;
  ckpt.dir_ = dir;
  const char* d = dir.c_str();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    DSV4_USER_FAIL(kComponent, "checkpoint directory '%s' does not exist or is not a directory", d);
  }
  const std::string index_path = (fs::path(dir) / kIndexName).string();
  const char* ip = index_path.c_str();

  if (!fs::exists(index_path, ec)) {
    const std::string single = (fs::path(dir) / kSingleName).string();
    if (!fs::exists(single, ec)) {
      DSV4_USER_FAIL(kComponent, "checkpoint directory '%s' holds neither %s nor %s", d, kIndexName,
                     kSingleName);
    }
    ckpt.shard_names_.push_back(kSingleName);
    ckpt.shards_.push_back(SafetensorsFile::open(single));
    for (const TensorInfo& t : ckpt.shards_[0]->tensors()) ckpt.where_[t.name] = {0, &t};
    return ckpt;
  }

  // The index: {"metadata": {"total_size": N}, "weight_map": {tensor: file}}.
  const std::string text = read_file(index_path);
  KeyScanner scan;
  const Json index = parse_json_checked(text, index_path, "index", &scan);
  const DuplicateKey& dup = scan.duplicate;
  if (!index.is_object()) DSV4_USER_FAIL(kComponent, "%s: index must be a JSON object", ip);
  if (!dup.key.empty()) {
    if (dup.parent == "/weight_map") {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s' appears twice in weight_map", ip, dup.key.c_str());
    }
    DSV4_USER_FAIL(kComponent, "%s: duplicate key '%s' inside '%s'", ip, dup.key.c_str(),
                   dup.parent.empty() ? "/" : dup.parent.c_str());
  }
  if (const auto meta = index.find("metadata"); meta != index.end() && !meta->is_null()) {
    if (!meta->is_object()) {
      DSV4_USER_FAIL(kComponent, "%s: metadata must be an object, got %s", ip, json_type(*meta));
    }
    if (const auto ts = meta->find("total_size"); ts != meta->end()) {
      // A number, or its decimal string (AppMana's dsv4_int converter writes a string).
      const std::optional<uint64_t> v = ts->is_string() ? u64_of_decimal(ts->get<std::string>()) : as_u64(*ts);
      if (!v) {
        DSV4_USER_FAIL(kComponent, "%s: metadata.total_size must be a non-negative integer (or its decimal string), got %s",
                       ip, json_excerpt(*ts).c_str());
      }
      ckpt.index_total_size_ = *v;
    }
  }
  const auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    DSV4_USER_FAIL(kComponent, "%s: weight_map must be an object of tensor name -> file name, got %s",
                   ip, wm == index.end() ? "nothing (missing)" : json_type(*wm));
  }

  // Validate every file name and give each distinct file one shard slot (sorted by name).
  std::unordered_map<std::string, std::string> file_of_tensor;  // tensor -> normalized file
  std::map<std::string, std::string> first_tensor_of_file;      // normalized file -> a tensor
  for (const auto& [name, value] : wm->items()) {
    if (!value.is_string()) {
      DSV4_USER_FAIL(kComponent, "%s: weight_map entry of tensor '%s' must be a file name string, "
                     "got %s", ip, name.c_str(), json_type(value));
    }
    const std::string& file = value.get_ref<const std::string&>();
    if (!index_file_name_ok(file)) {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s' maps to file '%s', which is outside the checkpoint "
                     "directory '%s' (absolute paths and '..' are not allowed)", ip, name.c_str(),
                     file.c_str(), d);
    }
    // "./a.safetensors" and "a.safetensors" are one shard, opened once.
    const std::string norm = fs::path(file).lexically_normal().string();
    file_of_tensor[name] = norm;
    first_tensor_of_file.emplace(norm, name);
  }
  std::unordered_map<std::string, size_t> shard_index;
  for (const auto& [file, tensor] : first_tensor_of_file) {
    const std::string path = (fs::path(dir) / file).string();
    if (!fs::exists(path, ec)) {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s' maps to file '%s', but '%s' has no such file; expected every "
                     "shard the index lists (an incomplete download?)", ip, tensor.c_str(), file.c_str(), d);
    }
    shard_index[file] = ckpt.shards_.size();
    ckpt.shard_names_.push_back(file);
    ckpt.shards_.push_back(SafetensorsFile::open(path));
  }

  // Index and shards must agree both ways: every listed tensor is where the index says, and
  // every stored tensor is listed (and listed for that shard, else it is stored twice).
  for (const auto& [name, file] : file_of_tensor) {
    const size_t s = shard_index.at(file);
    const TensorInfo* info = ckpt.shards_[s]->find(name);
    if (info == nullptr) {
      DSV4_USER_FAIL(kComponent, "%s: tensor '%s' is listed in file '%s', but that file does not "
                     "hold it", ip, name.c_str(), file.c_str());
    }
    ckpt.where_[name] = {s, info};
  }
  for (size_t s = 0; s < ckpt.shards_.size(); ++s) {
    for (const TensorInfo& t : ckpt.shards_[s]->tensors()) {
      const auto it = file_of_tensor.find(t.name);
      if (it == file_of_tensor.end()) {
        DSV4_USER_FAIL(kComponent, "%s: file '%s' holds tensor '%s', which the index does not list",
                       ip, ckpt.shard_names_[s].c_str(), t.name.c_str());
      }
      if (it->second != ckpt.shard_names_[s]) {
        DSV4_USER_FAIL(kComponent, "%s: tensor '%s' is stored in two files, '%s' and '%s' (the index "
                       "names '%s')", ip, t.name.c_str(), it->second.c_str(),
                       ckpt.shard_names_[s].c_str(), it->second.c_str());
      }
    }
  }
  return ckpt;
}

bool Checkpoint::contains(std::string_view name) const {
  return where_.find(std::string(name)) != where_.end();
}

const TensorInfo& Checkpoint::info(std::string_view name) const {
  const auto it = where_.find(std::string(name));
  if (it == where_.end()) {
    DSV4_FAIL(kComponent, "tensor '%.*s' is not in checkpoint '%s'",
              static_cast<int>(name.size()), name.data(), dir_.c_str());
  }
  return *it->second.info;
}

std::span<const std::byte> Checkpoint::bytes(std::string_view name) const {
  const TensorInfo& t = info(name);
  return shards_[where_.find(std::string(name))->second.shard]->bytes(t);
}

uint64_t Checkpoint::prefetch(std::string_view prefix) const {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uint64_t advised = 0;
  for (const auto& [name, loc] : where_) {
    if (!name.starts_with(prefix)) continue;
    const std::span<const std::byte> b = shards_[loc.shard]->bytes(*loc.info);
    if (b.empty()) continue;
    const uintptr_t begin = reinterpret_cast<uintptr_t>(b.data()) & ~(page - 1);
    const uintptr_t end = reinterpret_cast<uintptr_t>(b.data()) + b.size();
    // A hint: the kernel starts reading in the background; failure changes nothing but speed.
    if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED) == 0) advised += b.size();
  }
  return advised;
}

const std::string& Checkpoint::file_of(std::string_view name) const {
  info(name);  // throws naming the tensor and the checkpoint
  return shard_names_[where_.find(std::string(name))->second.shard];
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, loc] : where_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t Checkpoint::tensor_bytes() const {
  uint64_t sum = 0;
  for (const auto& [name, loc] : where_) sum += loc.info->data_end - loc.info->data_begin;
  return sum;
}

std::vector<std::string> Checkpoint::shard_files() const {
  std::vector<std::string> out = shard_names_;
  std::sort(out.begin(), out.end());
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace dsv4

// weights_import.cpp: release tensor values from an unencoded checkpoint (see weights_import.h).
#include "model/weights_import.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>

#include "common/check.h"
#include "common/codec.h"
#include "common/finite_scan.h"
#include "model/names.h"

namespace dsv4::model {
namespace {

constexpr const char* kComponent = "make-model";

// [rows, cols] of a tensor's logical values: the last dimension, and the product of the others.
std::pair<int64_t, int64_t> rows_cols(const std::vector<int64_t>& shape) {
  if (shape.empty()) return {1, 1};
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return {rows, shape.back()};
}

void dtype_check(const Checkpoint& src, const ExpectedTensor& t, const std::string& name, const TensorInfo& info) {
  const bool want_i64 = t.dtype == DType::kI64;
  const bool ok = want_i64 ? info.dtype == DType::kI64 : (info.dtype == DType::kF32 || info.dtype == DType::kBF16);
  DSV4_USER_CHECK(kComponent, ok, "%s: tensor '%s' (for %s) is %s; expected %s", src.dir().c_str(), name.c_str(),
                  t.name.c_str(), std::string(dtype_name(info.dtype)).c_str(), want_i64 ? "I64" : "F32 or BF16");
}

// The slice of a transformers tensor stacked over experts ([E, R, cols]) that holds `t`.
WeightsImport::Slice expert_slice(const Checkpoint& src, const ExpectedTensor& t, const NameAlias& a,
                                  const TensorInfo& info, int64_t rows, int64_t cols) {
  const auto& s = info.shape;
  const bool rows_ok = a.row_begin >= 0 ? a.row_end - a.row_begin == rows && s.size() == 3 && a.row_end <= s[1]
                                        : s.size() == 3 && s[1] == rows;
  DSV4_USER_CHECK(kComponent, s.size() == 3 && a.expert < s[0] && s[2] == cols && rows_ok,
                  "%s: tensor '%s' has shape %s; %s needs expert %d's rows [%lld, %lld) of [E, R, %lld]",
                  src.dir().c_str(), a.name.c_str(), shape_string(s).c_str(), t.name.c_str(), a.expert,
                  static_cast<long long>(std::max<int64_t>(a.row_begin, 0)),
                  static_cast<long long>(a.row_begin >= 0 ? a.row_end : rows), static_cast<long long>(cols));
  return {a.name, a.expert * s[1] + std::max<int64_t>(a.row_begin, 0), rows, cols};
}

WeightsImport::Slice locate(const Checkpoint& src, const NameMap& names, const ExpectedTensor& t) {
  const auto [rows, cols] = rows_cols(t.logical_shape);
  std::string name = t.name;
  std::optional<NameAlias> alias;
  if (!src.contains(name)) {
    alias = names.hf_tensor(t.name);
    DSV4_USER_CHECK(kComponent, alias && src.contains(alias->name),
                    "%s: no tensor '%s'%s%s%s (shape %s)", src.dir().c_str(), t.name.c_str(),
                    alias ? " (release name) or '" : "", alias ? alias->name.c_str() : "",
                    alias ? "' (transformers name)" : " (release name; the MTP block has no transformers name)",
                    shape_string(t.logical_shape).c_str());
    name = alias->name;
  }
  const TensorInfo& info = src.info(name);
  dtype_check(src, t, name, info);
  if (alias && alias->expert >= 0) return expert_slice(src, t, *alias, info, rows, cols);
  DSV4_USER_CHECK(kComponent, info.shape == t.logical_shape, "%s: tensor '%s' (for %s) has shape %s; expected %s",
                  src.dir().c_str(), name.c_str(), t.name.c_str(), shape_string(info.shape).c_str(),
                  shape_string(t.logical_shape).c_str());
  return {name, 0, rows, cols};
}

}  // namespace

WeightsImport::WeightsImport(const Checkpoint& src, const ModelConfig& config, const std::vector<ExpectedTensor>& tensors)
    : src_(src) {
  const NameMap names(config);
  std::set<std::string> used;
  for (const ExpectedTensor& t : tensors) {
    if (t.encoding == TensorEncoding::kScale) continue;  // computed from the values
    Slice s = locate(src, names, t);
    used.insert(s.name);
    slices_.emplace(t.name, std::move(s));
  }
  std::vector<std::string> unused;
  for (const std::string& n : src.names()) {
    if (!used.count(n)) unused.push_back(n);
    require_finite(non_finite_scan(src.bytes(n), src.info(n).dtype), n, src.dir());  // NaN would encode silently
  }
  DSV4_USER_CHECK(kComponent, unused.empty(),
                  "%s: %zu tensor(s) that no tensor of the release inventory takes, first '%s' (names are the "
                  "release's or transformers 5.17's; the MTP block's are mtp.S.*; is the config.json the model's?)",
                  src.dir().c_str(), unused.size(), unused.empty() ? "" : unused[0].c_str());
}

const WeightsImport::Slice& WeightsImport::slice_of(const ExpectedTensor& tensor) const {
  const auto it = slices_.find(tensor.name);
  DSV4_CHECK_IN(kComponent, it != slices_.end(), "%s is not in the inventory this import was checked against",
                tensor.name.c_str());
  return it->second;
}

void WeightsImport::row_read(const Slice& s, int64_t i, float* out) const {
  const TensorInfo& info = src_.info(s.name);
  const std::byte* base = src_.bytes(s.name).data();
  const size_t first = static_cast<size_t>((s.row0 + i) * s.cols), n = static_cast<size_t>(s.cols);
  if (info.dtype == DType::kBF16) {
    bf16_decode_n(base + 2 * first, out, n);  // any alignment: the file's offsets need not be even
  } else {
    std::memcpy(out, base + first * 4, n * 4);
  }
}

EncodedBytes WeightsImport::plain(const ExpectedTensor& tensor) const {
  const Slice& s = slice_of(tensor);
  if (tensor.dtype == DType::kI64) {
    const auto bytes = src_.bytes(s.name);
    return EncodedBytes(bytes.begin(), bytes.end());
  }
  std::vector<float> values(static_cast<size_t>(s.rows * s.cols));
  for (int64_t i = 0; i < s.rows; ++i) row_read(s, i, values.data() + i * s.cols);
  return release_encode_plain(tensor, values.data());
}

EncodedLinear WeightsImport::linear(const ExpectedTensor& weight, const ExpectedTensor& scale, int64_t fp8_block) const {
  const Slice& s = slice_of(weight);
  return release_encode_linear(weight, scale, fp8_block, [&](int64_t i, float* row) { row_read(s, i, row); });
}

}  // namespace dsv4::model

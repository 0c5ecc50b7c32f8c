// finite_scan.cpp: NaN and infinity in a tensor (see finite_scan.h).
#include "common/finite_scan.h"

#include <cstring>

#include "common/check.h"
#include "common/parallel.h"

namespace dsv4 {
namespace {

// Counts the elements of `bytes` (each `Width` bytes, read little-endian) for which `bad` holds.
template <typename Word, typename Bad>
NonFinite scan_words(std::span<const std::byte> bytes, Bad bad) {
  NonFinite nf;
  const size_t n = bytes.size() / sizeof(Word);
  for (size_t i = 0; i < n; ++i) {
    Word w;
    std::memcpy(&w, bytes.data() + i * sizeof(Word), sizeof(Word));
    if (!bad(w)) continue;
    if (nf.first < 0) nf.first = static_cast<int64_t>(i);
    ++nf.count;
  }
  return nf;
}

}  // namespace

NonFinite non_finite_scan(std::span<const std::byte> bytes, DType dtype) {
  switch (dtype) {
    case DType::kF32: return scan_words<uint32_t>(bytes, [](uint32_t w) { return (w & 0x7f800000u) == 0x7f800000u; });
    case DType::kBF16: return scan_words<uint16_t>(bytes, [](uint16_t w) { return (w & 0x7f80u) == 0x7f80u; });
    case DType::kF16: return scan_words<uint16_t>(bytes, [](uint16_t w) { return (w & 0x7c00u) == 0x7c00u; });
    case DType::kF64:
      return scan_words<uint64_t>(bytes, [](uint64_t w) { return (w & 0x7ff0000000000000ull) == 0x7ff0000000000000ull; });
    case DType::kF8E4M3: return scan_words<uint8_t>(bytes, [](uint8_t w) { return (w & 0x7fu) == 0x7fu; });
    case DType::kF8E5M2: return scan_words<uint8_t>(bytes, [](uint8_t w) { return (w & 0x7cu) == 0x7cu; });
    case DType::kF8E8M0: return scan_words<uint8_t>(bytes, [](uint8_t w) { return w == 0xffu; });
    default: return {};
  }
}

NonFinite non_finite_scan(const float* values, size_t count) {
  return non_finite_scan(std::as_bytes(std::span(values, count)), DType::kF32);
}

void require_finite(const NonFinite& nf, const std::string& tensor, const std::string& where) {
  if (nf.count == 0) return;
  const std::string first = nf.first < 0 ? "" : strfmt(", the first at index %lld", static_cast<long long>(nf.first));
  DSV4_USER_FAIL("checkpoint", "%s in %s holds %lld NaN or infinite value(s)%s: the checkpoint is damaged",
                 tensor.c_str(), where.c_str(), static_cast<long long>(nf.count), first.c_str());
}

std::string TensorNonFinite::text() const {
  return strfmt("%s in %s holds %lld NaN or infinite value(s), the first at index %lld", tensor.c_str(), file.c_str(),
                static_cast<long long>(nf.count), static_cast<long long>(nf.first));
}

std::vector<TensorNonFinite> checkpoint_non_finite(const Checkpoint& ckpt, int threads) {
  const std::vector<std::string> names = ckpt.names();
  std::vector<NonFinite> found(names.size());
  parallel_for(names.size(), threads, [&](size_t i) {
    found[i] = non_finite_scan(ckpt.bytes(names[i]), ckpt.info(names[i]).dtype);
  });
  std::vector<TensorNonFinite> out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (found[i].count > 0) out.push_back({names[i], ckpt.file_of(names[i]), found[i]});
  }
  return out;
}

}  // namespace dsv4

// sample_hash.cpp: FNV-1a 64 over little-endian token ids (definition in sample_hash.h).
#include "data/sample_hash.h"

#include <cstdio>

namespace dsv4::data {

void SampleHasher::add_u64(uint64_t v) {
  for (int i = 0; i < 8; ++i) add_byte(static_cast<uint8_t>(v >> (8 * i)));
}

void SampleHasher::add_i32(int32_t v) {
  // NOTE: through uint32_t so negative ids (never valid, but hashable) have a defined byte image.
  const uint32_t u = static_cast<uint32_t>(v);
  for (int i = 0; i < 4; ++i) add_byte(static_cast<uint8_t>(u >> (8 * i)));
}

void SampleHasher::add_ids(std::span<const int32_t> ids) {
  for (int32_t id : ids) add_i32(id);
}

uint64_t sample_hash(std::span<const int32_t> ids) {
  SampleHasher h;
  h.add_ids(ids);
  return h.digest();
}

uint64_t sample_list_hash(std::span<const std::vector<int32_t>> samples) {
  SampleHasher h;
  h.add_u64(samples.size());
  for (const auto& s : samples) {
    h.add_u64(s.size());
    h.add_ids(s);
  }
  return h.digest();
}

std::string sample_hash_hex(uint64_t hash) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(hash));
  return buf;
}

}  // namespace dsv4::data

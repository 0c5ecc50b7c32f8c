// sample_hash.h: stable hashes of calibration samples for the calib manifest, so a resume or an
// audit can tell whether two runs saw exactly the same token ids.
//
//   uint64_t h = sample_hash(ids);                 // one sample
//   uint64_t all = sample_list_hash(samples);      // the whole list, in canonical order
//   std::string hex = sample_hash_hex(h);          // "cbf29ce484222325" (16 lowercase digits)
//
// Definition (kSampleHashAlgorithm), fixed forever because manifests compare against it:
//   - FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over bytes.
//   - sample_hash(ids): the bytes are each id as a little-endian int32, in order. The empty
//     sample hashes to the offset basis.
//   - sample_list_hash(samples): one FNV-1a 64 stream over the sample count as a little-endian
//     uint64, then for each sample its length as a little-endian uint64 followed by its ids as
//     little-endian int32. The length prefixes make [[1,2],[3]] and [[1],[2,3]] differ.
// FNV-1a is not collision resistant against an adversary; here it only has to notice accidental
// changes (a different tokenizer, seed or file), for which 64 bits are plenty, and it is trivial
// to reproduce in Python: tests/data/make_chat_fixture.py has the same function.
// Tests: tests/data/test_sampling.cpp.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dsv4::data {

inline constexpr const char* kSampleHashAlgorithm = "fnv1a64-le-int32";

uint64_t sample_hash(std::span<const int32_t> ids);
uint64_t sample_list_hash(std::span<const std::vector<int32_t>> samples);
std::string sample_hash_hex(uint64_t hash);

// implementation details -------------------------------------------------------------------
// Incremental FNV-1a 64, fed little-endian integers (the byte order is fixed, not the host's).
class SampleHasher {
 public:
  void add_u64(uint64_t v);
  void add_i32(int32_t v);
  void add_ids(std::span<const int32_t> ids);
  uint64_t digest() const { return state_; }

 private:
  void add_byte(uint8_t b) { state_ = (state_ ^ b) * 0x100000001b3ull; }
  uint64_t state_ = 0xcbf29ce484222325ull;
};

}  // namespace dsv4::data

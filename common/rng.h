// rng.h: small deterministic random numbers for synthetic checkpoints and seeded tests.
//
//   Rng rng(rng_seed_for(seed, "layers.0.attn.wq_a.weight"));  // one stream per tensor
//   float w = rng.normal() * std;
//   uint64_t k = rng.below(256);
//
// SplitMix64 (Steele et al.): tiny state, statistically fine for test data, and trivially
// reproducible across platforms, compilers and thread counts (std::normal_distribution is not:
// its algorithm is implementation-defined, so it would make checkpoints differ between libstdc++
// and libc++). Streams are keyed by name, never by thread, so output is independent of threading.
#pragma once

#include <cstdint>
#include <string_view>

namespace dsv4 {

inline constexpr uint64_t kFnv1a64Offset = 0xcbf29ce484222325ull;
// FNV-1a 64 of `text`, continuing from `state` (pass the previous result to hash a stream in
// pieces; the default starts a new hash).
uint64_t hash_fnv1a64(std::string_view text, uint64_t state = kFnv1a64Offset);
uint64_t mix64(uint64_t x);  // the SplitMix64 finaliser: a bijective 64-bit hash
inline uint64_t rng_seed_for(uint64_t seed, std::string_view key) {
  return mix64(seed ^ hash_fnv1a64(key));
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next_u64();
  double uniform();                 // [0, 1), 53 random bits
  uint64_t below(uint64_t bound);   // [0, bound), bound > 0, without modulo bias
  float normal();                   // standard normal (Box-Muller, cached pair)
  // Bell-shaped, mean 0, variance 1, bounded by ±2√3: the Irwin-Hall sum of four 16-bit uniforms
  // of one draw. ~10× cheaper than normal(); used for the billions of synthetic weights.
  float normal_approx();

 private:
  uint64_t state_;
  bool has_spare_ = false;
  float spare_ = 0.0f;
};

}  // namespace dsv4

// rng.cpp: SplitMix64 streams and the derived uniform/normal draws (see rng.h).
#include "common/rng.h"

#include <cmath>

namespace dsv4 {

uint64_t hash_fnv1a64(std::string_view text, uint64_t state) {
  uint64_t h = state;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t Rng::next_u64() {
  state_ += 0x9e3779b97f4a7c15ull;
  return mix64(state_);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

uint64_t Rng::below(uint64_t bound) {
  // Rejection sampling: drop the top partial range so every residue is equally likely.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t x;
  do {
    x = next_u64();
  } while (x >= limit);
  return x % bound;
}

float Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // 1 - uniform() is in (0, 1], so the log is finite.
  const double r = std::sqrt(-2.0 * std::log(1.0 - uniform()));
  const double phi = 2.0 * M_PI * uniform();
  spare_ = static_cast<float>(r * std::sin(phi));
  has_spare_ = true;
  return static_cast<float>(r * std::cos(phi));
}

float Rng::normal_approx() {
  const uint64_t x = next_u64();
  // Four uniforms in [0, 1) of 16 bits each: sum has mean 2 and variance 4/12 = 1/3.
  const uint32_t sum = static_cast<uint32_t>(x & 0xffff) + static_cast<uint32_t>((x >> 16) & 0xffff) +
                       static_cast<uint32_t>((x >> 32) & 0xffff) + static_cast<uint32_t>(x >> 48);
  constexpr float kInv = 1.0f / 65536.0f;
  constexpr float kSqrt3 = 1.7320508075688772f;
  return (static_cast<float>(sum) * kInv - 2.0f) * kSqrt3;
}

}  // namespace dsv4

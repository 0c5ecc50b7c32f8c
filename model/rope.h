// rope.h: the two RoPE tables of DeepSeek-V4 and their application to the trailing rope dims of a
// vector (interleaved pairs), reference §3.2 and Appendix A.
//
//   RopeTable main = rope_table_build(config, /*compressed=*/false, max_positions);  // θ = 10000
//   RopeTable comp = rope_table_build(config, /*compressed=*/true, max_positions);   // θ = 160000 + YaRN
//   rope_apply(v, dim, table, pos, /*inverse=*/false);   // rotates v[dim - rd .. dim)
//
// Convention: for pair i in [0, rd/2): (a, b) = (v[dim-rd+2i], v[dim-rd+2i+1]),
// φ = pos · inv_freq[i], a' = a cos φ − b sin φ, b' = b cos φ + a sin φ; inverse uses −φ.
// fp32 throughout. Tests: tests/model/test_rope.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv4::model {

struct RopeTable {
  int rope_dim = 0;               // rd (even)
  std::vector<double> inv_freq;   // [rd/2]
  int64_t positions = 0;
  std::vector<float> cos, sin;    // [positions, rd/2]
};

// compressed = true: compress_rope_theta with YaRN (config.yarn) — used by CSA/HCA layers;
// false: rope_theta, no YaRN — sliding layers and MTP.
RopeTable rope_table_build(const ModelConfig& config, bool compressed, int64_t positions);

// The table a block uses: compressed iff the block has a compressor (ratio > 0).
inline bool rope_is_compressed(const LayerSpec& spec) { return spec.compress_ratio > 0; }

void rope_apply(float* v, int64_t dim, const RopeTable& table, int64_t position, bool inverse);

}  // namespace dsv4::model

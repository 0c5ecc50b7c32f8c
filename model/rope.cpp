// rope.cpp: the RoPE tables (plain θ for sliding layers, θ' + YaRN for compressed layers) and the
// interleaved rotation of the trailing rope dims (see rope.h; reference §3.2, Appendix A).
//
// The frequencies are computed the way transformers 5.17 computes them (float32 tensors, python
// doubles for the correction range), not in double from the closed form of Appendix A: the two
// agree to ~1e-7 relative, but matching transformers' roundings keeps the oracle comparison at
// the level of summation-order noise.
#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace dsv4::model {
namespace {

// transformers: base ** (torch.arange(0, dim, 2, dtype=float) / dim), a float32 tensor. The
// exponent is a float32 quotient; pow is taken in double and rounded once (torch's float pow is
// within 1 ulp of that).
std::vector<float> rope_pos_freqs(double base, int rope_dim) {
  std::vector<float> out(rope_dim / 2);
  for (int i = 0; i < rope_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rope_dim);
    out[i] = static_cast<float>(std::pow(base, static_cast<double>(exponent)));
  }
  return out;
}

// modeling_rope_utils._compute_yarn_parameters: find_correction_dim in python doubles.
double yarn_correction_dim(double rotations, int dim, double base, double original_max) {
  return (dim * std::log(original_max / (rotations * 2.0 * M_PI))) / (2.0 * std::log(base));
}

std::vector<float> yarn_inv_freq(const YarnScaling& yarn, double base, int rope_dim) {
  const std::vector<float> pos = rope_pos_freqs(base, rope_dim);
  const double original = static_cast<double>(yarn.original_max_position_embeddings);
  // transformers (truncate defaults to True): low = floor, high = ceil, then clamped to
  // [0, dim − 1] with dim the full rope dim, not the dim/2 pairs the ramp runs over. With a
  // small original length (the tiny config's 64) low goes negative and is clamped to 0.
  double low = std::floor(yarn_correction_dim(yarn.beta_fast, rope_dim, base, original));
  double high = std::ceil(yarn_correction_dim(yarn.beta_slow, rope_dim, base, original));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(rope_dim - 1));
  if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
  const float factor = static_cast<float>(yarn.factor);
  std::vector<float> inv(rope_dim / 2);
  for (int i = 0; i < rope_dim / 2; ++i) {
    // linear_ramp_factor: (arange(dim/2, float32) − low) / (high − low), clamped to [0, 1].
    float ramp = (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
    ramp = std::clamp(ramp, 0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    const float extrapolation = 1.0f / pos[i];
    const float interpolation = 1.0f / (factor * pos[i]);
    inv[i] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  return inv;
}

}  // namespace

RopeTable rope_table_build(const ModelConfig& config, bool compressed, int64_t positions) {
  const int rd = config.rope_head_dim;
  DSV4_CHECK_IN("rope", rd > 0 && rd % 2 == 0, "%s: rope_head_dim %d must be positive and even",
                config.origin.c_str(), rd);
  DSV4_CHECK_IN("rope", positions >= 0, "%s: %lld positions", config.origin.c_str(),
                static_cast<long long>(positions));
  const double base = compressed ? config.compress_rope_theta : config.rope_theta;
  DSV4_CHECK_IN("rope", base > 1.0, "%s: rope theta %g", config.origin.c_str(), base);

  std::vector<float> inv;
  if (compressed && config.yarn.enabled) {
    DSV4_CHECK_IN("rope", config.yarn.factor > 0 && config.yarn.original_max_position_embeddings > 0,
                  "%s: YaRN factor %g, original_max_position_embeddings %lld",
                  config.origin.c_str(), config.yarn.factor,
                  static_cast<long long>(config.yarn.original_max_position_embeddings));
    inv = yarn_inv_freq(config.yarn, base, rd);
  } else {
    // compute_default_rope_parameters: 1.0 / (base ** (arange / dim)) in float32.
    const std::vector<float> pos = rope_pos_freqs(base, rd);
    inv.resize(pos.size());
    for (size_t i = 0; i < pos.size(); ++i) inv[i] = 1.0f / pos[i];
  }
  // No attention/mscale factor on cos/sin: transformers forces attention_factor = 1.0 for V4's
  // YaRN and the reference has none either (Appendix A).

  RopeTable table;
  table.rope_dim = rd;
  table.positions = positions;
  table.inv_freq.assign(inv.begin(), inv.end());
  const int64_t half = rd / 2;
  table.cos.resize(static_cast<size_t>(positions * half));
  table.sin.resize(static_cast<size_t>(positions * half));
  for (int64_t p = 0; p < positions; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      // transformers: freqs = inv_freq (fp32) · position (fp32) rounded to fp32, then cos/sin
      // of that fp32 angle.
      const float phi = static_cast<float>(p) * inv[i];
      table.cos[p * half + i] = static_cast<float>(std::cos(static_cast<double>(phi)));
      table.sin[p * half + i] = static_cast<float>(std::sin(static_cast<double>(phi)));
    }
  }
  return table;
}

void rope_apply(float* v, int64_t dim, const RopeTable& table, int64_t position, bool inverse) {
  const int64_t rd = table.rope_dim;
  DSV4_CHECK_IN("rope", dim >= rd && rd > 0, "vector dim %lld < rope dim %lld",
                static_cast<long long>(dim), static_cast<long long>(rd));
  DSV4_CHECK_IN("rope", position >= 0 && position < table.positions,
                "position %lld outside the table [0, %lld)", static_cast<long long>(position),
                static_cast<long long>(table.positions));
  const int64_t half = rd / 2;
  const float* c = table.cos.data() + position * half;
  const float* s = table.sin.data() + position * half;
  float* r = v + (dim - rd);  // [rd] trailing rope dims, pairs (2i, 2i+1)
  for (int64_t i = 0; i < half; ++i) {
    const float a = r[2 * i];
    const float b = r[2 * i + 1];
    const float sn = inverse ? -s[i] : s[i];
    r[2 * i] = a * c[i] - b * sn;
    r[2 * i + 1] = b * c[i] + a * sn;
  }
}

}  // namespace dsv4::model

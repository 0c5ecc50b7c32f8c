// latent_activations.h: Gaussian test inputs for the GPTQ-family tests. randn draws from
// std::mt19937 (fixed sequences per seed); latent_activations builds [tokens, cols] inputs from
// `latents` shared directions plus independent noise, the correlated inputs under which GPTQ and
// the methods past it move codes away from RTN. Shared by test_gptaq.cpp and test_gptq_refine.cpp.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace dsv4 {

inline std::vector<float> randn(int64_t n, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// x[t] = Σ_j z[t, j] · mix[j] + noise; seeds seed, seed + 1, seed + 2 draw z, mix and the noise.
inline std::vector<float> latent_activations(int64_t tokens, int64_t cols, int64_t latents, float noise_sigma,
                                             uint32_t seed) {
  const std::vector<float> z = randn(tokens * latents, seed, 1.0f);
  const std::vector<float> mix = randn(latents * cols, seed + 1, 1.0f);
  std::vector<float> x = randn(tokens * cols, seed + 2, noise_sigma);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < latents; ++j) {
      for (int64_t c = 0; c < cols; ++c) x[t * cols + c] += z[t * latents + j] * mix[j * cols + c];
    }
  }
  return x;
}

}  // namespace dsv4

// sublayer_test_util.h: what the op-level GPU tests of model/'s sub-layers share
// (tests/model/test_hc_cuda.cu, test_moe_cuda.cu, test_attention_cuda.cu): a fresh random tiny
// checkpoint per test process, bf16 helpers, and the judge of a bf16 forward against the exact one.
//
// The judge (the rule of tests/model/test_block_cuda.cu, which held over 31 H100 runs): both bf16
// forwards (GPU, and the CPU in its bf16 numeric mode) multiply the same bf16 values and differ
// from each other only in the order of fp32 sums and the last bits of expf/log1pf; now and then a
// result lands next to a bf16 rounding boundary and rounds one step the other way, and a near-tied
// top-k choice (router, indexer) can flip and move a whole token. So each token's output is
// measured against the exact computation (the CPU in fp32 mode): the GPU's median distance within
// 1.5x the CPU bf16 mode's, and its count of tokens further than 10x that median at most the CPU
// bf16 mode's count plus 2 + 2% of tokens, and at most 10% of tokens (plus one). Distances are
// |a − b| / max(|b|, the tensor's RMS), averaged over a token's row.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/codec.h"
#include "model/config.h"
#include "model/synth_model.h"
#include "tests/gpu_test.h"

namespace dsv4::model::sublayer_test {

// A tiny checkpoint written once per process (seeded from fresh_rng), removed at exit.
class SynthCheckpoint {
 public:
  static const std::string& dir() {
    static SynthCheckpoint instance;
    return instance.dir_;
  }
  static uint64_t seed() {
    dir();
    return seed_;
  }

 private:
  SynthCheckpoint() {
    dir_ = ::testing::TempDir() + "dsv4_sublayer_cuda_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    seed_ = fresh_rng()();
    synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = dir_, .seed = seed_, .calibration_records = 0});
    std::printf("tiny checkpoint seed %llu\n", static_cast<unsigned long long>(seed_));
  }
  ~SynthCheckpoint() { std::filesystem::remove_all(dir_); }
  std::string dir_;
  static inline uint64_t seed_ = 0;
};

// bf16 values drawn normal(0, sigma), in fp32.
inline std::vector<float> bf16_normal(size_t n, float sigma) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = bf16_decode(bf16_encode(d(fresh_rng())));
  return v;
}

inline std::vector<uint16_t> to_bits(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = bf16_encode(v[i]);
  return b;
}

inline std::vector<float> from_bits(const std::vector<uint16_t>& b) {
  std::vector<float> v(b.size());
  for (size_t i = 0; i < b.size(); ++i) v[i] = bf16_decode(b[i]);
  return v;
}

// Mean distance |a − exact| / max(|exact|, RMS(exact)) of each token's row of `width` values.
inline std::vector<double> token_distances(const std::vector<float>& a, const std::vector<float>& exact, int64_t width) {
  double ss = 0;
  for (float v : exact) ss += static_cast<double>(v) * v;
  const double rms = std::sqrt(ss / static_cast<double>(std::max<size_t>(exact.size(), 1))) + 1e-30;
  std::vector<double> out(exact.size() / static_cast<size_t>(width), 0.0);
  for (size_t i = 0; i < out.size() * static_cast<size_t>(width); ++i) {
    out[i / width] += std::fabs(static_cast<double>(a[i]) - exact[i]) / std::max<double>(std::fabs(exact[i]), rms);
  }
  for (double& v : out) v /= static_cast<double>(width);
  return out;
}

inline double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// The judge above: gpu and cpu_bf16 against exact, all [tokens, width].
inline void expect_bf16_forward_close(const std::vector<float>& gpu, const std::vector<float>& cpu_bf16,
                                      const std::vector<float>& exact, int64_t width, const std::string& what) {
  ASSERT_EQ(gpu.size(), exact.size()) << what;
  ASSERT_EQ(cpu_bf16.size(), exact.size()) << what;
  double norm = 0;
  size_t identical = 0, nonfinite = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    norm += std::fabs(exact[i]);
    identical += gpu[i] == cpu_bf16[i];
    nonfinite += !std::isfinite(gpu[i]);
  }
  ASSERT_GT(norm, 0.0) << what << ": all-zero exact output (vacuous)";
  ASSERT_EQ(nonfinite, 0u) << what << ": non-finite GPU outputs";
  const std::vector<double> gpu_far = token_distances(gpu, exact, width);
  const std::vector<double> cpu_far = token_distances(cpu_bf16, exact, width);
  const double gpu_median = median(gpu_far), cpu_median = median(cpu_far);
  int64_t outliers = 0, cpu_outliers = 0;
  size_t worst = 0;
  for (size_t t = 0; t < gpu_far.size(); ++t) {
    outliers += gpu_far[t] > 10 * cpu_median;
    cpu_outliers += cpu_far[t] > 10 * cpu_median;
    if (gpu_far[t] > gpu_far[worst]) worst = t;
  }
  const auto tokens = static_cast<int64_t>(gpu_far.size());
  std::printf("  %s: %.4f bit-identical to the CPU bf16 mode; from fp32 per token: GPU median %.2e, CPU bf16 median "
              "%.2e, %lld GPU outlier tokens of %lld (CPU bf16: %lld), worst token %zu at %.2e\n",
              what.c_str(), static_cast<double>(identical) / static_cast<double>(exact.size()), gpu_median, cpu_median,
              static_cast<long long>(outliers), static_cast<long long>(tokens), static_cast<long long>(cpu_outliers),
              worst, gpu_far[worst]);
  EXPECT_LE(gpu_median, 1.5 * cpu_median) << what << ": the GPU is further from fp32 than the CPU bf16 mode";
  EXPECT_LE(outliers, cpu_outliers + 2 + tokens / 50)
      << what << ": more tokens far from fp32 than the CPU bf16 mode; worst token " << worst << " at "
      << gpu_far[worst] << " (CPU bf16 median " << cpu_median << ")";
  EXPECT_LE(outliers, 1 + tokens / 10) << what << ": too many tokens far from fp32";
}

}  // namespace dsv4::model::sublayer_test

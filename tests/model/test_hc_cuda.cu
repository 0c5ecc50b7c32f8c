// test_hc_cuda.cu: the hyper-connection ops hc_pre_cuda and hc_post_cuda (model/hc_cuda.h) against
// their CPU references hc_pre and hc_post (model/hc.h) with the bf16 numeric mode's rounding of
// what is stored in bf16 (y, the next state), on the HC weights of a fresh random tiny checkpoint
// (uploaded by block_weights_upload, which splits fn into three bf16 parts), n = 4 streams of 256,
// 1, 37 and 300 tokens of bf16 states drawn fresh each run (each stream its own scale). Zero
// tokens is a no-op; hc_post in place is an error. CUDA build; skips without a device unless
// DSV4_REQUIRE_GPU=1.
// Stated tolerances:
//   - hc_pre's post [N, n] and comb [N, n, n] (fp32, O(1) values): within 1e-4 absolute. The
//     mixing logits are sums of K = n·D = 1024 products: the GPU's three bf16 partial GEMMs are
//     exact per product, the CPU's sgemm rounds, and the orders differ; for fn ~ N(0, 1/32) and
//     unit-RMS states that is ~1e-6 typically (1e-3 in the worst-case bound), and sigmoid, expf and
//     the Sinkhorn normalisations do not amplify it.
//   - hc_pre's y = bf16(Σ_j pre_j X[j]): the same fp32 operations on pre values that differ by
//     ~1e-6, so now and then a value rounds to the neighbouring bf16: every value within one bf16
//     step of the CPU's (or 1e-4 of the state's RMS, for values near a cancellation), at most 1%
//     (plus one) not bit-identical.
//   - hc_post given the CPU's post and comb: bitwise (the CPU's fp32 operations in its order with
//     round-to-nearest intrinsics, one bf16 rounding).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/device_arena.h"
#include "common/safetensors.h"
#include "model/block_weights.h"
#include "model/forward_cuda.h"
#include "model/hc.h"
#include "model/hc_cuda.h"
#include "model/ops.h"
#include "tests/cuda_handles.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"
#include "tests/model/sublayer_test_util.h"

namespace dsv4::model {
namespace {

using namespace sublayer_test;

// The residual state [tokens, n, D] in bf16, stream j with sigma 0.5·(j + 1).
std::vector<float> random_state(const ModelConfig& c, int64_t tokens) {
  std::vector<float> x;
  x.reserve(static_cast<size_t>(tokens * c.hc_dim()));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int j = 0; j < c.hc_mult; ++j) {
      const std::vector<float> s = bf16_normal(static_cast<size_t>(c.hidden_size), 0.5f * static_cast<float>(j + 1));
      x.insert(x.end(), s.begin(), s.end());
    }
  }
  return x;
}

// Fails naming the worst element when any |gpu − cpu| exceeds tol.
void expect_within(const std::vector<float>& gpu, const std::vector<float>& cpu, double tol, int64_t cols,
                   const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  size_t bad = 0, at = 0;
  double worst = -1, norm = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    norm += std::fabs(cpu[i]);
    const double e = std::isfinite(gpu[i]) ? std::fabs(static_cast<double>(gpu[i]) - cpu[i]) : 1e30;
    bad += e > tol;
    if (e > worst) worst = e, at = i;
  }
  EXPECT_GT(norm, 0.0) << what << ": all-zero reference (vacuous)";
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << cpu.size() << " off by more than " << tol << "; worst at ("
                     << at / cols << ", " << at % cols << "): gpu " << gpu[at] << " cpu " << cpu[at];
}

// One HC site's pre and post of block `prefix` (attn or ffn side) on `tokens` random states.
void run_hc(const std::string& prefix, int layer, bool ffn_side, int64_t tokens) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(SynthCheckpoint::dir());
  const BlockWeights w = block_weights_load(ckpt, c, prefix, layer);
  const HcWeights& hw = ffn_side ? w.hc_ffn : w.hc_attn;
  const int n = c.hc_mult;
  const int64_t D = c.hidden_size;
  const std::string what = prefix + (ffn_side ? "hc_ffn" : "hc_attn") + ", " + std::to_string(tokens) + " tokens";
  const std::vector<float> state = random_state(c, tokens);
  const std::vector<float> f = bf16_normal(static_cast<size_t>(tokens * D), 1.0f);  // the sub-layer output

  // CPU: hc_pre, the bf16 mode's rounding of y; hc_post, rounding of the next state.
  std::vector<float> y(static_cast<size_t>(tokens * D)), next(state.size());
  HcMix mix;
  hc_pre(hw, c, state.data(), tokens, y.data(), mix);
  bf16_round(y.data(), y.size());
  hc_post(c, f.data(), state.data(), mix, tokens, next.data());
  bf16_round(next.data(), next.size());
  double ss = 0;
  for (float v : state) ss += static_cast<double>(v) * v;
  const double state_rms = std::sqrt(ss / static_cast<double>(state.size()));

  CudaStreamBlas gpu;
  const DeviceBlockWeights dw = block_weights_upload(w, c);
  const DeviceHc& dhc = ffn_side ? dw.hc_ffn : dw.hc_attn;
  DeviceArena arena(64ull << 20);
  DeviceBuffer<uint16_t> d_state(to_bits(state)), d_y(y.size()), d_f(to_bits(f)), d_next(state.size());
  DeviceBuffer<float> d_post(mix.post.size()), d_comb(mix.comb.size());
  hc_pre_cuda(dhc, c, d_state.p, tokens, d_y.p, {d_post.p, d_comb.p}, gpu.blas, arena, gpu.stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(gpu.stream));
  EXPECT_EQ(arena.used(), 0u) << what;
  expect_within(d_post.get(), mix.post, 1e-4, n, what + " post");
  expect_within(d_comb.get(), mix.comb, 1e-4, n * n, what + " comb");

  // y: within one bf16 step (or 1e-4 of the state's RMS), at most 1% (plus one) not identical.
  const std::vector<float> gy = from_bits(d_y.get());
  size_t differ = 0, bad = 0, at = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (gy[i] == y[i]) continue;
    ++differ;
    const float big = std::max(std::fabs(gy[i]), std::fabs(y[i]));
    const double step = std::ldexp(1.0, std::ilogb(big) - 7);
    if (!std::isfinite(gy[i]) || std::fabs(gy[i] - y[i]) > std::max(step, 1e-4 * state_rms)) {
      if (bad++ == 0) at = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << " y: " << bad << " values more than one bf16 step off; first at (" << at / D << ", "
                     << at % D << "): gpu " << gy[at] << " cpu " << y[at];
  EXPECT_LE(differ * 100, y.size() + 100) << what << " y: " << differ << " of " << y.size() << " not bit-identical";

  // hc_post from the CPU's mix: bitwise.
  DeviceBuffer<float> c_post(mix.post), c_comb(mix.comb);
  hc_post_cuda(c, d_f.p, d_state.p, {c_post.p, c_comb.p}, tokens, d_next.p, gpu.stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(gpu.stream));
  const std::vector<float> gnext = from_bits(d_next.get());
  expect_within(gnext, next, 0.0, n * D, what + " hc_post (bitwise)");
  std::printf("  %s: y %zu of %zu not bit-identical\n", what.c_str(), differ, y.size());
}

TEST(HcCuda, PreAndPostMatchCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const int64_t tokens : {1, 37, 300}) run_hc("layers.0.", 0, false, tokens);
  run_hc("layers.1.", 1, true, 37);
  run_hc("mtp.0.", ModelConfig::tiny().num_layers, true, 37);
}

TEST(HcCuda, ZeroTokensIsANoOpAndPostInPlaceAnError) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(SynthCheckpoint::dir());
  const DeviceBlockWeights dw = block_weights_upload(block_weights_load(ckpt, c, "layers.0.", 0), c);
  CudaStreamBlas gpu;
  DeviceArena arena(1 << 20);
  hc_pre_cuda(dw.hc_attn, c, nullptr, 0, nullptr, {nullptr, nullptr}, gpu.blas, arena, gpu.stream);
  hc_post_cuda(c, nullptr, nullptr, {nullptr, nullptr}, 0, nullptr, gpu.stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(gpu.stream));
  EXPECT_EQ(arena.used(), 0u);
  DeviceBuffer<uint16_t> state(static_cast<size_t>(c.hc_dim())), f(static_cast<size_t>(c.hidden_size));
  DeviceBuffer<float> post(static_cast<size_t>(c.hc_mult)), comb(static_cast<size_t>(c.hc_mult * c.hc_mult));
  EXPECT_THROW(hc_post_cuda(c, f.p, state.p, {post.p, comb.p}, 1, state.p, gpu.stream), Error);
}

}  // namespace
}  // namespace dsv4::model

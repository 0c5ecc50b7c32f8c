// test_layer_stats_cuda.cu: DeviceLayerStats against LayerStats fed the same activations (the
// host copy gets the bf16 values as floats): every consumer's Hessian and token count, the
// sharing (wq_a + wkv, wo_a per group with a row stride, the all-experts w1/w3 Hessian added once
// per pass, batched w2 events), both w2 conventions, absmax and expert counts. The sums differ
// only in fp32 summation order (cuBLAS vs the CPU loop): within 1e-5 of the largest entry.
#include <gtest/gtest.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "calib/layer_stats.h"
#include "calib/layer_stats_cuda.h"
#include "common/check.h"
#include "common/codec.h"
#include "dist/communicator.h"
#include "quant/hessian_cuda.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"

namespace dsv4::calib {
namespace {

struct Activation {
  std::vector<uint16_t> bits;
  std::vector<float> values;
  explicit Activation(size_t n) : bits(n), values(n) {
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (size_t i = 0; i < n; ++i) {
      bits[i] = bf16_encode(g(fresh_rng()));
      values[i] = bf16_decode(bits[i]);
    }
  }
};

void run_case(bool all_experts, W2Input w2, HessianSums sums) {
  constexpr int64_t T = 37, D = 64, I = 48, G = 2, E = 3;
  const std::string p = "layers.1.";
  const std::string e = p + "ffn.experts.";
  cudaStream_t stream;
  cublasHandle_t blas;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  {
    // The keys the plan gives these modules (module_plan.cpp).
    auto key = [&](HessianInput input, model::LinearRole role, int expert) {
      return HessianKey{.layer = 1, .input = input, .role = role, .expert = expert};
    };
    const HessianKey attn = key(HessianInput::kAttnInput, model::LinearRole::kHead, -1);
    const HessianKey wo_a = key(HessianInput::kOwn, model::LinearRole::kAttnWoA, -1);
    auto w13 = [&](int k) { return key(HessianInput::kExpertW13, model::LinearRole::kHead, all_experts ? -2 : k); };
    auto w2_of = [&](int k) { return key(HessianInput::kOwn, model::LinearRole::kExpertW2, k); };
    LayerStats cpu(all_experts, w2, HessianSums::kFp32);
    cpu.want_hessian(p + "attn.wq_a", attn), cpu.want_hessian(p + "attn.wkv", attn);
    cpu.want_hessian(p + "attn.wo_a", wo_a);
    cpu.want_hessian(e + "0.w1", w13(0)), cpu.want_hessian(e + "1.w1", w13(1)), cpu.want_hessian(e + "2.w3", w13(2));
    for (int k = 0; k < E; ++k) cpu.want_hessian(e + std::to_string(k) + ".w2", w2_of(k));
    cpu.want_amax(p + "attn.wkv");
    cpu.want_amax(e + "1.w2");
    DeviceLayerStats gpu(cpu.wants(), w2, sums, blas, stream);

    std::vector<float> weights(static_cast<size_t>(E * T));
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (auto& w : weights) w = u(fresh_rng()) < 0.4f ? 0.0f : u(fresh_rng());
    DeviceBuffer<float> d_weights(weights);
    std::vector<int64_t> rows64 = {0, 3, 5, 9, 11, 20, 36};
    std::vector<int32_t> rows32(rows64.begin(), rows64.end());
    DeviceBuffer<int32_t> d_rows(rows32);

    for (int pass = 0; pass < 2; ++pass) {
      cpu.next_pass(), gpu.next_pass();
      Activation x(T * D), o(T * G * D), h(E * T * I), xr(rows64.size() * D);
      DeviceBuffer<uint16_t> dx(x.bits), dout(o.bits), dh(h.bits), dxr(xr.bits);
      const std::vector<std::string> attn = {p + "attn.wq_a", p + "attn.wkv"};
      cpu.on_tap({.modules = attn, .x = x.values.data(), .rows = T, .cols = D});
      gpu.on_tap({.modules = attn, .x = dx.p, .rows = T, .cols = D, .ld = D});
      for (int g = 0; g < G; ++g) {  // wo_a group slices of a [T, G·D] buffer
        std::vector<float> slice;
        for (int64_t t = 0; t < T; ++t) {
          slice.insert(slice.end(), o.values.begin() + t * G * D + g * D, o.values.begin() + t * G * D + (g + 1) * D);
        }
        cpu.on_tap({.modules = {p + "attn.wo_a"}, .x = slice.data(), .rows = T, .cols = D, .group = g});
        gpu.on_tap({.modules = {p + "attn.wo_a"}, .x = dout.p + g * D, .rows = T, .cols = D, .ld = G * D, .group = g});
      }
      if (all_experts) {
        model::DeviceTapEvent batch{.x = dh.p, .rows = T, .cols = I, .ld = I, .batch = E, .batch_stride = T * I,
                                    .expert = 0, .row_weights = d_weights.p};
        for (int k = 0; k < E; ++k) {
          const std::vector<std::string> w13 = {e + std::to_string(k) + ".w1", e + std::to_string(k) + ".w3"};
          cpu.on_tap({.modules = w13, .x = x.values.data(), .rows = T, .cols = D, .expert = k});
          gpu.on_tap({.modules = w13, .x = dx.p, .rows = T, .cols = D, .ld = D, .expert = k});
          cpu.on_tap({.modules = {e + std::to_string(k) + ".w2"}, .x = h.values.data() + k * T * I, .rows = T,
                      .cols = I, .expert = k, .row_weights = weights.data() + k * T});
          batch.modules.push_back(e + std::to_string(k) + ".w2");
        }
        gpu.on_tap(batch);
      } else {  // routed: expert 1 gets some rows
        const int64_t n = static_cast<int64_t>(rows64.size());
        cpu.on_tap({.modules = {e + "1.w1", e + "1.w3"}, .x = xr.values.data(), .rows = n, .cols = D, .expert = 1,
                    .token_rows = rows64.data()});
        gpu.on_tap({.modules = {e + "1.w1", e + "1.w3"}, .x = dxr.p, .rows = n, .cols = D, .ld = D, .expert = 1,
                    .token_rows = d_rows.p});
        cpu.on_tap({.modules = {e + "1.w2"}, .x = h.values.data(), .rows = n, .cols = I, .expert = 1,
                    .token_rows = rows64.data(), .row_weights = weights.data()});
        gpu.on_tap({.modules = {e + "1.w2"}, .x = dh.p, .rows = n, .cols = I, .ld = I, .expert = 1,
                    .token_rows = d_rows.p, .row_weights = d_weights.p});
      }
      for (int k = 0; k < E; ++k) cpu.on_expert_tokens(p, k, 10 * k + pass), gpu.on_expert_tokens(p, k, 10 * k + pass);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);  // the activations are freed next pass
    }

    LayerStats back(all_experts, w2, sums);
    gpu.download_into(back);
    EXPECT_EQ(back.num_hessians(), cpu.num_hessians());
    EXPECT_EQ(back.expert_tokens(), cpu.expert_tokens());
    EXPECT_EQ(back.amax(p + "attn.wkv"), cpu.amax(p + "attn.wkv"));
    EXPECT_EQ(back.amax(e + "1.w2"), cpu.amax(e + "1.w2"));
    struct Want {
      HessianId id;
      int64_t cols;
    };
    std::vector<Want> checks = {{{attn}, D}, {{wo_a, 0}, D}, {{wo_a, 1}, D}};
    for (int k = 0; k < E; ++k) {
      if (k == 0 || !all_experts) checks.push_back({{w13(k)}, D});
      checks.push_back({{w2_of(k)}, I});
    }
    int compared = 0;
    for (const Want& w : checks) {
      const std::string what = hessian_id_describe(w.id);
      ASSERT_EQ(back.holds(w.id), cpu.holds(w.id)) << what;
      if (!cpu.holds(w.id)) continue;
      const quant::HessianResult a = back.hessian(w.id, w.cols), b = cpu.hessian(w.id, w.cols);
      ASSERT_EQ(a.num_tokens, b.num_tokens) << what;
      float scale = 0.0f;
      for (float v : b.h) scale = std::max(scale, std::fabs(v));
      for (size_t i = 0; i < b.h.size(); ++i) ASSERT_NEAR(a.h[i], b.h[i], 1e-5f * scale) << what << " entry " << i;
      ++compared;
    }
    EXPECT_GE(compared, all_experts ? 7 : 5);

    // The sums left on the GPU (the one-rank pipeline's path), handed over: the same counts,
    // reduced in place (one rank: unchanged; exact limbs rounded to fp32 on the GPU), finalized
    // there to the host finalize's bits (for exact sums: the device rounding is the host's); the
    // ones a CPU solve needs come over on request, and hessian() refuses the rest.
    LayerStats kept(all_experts, w2, sums);
    gpu.download_into(kept, nullptr, /*sums_stay=*/true);
    EXPECT_EQ(gpu.num_hessians(), 0u);  // kept owns them now
    EXPECT_EQ(kept.num_hessians(), cpu.num_hessians());
    EXPECT_EQ(kept.expert_tokens(), cpu.expert_tokens());
    EXPECT_EQ(kept.amax(p + "attn.wkv"), cpu.amax(p + "attn.wkv"));
    std::unique_ptr<dist::Communicator> self = dist::communicator_self();
    std::map<HessianKey, std::set<int>> solvers;
    for (const Want& w : checks) solvers[w.id.key] = {0};
    kept.reduce_to_owners(*self, solvers, E);
    EXPECT_EQ(kept.expert_tokens(), cpu.expert_tokens());
    DeviceBuffer<float> h_dev(static_cast<size_t>(std::max(D, I) * std::max(D, I)));
    for (const Want& w : checks) {
      const std::string what = hessian_id_describe(w.id);
      if (!cpu.holds(w.id)) {
        EXPECT_EQ(kept.device_hessian(w.id, w.cols).sum, nullptr) << what;
        continue;
      }
      ASSERT_TRUE(kept.hessian_on_device(w.id)) << what;
      const LayerStats::DeviceSum d = kept.device_hessian(w.id, w.cols);
      const quant::HessianResult want = back.hessian(w.id, w.cols);
      ASSERT_EQ(d.tokens, want.num_tokens) << what;
      quant::hessian_finalize_cuda(d.sum, d.tokens, w.cols, h_dev.p, nullptr);
      std::vector<float> got(want.h.size());
      ASSERT_EQ(cudaMemcpy(got.data(), h_dev.p, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_TRUE(got == want.h) << what;
    }
    EXPECT_THROW(kept.hessian({wo_a, 0}, D), Error);
    kept.hessians_to_host({wo_a});
    for (int g = 0; g < G; ++g) {
      EXPECT_FALSE(kept.hessian_on_device({wo_a, g}));
      EXPECT_TRUE(kept.hessian({wo_a, g}, D).h == back.hessian({wo_a, g}, D).h) << g;
    }
    EXPECT_TRUE(kept.hessian_on_device({attn}));
    EXPECT_THROW(kept.hessian({attn}, D), Error);
    EXPECT_THROW(kept.device_hessian({wo_a, 0}, D), Error);  // on the host now
  }
  cublasDestroy(blas);
  cudaStreamDestroy(stream);
}

TEST(DeviceLayerStats, RoutedTapsMatchLayerStats) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const HessianSums sums : {HessianSums::kFp32, HessianSums::kExact}) {
    run_case(false, W2Input::kUnweighted, sums);
    run_case(false, W2Input::kWeighted, sums);
  }
}

TEST(DeviceLayerStats, AllExpertsTapsMatchLayerStats) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const HessianSums sums : {HessianSums::kFp32, HessianSums::kExact}) {
    run_case(true, W2Input::kUnweighted, sums);
    run_case(true, W2Input::kWeighted, sums);
  }
}

// Exact sums: the same forward calls' rows (units) in any order give the same bits (a split
// between ranks is the same integer sum in another grouping: test_hessian_exact.cpp and
// test_hessian_exact_cuda.cu show the GPU's limbs are the CPU's).
TEST(DeviceLayerStats, ExactSumsDoNotDependOnTheOrderOfUnits) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  constexpr int64_t T = 53, D = 96;
  cudaStream_t stream;
  cublasHandle_t blas;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  {
    const std::string m = "layers.0.attn.wq_a";
    const HessianKey key{.layer = 0, .input = HessianInput::kAttnInput, .role = model::LinearRole::kHead, .expert = -1};
    StatsWants wants;
    wants.hessians[m] = key;
    std::vector<Activation> units;
    for (int u = 0; u < 6; ++u) units.emplace_back(static_cast<size_t>(T * D));
    for (int u = 0; u < 6; ++u) {  // very different scales, so that fp32 sums would round
      for (size_t i = 0; i < units[static_cast<size_t>(u)].bits.size(); ++i) {
        const float v = bf16_decode(units[static_cast<size_t>(u)].bits[i]) * std::pow(8.0f, static_cast<float>(u));
        units[static_cast<size_t>(u)].bits[i] = bf16_encode(v);
      }
    }
    auto collect = [&](const std::vector<int>& order) {
      DeviceLayerStats gpu(wants, W2Input::kUnweighted, HessianSums::kExact, blas, stream);
      for (int u : order) {
        DeviceBuffer<uint16_t> dx(units[static_cast<size_t>(u)].bits);
        gpu.next_pass();
        gpu.on_tap({.modules = {m}, .x = dx.p, .rows = T, .cols = D, .ld = D});
        EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      }
      LayerStats host(false, W2Input::kUnweighted, HessianSums::kExact);
      host.want_hessian(m, key);
      gpu.download_into(host);
      return host;
    };
    const std::vector<float> forward = collect({0, 1, 2, 3, 4, 5}).hessian({key}, D).h;
    EXPECT_EQ(collect({5, 3, 1, 0, 2, 4}).hessian({key}, D).h, forward);
  }
  cublasDestroy(blas);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace dsv4::calib

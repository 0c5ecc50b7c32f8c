// test_moe_cuda.cu: moe_forward_cuda (model/forward_cuda.h, model/moe_cuda.cu) against its CPU
// reference moe_forward (model/moe.h) in the bf16 numeric mode, on the MoE sub-layer alone, on a
// fresh random tiny checkpoint: hash routing (layer 0), learned routing (layers 1 and 3, the MTP
// block), 1, 40 and 300 tokens, bf16 inputs drawn fresh each run. The all-experts mode (every
// expert on every token, for the taps) must not change the output. Zero tokens is a no-op. CUDA
// build; skips without a device unless DSV4_REQUIRE_GPU=1.
// Tolerance: tests/model/sublayer_test_util.h's judge against the CPU in fp32 mode (the two bf16
// forwards differ in fp32 summation order and expf/log1pf bits; a near-tied top-k routing choice
// can flip a token). The all-experts output: bitwise the routed one.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/check.h"
#include "common/device_arena.h"
#include "common/safetensors.h"
#include "model/block_weights.h"
#include "model/forward_cuda.h"
#include "model/moe.h"
#include "tests/cuda_handles.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"
#include "tests/model/sublayer_test_util.h"

namespace dsv4::model {
namespace {

using namespace sublayer_test;

// Takes the taps and drops them: the all-experts mode runs its dense expert pass only with a sink.
struct DropTaps : DeviceTapSink {
  void on_tap(const DeviceTapEvent&) override {}
};

// The MoE sub-layer of block `prefix` on `tokens` random rows, on both sides.
void run_moe(const std::string& prefix, int layer, int64_t tokens) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(SynthCheckpoint::dir());
  const BlockWeights w = block_weights_load(ckpt, c, prefix, layer);
  const int64_t D = c.hidden_size;
  const std::string what = prefix + "ffn (" + (w.spec.routing == RoutingKind::kHash ? "hash" : "learned") +
                           " routing), " + std::to_string(tokens) + " tokens";
  const std::vector<float> x = bf16_normal(static_cast<size_t>(tokens * D), 1.0f);
  std::vector<int64_t> ids(static_cast<size_t>(tokens));
  for (int64_t& id : ids) id = 3 + static_cast<int64_t>(fresh_rng()() % (c.vocab_size - 3));

  std::vector<float> cpu(x.size()), exact(x.size());
  moe_forward(w.ffn, c, w.spec, x.data(), ids.data(), tokens, cpu.data(), {NumericMode::kBf16, nullptr, prefix, false});
  moe_forward(w.ffn, c, w.spec, x.data(), ids.data(), tokens, exact.data(), {NumericMode::kFp32, nullptr, prefix, false});

  CudaStreamBlas gpu;
  const DeviceBlockWeights dw = block_weights_upload(w, c);
  DeviceArena arena(256ull << 20);
  DeviceBuffer<uint16_t> d_x(to_bits(x)), d_out(x.size()), d_all(x.size());
  DeviceBuffer<int64_t> d_ids(ids);
  CudaForwardContext ctx{.stream = gpu.stream, .blas = gpu.blas, .arena = &arena, .taps = nullptr, .prefix = prefix};
  moe_forward_cuda(dw.ffn, c, dw.spec, d_x.p, d_ids.p, tokens, d_out.p, ctx);
  DropTaps drop;
  CudaForwardContext all = ctx;
  all.taps = &drop;
  all.all_experts = true;
  all.expert_batch = 3;
  moe_forward_cuda(dw.ffn, c, dw.spec, d_x.p, d_ids.p, tokens, d_all.p, all);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(gpu.stream));
  EXPECT_EQ(arena.used(), 0u) << what;
  const std::vector<uint16_t> out_bits = d_out.get();
  expect_bf16_forward_close(from_bits(out_bits), cpu, exact, D, what);
  EXPECT_EQ(d_all.get(), out_bits) << what << ": the all-experts mode changed the output";
}

TEST(MoeCuda, HashRoutedLayerMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const int64_t tokens : {1, 40, 300}) run_moe("layers.0.", 0, tokens);
}

TEST(MoeCuda, LearnedRoutedLayersMatchCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  for (const int64_t tokens : {1, 40, 300}) run_moe("layers.1.", 1, tokens);
  run_moe("layers.3.", 3, 40);
  run_moe("mtp.0.", ModelConfig::tiny().num_layers, 40);
}

TEST(MoeCuda, ZeroTokensIsANoOp) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(SynthCheckpoint::dir());
  const DeviceBlockWeights dw = block_weights_upload(block_weights_load(ckpt, c, "layers.1.", 1), c);
  CudaStreamBlas gpu;
  DeviceArena arena(1 << 20);
  CudaForwardContext ctx{.stream = gpu.stream, .blas = gpu.blas, .arena = &arena, .prefix = "layers.1."};
  moe_forward_cuda(dw.ffn, c, dw.spec, nullptr, nullptr, 0, nullptr, ctx);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(gpu.stream));
  EXPECT_EQ(arena.used(), 0u);
}

}  // namespace
}  // namespace dsv4::model

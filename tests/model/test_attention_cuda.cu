// test_attention_cuda.cu: attention_forward_cuda (model/forward_cuda.h, model/attention_cuda.cu
// with the compressor and indexer of attention_compressor_cuda.cu) against its CPU reference
// attention_forward (model/attention.h) in the bf16 numeric mode, on the attention sub-layer
// alone, several sequences per call, on a fresh random tiny checkpoint: sliding window (layer 0,
// tokens past the window), CSA with indexer top-k (layer 1, 34 entries > index_topk 4), CSA with
// every entry visible (layer 3), HCA with one entry visible from token 127 (layer 2), the MTP
// block; edges: one token, and a CSA sequence shorter than the compression ratio (no entries).
// Inputs are bf16 values drawn fresh each run. Zero sequences is a no-op. CUDA build; skips
// without a device unless DSV4_REQUIRE_GPU=1.
// Tolerance: tests/model/sublayer_test_util.h's judge against the CPU in fp32 mode (the two bf16
// forwards differ in fp32 summation order and expf bits; one flipped kv value moves the output of
// every query of its window, and a near-tied indexer top-k choice can move a whole token).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/check.h"
#include "common/device_arena.h"
#include "common/safetensors.h"
#include "model/attention.h"
#include "model/block_weights.h"
#include "model/forward_cuda.h"
#include "model/rope.h"
#include "tests/cuda_handles.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"
#include "tests/model/sublayer_test_util.h"

namespace dsv4::model {
namespace {

using namespace sublayer_test;

// The attention sub-layer of block `prefix` on `sequences` × `tokens` random rows, on both sides.
void run_attention(const std::string& prefix, int layer, int64_t sequences, int64_t tokens) {
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(SynthCheckpoint::dir());
  const BlockWeights w = block_weights_load(ckpt, c, prefix, layer);
  const RopeTable rope = rope_table_build(c, rope_is_compressed(w.spec), tokens);
  const int64_t D = c.hidden_size, rows = sequences * tokens;
  const std::string what = prefix + "attn (ratio " + std::to_string(w.spec.compress_ratio) + "), " +
                           std::to_string(sequences) + " x " + std::to_string(tokens) + " tokens";
  // x_attn is an RMSNorm output in the forward: unit RMS.
  const std::vector<float> x = bf16_normal(static_cast<size_t>(rows * D), 1.0f);

  std::vector<float> cpu(x.size()), exact(x.size());
  for (int64_t s = 0; s < sequences; ++s) {
    const float* xs = x.data() + s * tokens * D;
    attention_forward(w.attn, c, w.spec, rope, xs, tokens, cpu.data() + s * tokens * D,
                      {NumericMode::kBf16, nullptr, prefix, false});
    attention_forward(w.attn, c, w.spec, rope, xs, tokens, exact.data() + s * tokens * D,
                      {NumericMode::kFp32, nullptr, prefix, false});
  }

  CudaStreamBlas gpu;
  const DeviceBlockWeights dw = block_weights_upload(w, c);
  const DeviceRopeTable drope(rope);
  DeviceArena arena(256ull << 20);
  DeviceBuffer<uint16_t> d_x(to_bits(x)), d_out(x.size());
  CudaForwardContext ctx{.stream = gpu.stream, .blas = gpu.blas, .arena = &arena, .taps = nullptr, .prefix = prefix};
  attention_forward_cuda(dw.attn, c, dw.spec, drope.view(), d_x.p, sequences, tokens, d_out.p, ctx);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(gpu.stream));
  EXPECT_EQ(arena.used(), 0u) << what;
  expect_bf16_forward_close(from_bits(d_out.get()), cpu, exact, D, what);
}

TEST(AttentionCuda, SlidingWindowLayerMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_attention("layers.0.", 0, 3, 40);  // window 16
  run_attention("layers.0.", 0, 1, 1);
}

TEST(AttentionCuda, CsaLayerWithIndexerTopKMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_attention("layers.1.", 1, 2, 136);  // 34 entries > index_topk 4: indexer picks
}

TEST(AttentionCuda, CsaLayerWithEveryEntryVisibleMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_attention("layers.3.", 3, 3, 12);  // 3 entries <= index_topk
  run_attention("layers.3.", 3, 2, 3);   // shorter than the ratio 4: no entries at all
}

TEST(AttentionCuda, HcaLayerMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_attention("layers.2.", 2, 2, 136);  // ratio 128: one entry, visible from token 127
}

TEST(AttentionCuda, MtpBlockMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_attention("mtp.0.", ModelConfig::tiny().num_layers, 2, 24);
}

TEST(AttentionCuda, ZeroSequencesIsANoOp) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(SynthCheckpoint::dir());
  const BlockWeights w = block_weights_load(ckpt, c, "layers.1.", 1);
  const DeviceBlockWeights dw = block_weights_upload(w, c);
  const DeviceRopeTable drope(rope_table_build(c, rope_is_compressed(w.spec), 8));
  CudaStreamBlas gpu;
  DeviceArena arena(1 << 20);
  CudaForwardContext ctx{.stream = gpu.stream, .blas = gpu.blas, .arena = &arena, .prefix = "layers.1."};
  attention_forward_cuda(dw.attn, c, dw.spec, drope.view(), nullptr, 0, 8, nullptr, ctx);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(gpu.stream));
  EXPECT_EQ(arena.used(), 0u);
}

}  // namespace
}  // namespace dsv4::model

// forward_layer.cu: one full-width DeepSeek-V4-Flash block forward on the GPU (block_forward_cuda)
// for one rank's share of calibration data, 96 samples × 512 tokens by default, with random bf16
// weights made on the device (the timing does not depend on the values; they are scaled like
// trained weights so routing and softmaxes behave). Three passes per layer kind:
//   plain         - the forward alone (pass B of the pipeline)
//   taps          - with a sink that takes every tap event (routed experts, pass A without
//                   all-experts mode)
//   all-experts   - every expert also on every token for the taps (pass A, w2 inputs in batches)
// The sink does no work, so the taps rows measure the forward's own cost of producing them.
//
//   bench_forward_layer [SAMPLES] [TOKENS]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/cuda_timing.h"
#include "common/codec_inline.h"
#include "common/cuda_grid.h"
#include "common/device_arena.h"
#include "model/forward_cuda.h"
#include "model/rope.h"

using namespace dsv4;
using namespace dsv4::model;

namespace {

__global__ void fill_kernel(uint16_t* bf16, float* f32, int64_t n, uint64_t seed, float amp, float offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t z = seed + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f;
    const float v = offset + amp * u;
    if (bf16) bf16[i] = codec::bf16_encode(v);
    if (f32) f32[i] = v;
  }
}

struct Maker {
  DeviceBlockWeights& w;
  uint64_t seed = 1;
  template <typename T>
  T* alloc(size_t n) {
    void* p = nullptr;
    DSV4_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    w.memory.emplace_back(p, [](void* q) { cudaFree(q); });
    w.bytes += n * sizeof(T);
    return static_cast<T*>(p);
  }
  uint16_t* bf16(size_t n, float amp) {
    uint16_t* p = alloc<uint16_t>(n);
    fill_kernel<<<grid_blocks(n, 256, 1 << 16), 256>>>(p, nullptr, n, seed++ << 40, amp, 0.0f);
    return p;
  }
  float* f32(size_t n, float amp, float offset = 0.0f) {
    float* p = alloc<float>(n);
    fill_kernel<<<grid_blocks(n, 256, 1 << 16), 256>>>(nullptr, p, n, seed++ << 40, amp, offset);
    return p;
  }
  DeviceLinear linear(int64_t out, int64_t in) { return {"", out, in, bf16(out * in, 1.7f / std::sqrt(float(in)))}; }
  DeviceCompressor compressor(const ModelConfig& c, int ratio, int series, int64_t dim) {
    return {linear(series * dim, c.hidden_size), linear(series * dim, c.hidden_size), f32(ratio * series * dim, 0.1f),
            f32(dim, 0.0f, 1.0f), ratio, series, dim};
  }
};

DeviceBlockWeights make_block(const ModelConfig& c, int layer) {
  DeviceBlockWeights w;
  w.prefix = "layers." + std::to_string(layer) + ".";
  w.layer = layer;
  w.spec = c.layer(layer);
  Maker m{w};
  const int64_t D = c.hidden_size, Q = c.q_lora_rank, H = c.num_heads, dh = c.head_dim, I = c.moe_intermediate_size;
  const int64_t E = c.n_routed_experts, mixes = c.hc_mix(), flat = c.hc_dim();
  w.attn_norm = m.f32(D, 0.0f, 1.0f);
  w.ffn_norm = m.f32(D, 0.0f, 1.0f);
  for (DeviceHc* hc : {&w.hc_attn, &w.hc_ffn}) *hc = {m.bf16(3 * mixes * flat, 0.01f), m.f32(mixes, 0.5f), m.f32(3, 0.1f, 1.0f)};
  DeviceAttention& a = w.attn;
  a.wq_a = m.linear(Q, D);
  a.wq_b = m.linear(H * dh, Q);
  a.wkv = m.linear(dh, D);
  a.wo_a = m.linear(int64_t{c.o_groups} * c.o_lora_rank, c.o_group_in());
  a.wo_b = m.linear(D, c.o_dim());
  a.q_norm = m.f32(Q, 0.0f, 1.0f);
  a.kv_norm = m.f32(dh, 0.0f, 1.0f);
  a.sink = m.f32(H, 1.0f);
  if (w.spec.has_compressor()) a.compressor = m.compressor(c, w.spec.compress_ratio, w.spec.compressor_series(), dh);
  if (w.spec.has_indexer()) {
    a.indexer = DeviceAttention::Indexer{m.linear(c.index_n_heads * c.index_head_dim, Q), m.linear(c.index_n_heads, D),
                                         m.compressor(c, w.spec.compress_ratio, 2, c.index_head_dim)};
  }
  DeviceMoe& f = w.ffn;
  f.gate = m.linear(E, D);
  f.bias = m.f32(E, 0.01f);
  f.shared_w13 = m.bf16(2 * I * D, 1.7f / std::sqrt(float(D)));
  f.shared_w2 = m.bf16(D * I, 1.7f / std::sqrt(float(I)));
  f.w13 = m.bf16(E * 2 * I * D, 1.7f / std::sqrt(float(D)));
  f.w2 = m.bf16(E * D * I, 1.7f / std::sqrt(float(I)));
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  return w;
}

struct NullSink : DeviceTapSink {
  int64_t events = 0;
  void on_tap(const DeviceTapEvent&) override { ++events; }
};

}  // namespace

int main(int argc, char** argv) {
  const int64_t samples = argc > 1 ? std::atoll(argv[1]) : 96;
  const int64_t tokens = argc > 2 ? std::atoll(argv[2]) : 512;
  cudaStream_t stream = bench_device_stream();
  cublasHandle_t blas;
  DSV4_CUBLAS_CHECK(cublasCreate(&blas));
  const ModelConfig c = ModelConfig::flash(6, 256);
  const int64_t rows = samples * tokens;
  std::printf("DeepSeek-V4-Flash block, %lld samples x %lld tokens = %lld rows, bf16 mode\n",
              static_cast<long long>(samples), static_cast<long long>(tokens), static_cast<long long>(rows));
  uint16_t *state = nullptr, *next = nullptr;
  int64_t* ids = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&state, rows * c.hc_dim() * 2));
  DSV4_CUDA_CHECK(cudaMalloc(&next, rows * c.hc_dim() * 2));
  DSV4_CUDA_CHECK(cudaMalloc(&ids, rows * 8));
  fill_kernel<<<4096, 256>>>(state, nullptr, rows * c.hc_dim(), 77, 1.0f, 0.0f);
  DSV4_CUDA_CHECK(cudaMemset(ids, 0, rows * 8));
  size_t free_bytes = 0, total = 0;
  // Layers 3 (HCA) and 4 (CSA) of the release schedule (layers 0-2 route by hash table).
  for (int layer : {3, 4}) {
    DeviceBlockWeights w = make_block(c, layer);
    DSV4_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    DeviceArena arena(free_bytes - (2ull << 30));
    const DeviceRopeTable rope(rope_table_build(c, rope_is_compressed(w.spec), tokens));
    NullSink sink;
    std::printf("layer %d (ratio %d): weights %.2f GB, arena %.1f GB\n", layer, w.spec.compress_ratio, w.bytes / 1e9,
                arena.capacity() / 1e9);
    for (int mode = 0; mode < 3; ++mode) {
      CudaForwardContext ctx{.stream = stream, .blas = blas, .arena = &arena, .taps = mode ? &sink : nullptr,
                             .prefix = w.prefix, .all_experts = mode == 2};
      const double ms = cuda_mean_ms(
          [&] { block_forward_cuda(w, c, rope.view(), state, ids, samples, tokens, next, ctx); }, stream, 1, 2);
      std::printf("  %-12s %8.1f ms   arena high water %.2f GB\n", mode == 0 ? "plain" : mode == 1 ? "taps" : "all-experts",
                  ms, arena.high_water() / 1e9);
    }
  }
  cublasDestroy(blas);
  return 0;
}

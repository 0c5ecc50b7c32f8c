// test_block_cuda.cu: the GPU block forward (model/forward_cuda.h) against the CPU block_forward in
// the bf16 numeric mode, on every layer kind of a fresh random tiny checkpoint (sliding + hash
// routing, CSA with and without indexer top-k, HCA with a visible entry, the MTP block), several
// sequences per call: the block output, every tap's activation, the routed rows and the expert
// token counts, in routed and all-experts mode.
//
// Tolerances. Both sides multiply the same bf16 values; they differ in the order of fp32 sums
// (cuBLAS vs OpenBLAS, the attention kernel's reductions) and in the last bits of expf/log1pf. A
// value whose fp32 result lands near a bf16 rounding boundary then rounds one bf16 step apart
// (relative 2^-8 = 0.4%), and later values inherit it. So the checks are: outputs and taps within
// 3% of the tensor's RMS per element and within 0.1% of it on average; routing identical (random
// scores have no near-ties at tiny sizes, which the counts check would reveal).
#include <gtest/gtest.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/codec.h"
#include "common/device_arena.h"
#include "common/safetensors.h"
#include "model/block.h"
#include "model/block_weights.h"
#include "model/forward.h"
#include "model/forward_cuda.h"
#include "model/ops.h"
#include "model/rope.h"
#include "model/synth_model.h"
#include "tests/device_buffer.h"
#include "tests/gpu_test.h"

namespace dsv4::model {
namespace {

struct Captured {
  std::vector<float> x;  // [rows, cols]
  int64_t rows = 0, cols = 0;
  std::vector<int32_t> token_rows;
  std::vector<float> row_weights;
};

// CPU taps, by module (first sequence's rows then the next: one entry per sequence appended).
struct CpuSink : TapSink {
  std::map<std::string, Captured> by_module;
  std::map<std::string, int64_t> expert_tokens;
  int64_t row_offset = 0;  // rows of the sequences before this one
  void on_tap(const TapEvent& e) override {
    for (const auto& m : e.modules) {
      Captured& c = by_module[e.group >= 0 ? m + "#" + std::to_string(e.group) : m];
      c.x.insert(c.x.end(), e.x, e.x + e.rows * e.cols);
      c.rows += e.rows;
      c.cols = e.cols;
      for (int64_t r = 0; r < e.rows; ++r) {
        if (e.token_rows) c.token_rows.push_back(static_cast<int32_t>(e.token_rows[r] + row_offset));
        if (e.row_weights) c.row_weights.push_back(e.row_weights[r]);
      }
    }
  }
  void on_expert_tokens(const std::string& prefix, int expert, int64_t count) override {
    expert_tokens[prefix + "#" + std::to_string(expert)] += count;
  }
};

struct GpuSink : DeviceTapSink {
  cudaStream_t stream = nullptr;
  std::map<std::string, Captured> by_module;
  std::map<std::string, int64_t> expert_tokens;
  void on_tap(const DeviceTapEvent& e) override {
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int b = 0; b < e.batch; ++b) {
      std::vector<std::string> mods = e.batch > 1 ? std::vector<std::string>{e.modules[b]} : e.modules;
      std::vector<uint16_t> bits(static_cast<size_t>(e.rows * e.cols));
      DSV4_CUDA_CHECK(cudaMemcpy2D(bits.data(), e.cols * 2, e.x + b * e.batch_stride, e.ld * 2, e.cols * 2, e.rows,
                                   cudaMemcpyDeviceToHost));
      std::vector<int32_t> rows(e.token_rows ? e.rows : 0);
      std::vector<float> weights(e.row_weights ? e.rows : 0);
      if (e.token_rows) DSV4_CUDA_CHECK(cudaMemcpy(rows.data(), e.token_rows, rows.size() * 4, cudaMemcpyDeviceToHost));
      if (e.row_weights) {
        DSV4_CUDA_CHECK(cudaMemcpy(weights.data(), e.row_weights + b * e.rows, weights.size() * 4, cudaMemcpyDeviceToHost));
      }
      for (const auto& m : mods) {
        Captured& c = by_module[e.group >= 0 ? m + "#" + std::to_string(e.group) : m];
        for (uint16_t v : bits) c.x.push_back(bf16_decode(v));
        c.rows += e.rows;
        c.cols = e.cols;
        c.token_rows.insert(c.token_rows.end(), rows.begin(), rows.end());
        c.row_weights.insert(c.row_weights.end(), weights.begin(), weights.end());
      }
    }
  }
  void on_expert_tokens(const std::string& prefix, int expert, int64_t count) override {
    expert_tokens[prefix + "#" + std::to_string(expert)] += count;
  }
};

struct Diff {
  double max_rel = 0, mean_rel = 0;  // |gpu − cpu| over the cpu tensor's RMS
};

Diff compare(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  EXPECT_EQ(gpu.size(), cpu.size());
  double ss = 0;
  for (float v : cpu) ss += static_cast<double>(v) * v;
  const double rms = std::sqrt(ss / std::max<size_t>(cpu.size(), 1)) + 1e-30;
  Diff d;
  for (size_t i = 0; i < std::min(gpu.size(), cpu.size()); ++i) {
    const double r = std::fabs(static_cast<double>(gpu[i]) - cpu[i]) / rms;
    d.max_rel = std::max(d.max_rel, r);
    d.mean_rel += r;
  }
  d.mean_rel /= std::max<size_t>(cpu.size(), 1);
  return d;
}

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::string& what) {
  const Diff d = compare(gpu, cpu);
  EXPECT_LE(d.max_rel, 0.03) << what;
  EXPECT_LE(d.mean_rel, 1e-3) << what;
  std::printf("  %-44s max %.2e  mean %.2e of RMS\n", what.c_str(), d.max_rel, d.mean_rel);
}

class BlockCuda : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = ::testing::TempDir() + "dsv4_block_cuda_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    seed_ = fresh_rng()();
    synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = dir_, .seed = seed_, .calibration_records = 0});
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  static std::string dir_;
  static uint64_t seed_;

  // Runs block `prefix` on `sequences` × `tokens` on both sides and compares everything.
  void run_block(const std::string& prefix, int layer, int64_t sequences, int64_t tokens, bool all_experts) {
    const ModelConfig c = ModelConfig::tiny();
    const Checkpoint ckpt = Checkpoint::open(dir_);
    const BlockWeights w = block_weights_load(ckpt, c, prefix, layer);
    const RopeTable rope = rope_table_build(c, rope_is_compressed(w.spec), tokens);
    std::printf("%s (ratio %d), %lld x %lld tokens, all_experts %d, checkpoint seed %llu\n", prefix.c_str(),
                w.spec.compress_ratio, static_cast<long long>(sequences), static_cast<long long>(tokens),
                static_cast<int>(all_experts), static_cast<unsigned long long>(seed_));

    // Input: the embedding of random ids, perturbed per stream so the streams differ (bf16 values).
    std::mt19937& rng = fresh_rng();
    std::vector<int64_t> ids(static_cast<size_t>(sequences * tokens));
    for (auto& id : ids) id = 3 + static_cast<int64_t>(rng() % (c.vocab_size - 3));
    const int64_t flat = c.hc_dim();
    std::vector<float> state;
    std::normal_distribution<float> noise(0.0f, 0.02f);
    for (int64_t s = 0; s < sequences; ++s) {
      std::vector<int64_t> seq(ids.begin() + s * tokens, ids.begin() + (s + 1) * tokens);
      std::vector<float> x = model_embed_state(ckpt, c, seq);
      for (float& v : x) v = bf16_decode(bf16_encode(v + noise(rng)));
      state.insert(state.end(), x.begin(), x.end());
    }

    CpuSink cpu_taps;
    std::vector<float> cpu_out(state.size());
    for (int64_t s = 0; s < sequences; ++s) {
      cpu_taps.row_offset = s * tokens;
      ForwardContext ctx{NumericMode::kBf16, &cpu_taps, prefix, all_experts};
      block_forward(w, c, rope, state.data() + s * tokens * flat, ids.data() + s * tokens, tokens,
                    cpu_out.data() + s * tokens * flat, ctx);
    }

    cudaStream_t stream;
    cublasHandle_t blas;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
    {
      const DeviceBlockWeights dw = block_weights_upload(w, c);
      const DeviceRopeTable drope(rope);
      DeviceArena arena(256ull << 20);
      std::vector<uint16_t> bits(state.size());
      for (size_t i = 0; i < state.size(); ++i) bits[i] = bf16_encode(state[i]);
      DeviceBuffer<uint16_t> d_state(bits), d_next(bits.size());
      DeviceBuffer<int64_t> d_ids(ids);
      GpuSink gpu_taps;
      gpu_taps.stream = stream;
      CudaForwardContext ctx{.stream = stream, .blas = blas, .arena = &arena, .taps = &gpu_taps, .prefix = prefix,
                             .all_experts = all_experts, .expert_batch = all_experts ? 3 : 0};
      block_forward_cuda(dw, c, drope.view(), d_state.p, d_ids.p, sequences, tokens, d_next.p, ctx);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      std::vector<float> gpu_out(bits.size());
      const std::vector<uint16_t> out_bits = d_next.get();
      for (size_t i = 0; i < out_bits.size(); ++i) gpu_out[i] = bf16_decode(out_bits[i]);
      expect_close(gpu_out, cpu_out, prefix + " block output");

      EXPECT_EQ(gpu_taps.expert_tokens, cpu_taps.expert_tokens) << "routing differs";
      ASSERT_EQ(gpu_taps.by_module.size(), cpu_taps.by_module.size());
      for (const auto& [module, cpu] : cpu_taps.by_module) {
        const auto it = gpu_taps.by_module.find(module);
        ASSERT_NE(it, gpu_taps.by_module.end()) << module << " has no GPU tap";
        const Captured& gpu = it->second;
        ASSERT_EQ(gpu.rows, cpu.rows) << module;
        ASSERT_EQ(gpu.cols, cpu.cols) << module;
        EXPECT_EQ(gpu.token_rows, cpu.token_rows) << module;
        EXPECT_EQ(gpu.row_weights.size(), cpu.row_weights.size()) << module;
        for (size_t i = 0; i < std::min(gpu.row_weights.size(), cpu.row_weights.size()); ++i) {
          ASSERT_NEAR(gpu.row_weights[i], cpu.row_weights[i], 1e-5f * std::max(1.0f, std::fabs(cpu.row_weights[i])))
              << module << " row weight " << i;
        }
        const Diff d = compare(gpu.x, cpu.x);
        EXPECT_LE(d.max_rel, 0.03) << module;
        EXPECT_LE(d.mean_rel, 1e-3) << module;
      }
      Diff worst;
      std::string worst_module;
      for (const auto& [module, cpu] : cpu_taps.by_module) {
        const Diff d = compare(gpu_taps.by_module[module].x, cpu.x);
        if (d.max_rel >= worst.max_rel) worst = d, worst_module = module;
      }
      std::printf("  %zu tapped modules, worst %s: max %.2e mean %.2e of RMS\n", cpu_taps.by_module.size(),
                  worst_module.c_str(), worst.max_rel, worst.mean_rel);
    }
    cublasDestroy(blas);
    cudaStreamDestroy(stream);
  }
};
std::string BlockCuda::dir_;
uint64_t BlockCuda::seed_ = 0;

TEST_F(BlockCuda, SlidingHashLayerMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_block("layers.0.", 0, 3, 40, false);
}

TEST_F(BlockCuda, CsaLayerWithIndexerTopKMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_block("layers.1.", 1, 2, 136, false);  // 34 entries > index_topk 4: host selection
}

TEST_F(BlockCuda, CsaLayerWithEveryEntryVisibleMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_block("layers.3.", 3, 3, 12, false);  // 3 entries <= index_topk: no scores needed
}

TEST_F(BlockCuda, HcaLayerMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_block("layers.2.", 2, 2, 136, false);  // ratio 128: one entry, visible from token 127
}

TEST_F(BlockCuda, MtpBlockMatchesCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_block("mtp.0.", ModelConfig::tiny().num_layers, 2, 24, false);
}

TEST_F(BlockCuda, AllExpertsTapsMatchCpu) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  run_block("layers.1.", 1, 2, 20, true);
  run_block("layers.0.", 0, 1, 33, true);
}

}  // namespace
}  // namespace dsv4::model

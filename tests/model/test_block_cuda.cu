// test_block_cuda.cu: the GPU block forward (model/forward_cuda.h) against the CPU block_forward in
// the bf16 numeric mode, on every layer kind of a fresh random tiny checkpoint (sliding + hash
// routing, CSA with and without indexer top-k, HCA with a visible entry, the MTP block), several
// sequences per call: the block output, every tap's activation, the routed rows and the expert
// token counts, in routed and all-experts mode.
//
// Tolerances. Both sides multiply the same bf16 values; they differ in the order of fp32 sums
// (cuBLAS vs OpenBLAS, the attention kernel's reductions) and in the last bits of expf/log1pf.
// Most values come out bit-identical (the printout gives the fraction), but now and then a fp32
// result lands next to a bf16 rounding boundary and rounds one bf16 step (2^-8 relative) the other
// way, and everything downstream inherits it: one flipped kv value moves the attention output of
// the window's 128 (tiny: 16) queries, a moved x_ffn can move a near-tied top-k routing choice.
// So the block output is judged against the exact computation, the CPU in fp32 mode, token by
// token: the GPU's median distance from it within 1.5x the CPU bf16 mode's (both are bf16
// rounding noise), and at most 5% of tokens (plus one) further than 10x that median (a near-tied
// router or indexer top-k choice that went the other way moves a whole token). Taps: at most 25%
// of values further than two bf16 steps from the CPU's and a mean of 1e-2 (gross errors; the tiny
// random model's bf16 noise alone reaches 12%), routed-expert taps where both sides routed the same
// rows; routing: at most 1 token in 100 (plus one) routed differently. Distances are
// |a − b| / max(|b|, the tensor's RMS), so a bf16 step of a large value is judged against that
// value and a step of a value near zero against the tensor's scale.
#include <gtest/gtest.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/codec.h"
#include "common/device_arena.h"
#include "common/pinned_host.h"
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

// CPU taps, by mod (first sequence's rows then the next: one entry per sequence appended).
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

// Per element |gpu − cpu| / max(|cpu|, RMS of the cpu tensor): a bf16 step of a large value is
// judged against that value, a step of a value near zero against the tensor's scale.
struct Diff {
  double max_rel = 0, mean_rel = 0;
  double over = 0;   // fraction of values more than two bf16 steps away
  double exact = 0;  // fraction of bit-identical values
};

Diff compare(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  EXPECT_EQ(gpu.size(), cpu.size());
  double ss = 0;
  for (float v : cpu) ss += static_cast<double>(v) * v;
  const double rms = std::sqrt(ss / std::max<size_t>(cpu.size(), 1)) + 1e-30;
  Diff d;
  const size_t n = std::min(gpu.size(), cpu.size());
  for (size_t i = 0; i < n; ++i) {
    const double r = std::fabs(static_cast<double>(gpu[i]) - cpu[i]) / std::max<double>(std::fabs(cpu[i]), rms);
    d.max_rel = std::max(d.max_rel, r);
    d.mean_rel += r;
    d.over += r > 1.0 / 128;
    d.exact += gpu[i] == cpu[i];
  }
  const double count = static_cast<double>(std::max<size_t>(n, 1));
  d.mean_rel /= count, d.over /= count, d.exact /= count;
  return d;
}

// Mean distance (as in compare) of each token's row of `width` values.
std::vector<double> token_distances(const std::vector<float>& a, const std::vector<float>& exact, int64_t width) {
  double ss = 0;
  for (float v : exact) ss += static_cast<double>(v) * v;
  const double rms = std::sqrt(ss / std::max<size_t>(exact.size(), 1)) + 1e-30;
  std::vector<double> out(exact.size() / static_cast<size_t>(width), 0.0);
  for (size_t i = 0; i < out.size() * static_cast<size_t>(width); ++i) {
    out[i / width] += std::fabs(static_cast<double>(a[i]) - exact[i]) / std::max<double>(std::fabs(exact[i]), rms);
  }
  for (double& v : out) v /= static_cast<double>(width);
  return out;
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

void expect_close(const Diff& d, const std::string& what) {
  EXPECT_LE(d.over, 0.25) << what;
  EXPECT_LE(d.mean_rel, 1e-2) << what;
  std::printf("  %-44s %.4f exact, %.4f over 2 steps, mean %.1e, max %.1e\n", what.c_str(), d.exact, d.over,
              d.mean_rel, d.max_rel);
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

    std::vector<float> exact_out(state.size());  // the CPU in fp32 mode: no rounding at all
    for (int64_t s = 0; s < sequences; ++s) {
      ForwardContext ctx{NumericMode::kFp32, nullptr, prefix, false};
      block_forward(w, c, rope, state.data() + s * tokens * flat, ids.data() + s * tokens, tokens,
                    exact_out.data() + s * tokens * flat, ctx);
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
      const Diff d = compare(gpu_out, cpu_out);
      std::printf("  block output vs CPU bf16: %.4f exact, %.4f over 2 steps, mean %.1e, max %.1e\n", d.exact, d.over,
                  d.mean_rel, d.max_rel);
      // Per token, distance from the exact (fp32) output: the GPU's median within 1.5x the CPU bf16
      // mode's. Tokens further than 10x that median are those whose near-tied top-k choice (router
      // or indexer) went the other way; both bf16 forwards flip some, in clumps (one flipped
      // compressed-KV choice moves several queries). Over 31 runs on an H100 the GPU's count
      // followed the CPU bf16 mode's within -1..+3 while both reached 14-16 of 272 on some seeds
      // (an absolute 5% bound failed on those), so the GPU is held to the CPU bf16 mode's count
      // plus 2 + 2% of tokens, and to at most 10% of tokens.
      const std::vector<double> gpu_far = token_distances(gpu_out, exact_out, flat);
      const std::vector<double> cpu_far = token_distances(cpu_out, exact_out, flat);
      const double gpu_median = median(gpu_far), cpu_median = median(cpu_far);
      int64_t outliers = 0, cpu_outliers = 0;
      for (double v : gpu_far) outliers += v > 10 * cpu_median;
      for (double v : cpu_far) cpu_outliers += v > 10 * cpu_median;
      std::printf("  from fp32 per token: GPU median %.2e, CPU bf16 median %.2e, %lld GPU outlier tokens of %zu (CPU bf16: "
                  "%lld)\n",
                  gpu_median, cpu_median, static_cast<long long>(outliers), gpu_far.size(),
                  static_cast<long long>(cpu_outliers));
      EXPECT_LE(gpu_median, 1.5 * cpu_median) << "the GPU is further from fp32 than the CPU bf16 mode";
      const auto tokens_n = static_cast<int64_t>(gpu_far.size());
      EXPECT_LE(outliers, cpu_outliers + 2 + tokens_n / 50) << "more tokens far from fp32 than the CPU bf16 mode";
      EXPECT_LE(outliers, 1 + tokens_n / 10) << "too many tokens far from fp32";

      int64_t moved = 0;
      for (const auto& [key, n] : cpu_taps.expert_tokens) moved += std::abs(gpu_taps.expert_tokens[key] - n);
      EXPECT_LE(moved, 2 * (1 + sequences * tokens / 100)) << "routing differs for more than 1 token in 100";
      ASSERT_EQ(gpu_taps.by_module.size(), cpu_taps.by_module.size());
      for (const auto& [mod, cpu] : cpu_taps.by_module) {
        const auto it = gpu_taps.by_module.find(mod);
        ASSERT_NE(it, gpu_taps.by_module.end()) << mod << " has no GPU tap";
        const Captured& gpu = it->second;
        ASSERT_EQ(gpu.cols, cpu.cols) << mod;
        if (gpu.rows != cpu.rows || gpu.token_rows != cpu.token_rows) {
          EXPECT_TRUE(mod.find(".experts.") != std::string::npos && moved > 0) << mod << ": rows differ";
          continue;  // a routing difference (counted above)
        }
        ASSERT_EQ(gpu.row_weights.size(), cpu.row_weights.size()) << mod;
        double weight_err = 0;
        for (size_t i = 0; i < cpu.row_weights.size(); ++i) {
          weight_err = std::max<double>(weight_err, std::fabs(gpu.row_weights[i] - cpu.row_weights[i]));
        }
        // The router sees x_ffn, which carries the attention's rounding flips (and, rarely, a
        // token whose indexer pick flipped).
        EXPECT_LE(weight_err, moved > 0 || w.spec.has_indexer() ? 1.0 : 1e-2) << mod << " routing weights";
        const Diff d = compare(gpu.x, cpu.x);
        EXPECT_LE(d.over, 0.25) << mod;
        EXPECT_LE(d.mean_rel, 1e-2) << mod;
        if (std::getenv("DSV4_TEST_VERBOSE")) expect_close(d, mod);
      }
    }
    cublasDestroy(blas);
    cudaStreamDestroy(stream);
  }
};
std::string BlockCuda::dir_;
uint64_t BlockCuda::seed_ = 0;

std::vector<uint16_t> download(const uint16_t* p, size_t n) {
  std::vector<uint16_t> v(n);
  DSV4_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  return v;
}

// Decoding FP8/MXFP4/BF16 on the GPU from the checkpoint gives the bits of decoding on the CPU and
// uploading, for every linear and expert of every block kind.
TEST_F(BlockCuda, DecodedOnGpuEqualsUploaded) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(dir_);
  const int64_t D = c.hidden_size, I = c.moe_intermediate_size, E = c.n_routed_experts;
  for (int layer = 0; layer <= c.num_layers; ++layer) {
    const std::string prefix = layer < c.num_layers ? "layers." + std::to_string(layer) + "." : "mtp.0.";
    const DeviceBlockWeights up = block_weights_upload(block_weights_load(ckpt, c, prefix, layer), c);
    const DeviceBlockWeights dec = block_weights_decode_cuda(ckpt, c, prefix, layer);
    std::vector<std::pair<const DeviceLinear*, const DeviceLinear*>> pairs = {
        {&up.attn.wq_a, &dec.attn.wq_a}, {&up.attn.wq_b, &dec.attn.wq_b}, {&up.attn.wkv, &dec.attn.wkv},
        {&up.attn.wo_a, &dec.attn.wo_a}, {&up.attn.wo_b, &dec.attn.wo_b}, {&up.ffn.gate, &dec.ffn.gate}};
    ASSERT_EQ(up.attn.compressor.has_value(), dec.attn.compressor.has_value());
    if (up.attn.compressor) pairs.push_back({&up.attn.compressor->wkv, &dec.attn.compressor->wkv});
    if (up.attn.indexer) {
      pairs.push_back({&up.attn.indexer->wq_b, &dec.attn.indexer->wq_b});
      pairs.push_back({&up.attn.indexer->compressor.wgate, &dec.attn.indexer->compressor.wgate});
    }
    for (const auto& [a, b] : pairs) {
      ASSERT_EQ(a->name, b->name);
      EXPECT_EQ(download(a->w, a->out * a->in), download(b->w, b->out * b->in)) << a->name;
    }
    EXPECT_EQ(download(up.ffn.w13, E * 2 * I * D), download(dec.ffn.w13, E * 2 * I * D)) << prefix << " experts w1/w3";
    EXPECT_EQ(download(up.ffn.w2, E * D * I), download(dec.ffn.w2, E * D * I)) << prefix << " experts w2";
    EXPECT_EQ(download(up.ffn.shared_w13, 2 * I * D), download(dec.ffn.shared_w13, 2 * I * D)) << prefix;
    EXPECT_EQ(up.bytes, dec.bytes);
    // The routed experts through a pinned buffer in batches: one that holds a few linears (many
    // batches), and one too small for any (each linear on its own).
    for (const size_t pinned_bytes : {size_t{3} * I * D, size_t{64}}) {
      PinnedHostBuffer pinned(pinned_bytes);
      const DeviceBlockWeights bat = block_weights_decode_cuda(ckpt, c, prefix, layer, &pinned);
      EXPECT_EQ(download(up.ffn.w13, E * 2 * I * D), download(bat.ffn.w13, E * 2 * I * D)) << prefix << " " << pinned_bytes;
      EXPECT_EQ(download(up.ffn.w2, E * D * I), download(bat.ffn.w2, E * D * I)) << prefix << " " << pinned_bytes;
      EXPECT_EQ(download(up.attn.wq_b.w, up.attn.wq_b.out * up.attn.wq_b.in),
                download(bat.attn.wq_b.w, bat.attn.wq_b.out * bat.attn.wq_b.in));
    }
  }
}

// device_block_matrix finds each linear by its release name, the bf16 values the CPU decoded for
// it (routed experts inside the stacked w13/w2, shared experts), and refuses names it lacks.
TEST_F(BlockCuda, BlockMatrixByModuleName) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const ModelConfig c = ModelConfig::tiny();
  const Checkpoint ckpt = Checkpoint::open(dir_);
  const std::string prefix = "layers.1.";
  const BlockWeights host = block_weights_load(ckpt, c, prefix, 1);
  DeviceBlockWeights dev = block_weights_decode_cuda(ckpt, c, prefix, 1);
  auto expect_same = [&](const DenseLinear& l) {
    const DeviceMatrix m = device_block_matrix(dev, c, l.name);
    ASSERT_EQ(m.rows, l.out) << l.name;
    ASSERT_EQ(m.cols, l.in) << l.name;
    const std::vector<uint16_t> got = download(m.w, m.rows * m.cols);
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += bf16_decode(got[i]) != l.w[i];
    EXPECT_EQ(differ, 0u) << l.name;
  };
  expect_same(host.attn.wq_a);
  expect_same(host.attn.wo_a);
  expect_same(host.attn.indexer->compressor.wgate);
  expect_same(host.ffn.shared->w3);
  expect_same(host.ffn.shared->w2);
  for (const int e : {0, c.n_routed_experts - 1}) {
    const auto ex = host.ffn.experts.get(e);
    expect_same(ex->w1);
    expect_same(ex->w3);
    expect_same(ex->w2);
  }
  EXPECT_THROW(device_block_matrix(dev, c, "layers.0.attn.wq_a"), Error);  // another block
  EXPECT_THROW(device_block_matrix(dev, c, prefix + "attn.nope"), Error);
  EXPECT_THROW(device_block_matrix(dev, c, prefix + "ffn.experts." + std::to_string(c.n_routed_experts) + ".w1"), Error);
  EXPECT_THROW(device_block_matrix(dev, c, prefix + "ffn.experts.x.w1"), Error);
  EXPECT_THROW(device_block_matrix(dev, c, prefix + "ffn.experts.0.w4"), Error);
}

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

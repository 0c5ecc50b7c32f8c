// test_pipeline_cuda.cu: the calibration pipeline with its forward passes on the GPU
// (`--device cuda`, calib/gpu_forwarder.h) against the same run with the CPU forward in the same
// numeric mode (bf16), on a fresh random tiny checkpoint, recipe w4a16_mtp (GPTQ on every routed
// expert, all-experts Hessians, FP8 attention re-encoded): both artifacts pass verify; the
// manifest says where the forward ran; the FP8 re-encode is bit-identical (data-free); the GPTQ
// codes agree except for flips. Why flips: the two forwards agree to bf16 rounding noise (see
// tests/model/test_block_cuda.cu), which moves Hessian entries by ~1e-3 relative and, rarely, one
// token's routing; GPTQ rounds each weight to the nearer grid point, so weights near a midpoint
// flip by one step. Bound: at most 2% of the int4 codes of the artifact, and on average at most
// 3e-3 of a code's range (one step of 16) per code.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <random>

#include "calib/calibrate.h"
#include "calib/verify.h"
#include "common/safetensors.h"
#include "model/synth_model.h"
#include "tests/gpu_test.h"

namespace dsv4::calib {
namespace {

namespace fs = std::filesystem;

TEST(PipelineCuda, GpuForwardArtifactMatchesCpuBf16Artifact) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const std::string base = ::testing::TempDir() + "dsv4_pipeline_cuda_" + std::to_string(::getpid());
  fs::remove_all(base);
  const std::string source = base + "/source";
  const uint64_t seed = fresh_rng()();
  model::synth_checkpoint_write(model::ModelConfig::tiny(), {.out_dir = source, .seed = seed});
  auto recipe = [&](const std::string& out) {
    Recipe r = recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/w4a16_mtp.yaml");
    recipe_apply_overrides(r, {.model = source, .dataset = source + "/calib.jsonl", .out = out, .num_samples = 6,
                               .seq_len = 40});
    return r;
  };
  const CalibrateResult cpu = calibrate_run(recipe(base + "/cpu"), {.threads = 4, .progress = false,
                                                                    .mode = model::NumericMode::kBf16});
  const CalibrateResult gpu = calibrate_run(recipe(base + "/gpu"), {.threads = 4, .progress = false,
                                                                    .device = ComputeDevice::kCuda});
  EXPECT_EQ(gpu.manifest["forward"]["device"], "cuda");
  EXPECT_EQ(gpu.manifest["forward"]["numeric_mode"], "bf16");
  EXPECT_EQ(cpu.manifest["forward"]["numeric_mode"], "bf16");
  EXPECT_EQ(gpu.manifest["totals"], cpu.manifest["totals"]);
  for (const std::string& out : {base + "/cpu", base + "/gpu"}) {
    const VerifyReport v = verify_artifact(out, source, {});
    EXPECT_TRUE(v.ok()) << out << "\n" << verify_report_text(v);
  }

  const Checkpoint a = Checkpoint::open(base + "/cpu"), b = Checkpoint::open(base + "/gpu");
  int64_t codes = 0, differ = 0, steps = 0;
  for (const std::string& name : a.names()) {
    ASSERT_TRUE(b.contains(name)) << name;
    const auto x = a.bytes(name), y = b.bytes(name);
    ASSERT_EQ(x.size(), y.size()) << name;
    if (name.ends_with(".weight_packed")) {  // int32 words of eight 4-bit codes
      for (size_t i = 0; i < x.size(); ++i) {
        for (int nib = 0; nib < 2; ++nib) {
          const int cx = (static_cast<int>(x[i]) >> (4 * nib)) & 15, cy = (static_cast<int>(y[i]) >> (4 * nib)) & 15;
          ++codes;
          differ += cx != cy;
          steps += std::abs(cx - cy);
        }
      }
    } else if (name.find(".attn.") != std::string::npos && name.ends_with(".weight")) {
      EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin())) << name << ": the FP8 re-encode is data-free";
    }
  }
  std::printf("checkpoint seed %llu: %lld of %lld int4 codes differ (%.3f%%), %lld steps in all\n",
              static_cast<unsigned long long>(seed), static_cast<long long>(differ), static_cast<long long>(codes),
              100.0 * differ / std::max<int64_t>(codes, 1), static_cast<long long>(steps));
  ASSERT_GT(codes, 0);
  EXPECT_LE(differ, codes / 50);
  EXPECT_LE(static_cast<double>(steps) / codes, 16 * 3e-3);
  fs::remove_all(base);
}

}  // namespace
}  // namespace dsv4::calib

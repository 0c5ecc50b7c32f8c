// test_pipeline.cpp: whole calibration runs on the tiny synthetic checkpoint: every shipped
// recipe produces the planned artifact; GPTQ beats RTN on the layer Hessians; all-experts
// Hessians see every token; FP8 attention is re-encoded bit-exactly; propagate_error changes only
// the layers after the first; preflight failures write nothing.
#include <gtest/gtest.h>


#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "calib/artifact_config.h"
#include "calib/calibrate.h"
#include "common/check.h"
#include "common/codec.h"
#include "common/device.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "model/synth_model.h"
#include "tests/scratch_dir.h"

namespace dsv4::calib {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  return dsv4::testing::scratch_path(name);
}

// One tiny checkpoint (with its calib.jsonl) for the whole suite.
const std::string& tiny_source() {
  static const std::string dir = [] {
    const std::string d = temp_dir("source");
    model::synth_checkpoint_write(model::ModelConfig::tiny(), {.out_dir = d, .seed = 3});
    return d;
  }();
  return dir;
}

Recipe tiny_recipe(const std::string& file, const std::string& out, int64_t samples = 4, int64_t seq_len = 32) {
  Recipe r = recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/" + file);
  recipe_apply_overrides(r, {.model = tiny_source(), .dataset = tiny_source() + "/calib.jsonl", .out = out,
                             .num_samples = samples, .seq_len = seq_len});
  return r;
}

CalibrateResult run(const Recipe& r) { return calibrate_run(r, {.threads = 2, .progress = false}); }

std::vector<std::byte> bytes_of(const Checkpoint& c, const std::string& name) {
  const auto b = c.bytes(name);
  return {b.begin(), b.end()};
}

TEST(Pipeline, W4a16MtpGptqArtifact) {
  const std::string out = temp_dir("w4a16_mtp");
  const CalibrateResult res = run(tiny_recipe("w4a16_mtp.yaml", out));
  const auto& totals = res.manifest["totals"];
  EXPECT_EQ(totals["gptq"], 4 * 8 * 3);      // every routed expert of the 4 main layers
  EXPECT_EQ(totals["fp8_reencode"], 4 * 4);  // wq_a, wq_b, wkv, wo_b
  EXPECT_EQ(totals["rtn"], 0);
  EXPECT_EQ(totals["fallbacks"], 0);

  const Checkpoint a = Checkpoint::open(out), s = Checkpoint::open(tiny_source());
  // Routed experts: pack-quantized, no source .scale, no weight left.
  for (const char* t : {"weight_packed", "weight_scale", "weight_shape"}) {
    EXPECT_TRUE(a.contains(std::string("layers.2.ffn.experts.5.w2.") + t)) << t;
  }
  EXPECT_EQ(a.info("layers.2.ffn.experts.5.w2.weight_packed").shape, (std::vector<int64_t>{256, 16}));
  for (const std::string& n : a.names()) EXPECT_FALSE(n.ends_with(".scale")) << n;
  // FP8 attention: the source codes kept bit for bit, the e8m0 scales as FP32 powers of two (the
  // dtype vLLM's block-FP8 kernels take), each the exact value of its source byte.
  EXPECT_EQ(bytes_of(a, "layers.1.attn.wq_b.weight"), bytes_of(s, "layers.1.attn.wq_b.weight"));
  EXPECT_EQ(a.info("layers.1.attn.wq_b.weight_scale").dtype, DType::kF32);
  const auto scale = a.bytes("layers.1.attn.wq_b.weight_scale");
  const auto src_scale = s.bytes("layers.1.attn.wq_b.scale");
  ASSERT_EQ(scale.size(), src_scale.size() * 4);
  for (size_t i = 0; i < src_scale.size(); ++i) {
    float f;
    std::memcpy(&f, scale.data() + 4 * i, 4);
    EXPECT_EQ(f, e8m0_decode(static_cast<uint8_t>(src_scale[i])));
  }
  // FP32 and the MTP block: byte copies or the exact BF16 decode; aliases byte-identical.
  EXPECT_EQ(bytes_of(a, "layers.0.hc_attn_fn"), bytes_of(s, "layers.0.hc_attn_fn"));
  EXPECT_EQ(a.info("mtp.0.attn.wq_a.weight").dtype, DType::kBF16);
  EXPECT_EQ(bytes_of(a, "mtp.0.head.weight"), bytes_of(s, "head.weight"));
  EXPECT_EQ(bytes_of(a, "mtp.0.emb.tok_emb.weight"), bytes_of(s, "embed.weight"));
  // Side files.
  for (const char* f : {"config.json", "recipe.yaml", "calib_manifest.json", "tokenizer.json"}) {
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  }
  const auto cfg = nlohmann::json::parse(read_file(out + "/config.json"));
  EXPECT_EQ(cfg["quantization_config"]["format"], "mixed-precision");
  EXPECT_EQ(cfg["quantization_config"]["scale_fmt"], "ue8m0");
  // compressed-tensors >= 0.19 spellings: act-order "weight", the FP8 scales' dtype as stored.
  for (const auto& [name, g] : cfg["quantization_config"]["config_groups"].items()) {
    if (g["format"] == "pack-quantized") {
      EXPECT_EQ(g["weights"]["actorder"], "weight") << name;
    } else {
      EXPECT_EQ(g["format"], "float-quantized") << name;
      EXPECT_EQ(g["weights"]["scale_dtype"], "torch.float32") << name;
    }
  }
  EXPECT_EQ(cfg["compress_ratios"], nlohmann::json::parse(read_file(tiny_source() + "/config.json"))["compress_ratios"]);
}

TEST(Pipeline, GptqBeatsRtnAndAllExpertsSeeEveryToken) {
  const std::string out = temp_dir("gptq_vs_rtn");
  const CalibrateResult res = run(tiny_recipe("w4a16_fp8.yaml", out));
  const int64_t tokens = res.report.tokens;
  ASSERT_GT(tokens, 0);
  int gptq = 0;
  for (const LayerReport& l : res.report.layers) {
    for (const ModuleReport& m : l.modules) {
      if (m.method != SolveMethod::kGptq) continue;
      ++gptq;
      EXPECT_EQ(m.tokens, tokens) << m.module;  // all-experts mode
      EXPECT_LT(m.rel_error, m.rtn_rel_error) << m.module;
    }
    if (l.name.starts_with("layers.")) {
      ASSERT_EQ(l.expert_tokens.size(), 8u) << l.name;
      int64_t routed = 0;
      for (int64_t n : l.expert_tokens) routed += n;
      EXPECT_EQ(routed, tokens * 2) << l.name;  // top-2 routing
    }
  }
  EXPECT_EQ(gptq, 96);
}

TEST(Pipeline, PropagateErrorChangesOnlyLaterLayers) {
  const std::string a_dir = temp_dir("prop_on"), b_dir = temp_dir("prop_off");
  run(tiny_recipe("w4a16_mtp.yaml", a_dir));
  Recipe off = tiny_recipe("w4a16_mtp.yaml", b_dir);
  off.calibration.propagate_error = false;
  run(off);
  const Checkpoint a = Checkpoint::open(a_dir), b = Checkpoint::open(b_dir);
  const std::string l0 = "layers.0.ffn.experts.3.w1.weight_packed", l3 = "layers.3.ffn.experts.3.w1.weight_packed";
  EXPECT_EQ(bytes_of(a, l0), bytes_of(b, l0));
  EXPECT_NE(bytes_of(a, l3), bytes_of(b, l3));
}

TEST(Pipeline, EveryShippedRecipeRunsOnTiny) {
  for (const char* recipe : {"w4a16_fp8.yaml", "nvfp4_fp8_mtp.yaml", "int4_int8.yaml", "w3a16.yaml"}) {
    SCOPED_TRACE(recipe);
    const std::string out = temp_dir(std::string("all_") + recipe);
    const CalibrateResult res = run(tiny_recipe(recipe, out, 2, 16));
    const Checkpoint a = Checkpoint::open(out);
    EXPECT_EQ(a.num_tensors(), res.manifest["layers"].size() > 0 ? a.num_tensors() : 0);
    const auto cfg = nlohmann::json::parse(read_file(out + "/config.json"));
    Recipe resolved = recipe_load(out + "/recipe.yaml");
    EXPECT_EQ(cfg["quantization_config"]["quantization_status"], "compressed");
    for (const std::string& n : a.names()) ASSERT_FALSE(n.ends_with(".scale")) << n;
    EXPECT_EQ(res.manifest["totals"]["fallbacks"], 0);
  }
}

TEST(Pipeline, DataFreeRecipeNeedsNoDataset) {
  const std::string out = temp_dir("datafree");
  Recipe r = tiny_recipe("int4_int8.yaml", out);
  r.dataset.files.clear();
  const CalibrateResult res = run(r);
  EXPECT_EQ(res.report.samples, 0);
  EXPECT_EQ(res.manifest["totals"]["mxfp4_to_int4"], 96);
}

TEST(Pipeline, PreflightFailuresWriteNothing) {
  // An existing non-empty output directory is never touched.
  const std::string out = temp_dir("occupied");
  make_directories(out);
  write_file_atomic(out + "/keep.txt", "precious");
  try {
    run(tiny_recipe("int4_int8.yaml", out));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not empty"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(out + "/keep.txt"), "precious");
  EXPECT_EQ(std::distance(fs::directory_iterator(out), fs::directory_iterator()), 1);

  // A GPTQ recipe without data names the missing key.
  const std::string out2 = temp_dir("nodata");
  Recipe r = tiny_recipe("w4a16_mtp.yaml", out2);
  r.dataset.files.clear();
  try {
    run(r);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dataset.files"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out2));
}

TEST(Pipeline, CudaDeviceWithoutGpuSaysSoAndLeavesNoArtifact) {
  if (device_count() > 0) GTEST_SKIP() << "a GPU is present: tests/calib/test_pipeline_cuda.cu covers --device cuda";
  const std::string out = temp_dir("nogpu");
  try {
    calibrate_run(tiny_recipe("w4a16_mtp.yaml", out), {.threads = 2, .progress = false, .device = ComputeDevice::kCuda});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    // CPU build: "built without CUDA"; CUDA build on a machine without a GPU: "no usable CUDA device".
    EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out)) << "preflight failures write nothing";
}

TEST(Pipeline, ConfigTargetsResolveAsPlanned) {
  const std::string out = temp_dir("config_check");
  run(tiny_recipe("int4_int8.yaml", out));
  const auto cfg = nlohmann::json::parse(read_file(out + "/config.json"));
  const Recipe r = recipe_load(out + "/recipe.yaml");
  const model::ModelConfig c = model::ModelConfig::tiny();
  const ModulePlan plan = module_plan_build(r, c, 1);
  EXPECT_TRUE(artifact_config_check(cfg["quantization_config"], r, plan, c).empty());
  // Dropping a group's targets is caught.
  nlohmann::json broken = cfg["quantization_config"];
  broken["config_groups"]["group_0"]["targets"] = nlohmann::json::array();
  EXPECT_FALSE(artifact_config_check(broken, r, plan, c).empty());
}

}  // namespace
}  // namespace dsv4::calib

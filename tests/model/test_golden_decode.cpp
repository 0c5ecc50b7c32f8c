// test_golden_decode.cpp: the C++ decoders against an independent reader. The fixture
// tests/golden/tiny_seed1_decode.json was written by tests/golden/check_release_layout.py, which
// decodes `make-model --preset tiny --seed 1` with torch's own float8_e4m3fn / float8_e8m0fnu
// casts and an FP4 lookup table. Regenerate (Python, not in CI):
//   dsv4-calib make-model --preset tiny --seed 1 --out /tmp/tiny1
//   python3 tests/golden/check_release_layout.py /tmp/tiny1 --fixture tests/golden/tiny_seed1_decode.json
// A failure means either a decoder changed or the generator's output for seed 1 changed; both
// must be deliberate.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "common/check.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "model/synth_model.h"
#include "model/weight_decode.h"

namespace dsv4::model {
namespace {

TEST(GoldenDecode, TinySeed1MatchesTorch) {
  const nlohmann::json golden =
      nlohmann::json::parse(read_file(std::string(DSV4_SOURCE_DIR) + "/tests/golden/tiny_seed1_decode.json"));
  ASSERT_EQ(golden["magic"], "dsv4-golden-decode");
  ASSERT_EQ(golden["version"], 1);
  const std::string dir = ::testing::TempDir() + "dsv4_golden_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = dir, .seed = 1});
  const Checkpoint ckpt = Checkpoint::open(dir);
  ASSERT_GE(golden["tensors"].size(), 4u);
  for (const auto& [stem, g] : golden["tensors"].items()) {
    const std::vector<float> v = weight_decode_linear(ckpt, stem, ModelConfig::tiny().fp8_block);
    ASSERT_EQ(static_cast<int64_t>(v.size()), g["shape"][0].get<int64_t>() * g["shape"][1].get<int64_t>()) << stem;
    // Decoded values are exact products of a code and a power of two: bitwise equal.
    for (size_t i = 0; i < 16; ++i) {
      EXPECT_EQ(v[i], g["first"][i].get<float>()) << stem << " first[" << i << "]";
      EXPECT_EQ(v[v.size() - 16 + i], g["last"][i].get<float>()) << stem << " last[" << i << "]";
    }
    double sum = 0, sum_sq = 0;
    for (float x : v) sum += x, sum_sq += static_cast<double>(x) * x;
    // Sums differ only by summation order (double here and in torch): 1e-9 relative to the norm.
    const double scale = std::sqrt(g["sum_sq"].get<double>() * static_cast<double>(v.size()));
    EXPECT_NEAR(sum, g["sum"].get<double>(), 1e-9 * scale) << stem;
    EXPECT_NEAR(sum_sq, g["sum_sq"].get<double>(), 1e-9 * g["sum_sq"].get<double>()) << stem;
    EXPECT_GT(sum_sq, 0.0) << stem << ": all-zero weight";
  }
  // Not an encoded linear: a BF16 weight has no .scale; the error names the tensor.
  try {
    weight_decode_linear(ckpt, "layers.1.attn.compressor.wkv", 128);
    ADD_FAILURE() << "decoded a BF16 weight as an encoded linear";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.1.attn.compressor.wkv.scale"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsv4::model

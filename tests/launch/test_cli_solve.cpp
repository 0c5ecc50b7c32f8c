// test_cli_solve.cpp: `dsv4-calib solve` end to end through the real binary: writes a weight and
// a correlated Hessian (activations with a decaying spectrum, mixed so channels correlate, plus an
// outlier channel), runs W4A16 g128 GPTQ, and checks the JSON report, the output tensors, and
// that GPTQ's rel_error is at most half of round-to-nearest's (the acceptance figure;
// the numbers are printed for docs/PERFORMANCE.md). Bad input gives a named error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/rng.h"
#include "common/safetensors.h"
#include "tests/scratch_dir.h"

namespace dsv4 {
namespace {

std::string temp_dir() {
  const std::string d = dsv4::testing::scratch_path("cli_solve");
  std::filesystem::create_directories(d);
  return d;
}

void write_f32(const std::string& path, const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
  SafetensorsWriter w(path, {{name, DType::kF32, shape}});
  w.write(name, std::as_bytes(std::span<const float>(v)));
  w.finish();
}

// Runs the binary; returns its exit code and fills stdout+stderr.
int run(const std::string& args, std::string* output) {
  const std::string log = dsv4::testing::process_scratch_root() + "/cli_output.log";
  const int rc = std::system((std::string(DSV4_BIN) + " " + args + " > " + log + " 2>&1").c_str());
  *output = read_file(log);
  return WEXITSTATUS(rc);
}

TEST(CliSolve, GptqHalvesTheRtnErrorOnACorrelatedHessianAndWritesTheModule) {
  const int64_t rows = 64, cols = 256, tokens = 4096;
  Rng rng(11);
  // Activations: Z·diag(0.9^k) mixed by a random matrix, channel 3 ×20.
  std::vector<float> mix(cols * cols), x(tokens * cols, 0.0f), z(cols);
  for (auto& v : mix) v = rng.normal() / std::sqrt(static_cast<float>(cols));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t k = 0; k < cols; ++k) z[k] = rng.normal() * std::pow(0.97f, static_cast<float>(k));
    for (int64_t j = 0; j < cols; ++j) {
      float s = 0;
      for (int64_t k = 0; k < cols; ++k) s += z[k] * mix[k * cols + j];
      x[t * cols + j] = j == 3 ? 20.0f * s : s;
    }
  }
  std::vector<double> hd(cols * cols, 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j) hd[i * cols + j] += 2.0 * x[t * cols + i] * x[t * cols + j] / tokens;
  std::vector<float> h(hd.begin(), hd.end()), w(rows * cols);
  for (auto& v : w) v = rng.normal() * 0.05f;

  const std::string dir = temp_dir();
  write_f32(dir + "/w.safetensors", "weight", {rows, cols}, w);
  write_f32(dir + "/h.safetensors", "hessian", {cols, cols}, h);
  std::string out;
  ASSERT_EQ(run("solve --weight " + dir + "/w.safetensors --hessian " + dir + "/h.safetensors --scheme W4A16 --out " +
                    dir + "/q.safetensors --json",
                &out),
            0)
      << out;
  const nlohmann::json j = nlohmann::json::parse(out.substr(out.find('{')));
  const double rel = j["rel_error"], rtn = j["rtn_rel_error"];
  std::printf("solve W4A16 g128 [64, 256], correlated H: GPTQ rel_error %.4e, RTN rel_error %.4e, ratio %.3f\n", rel,
              rtn, rel / rtn);
  EXPECT_GT(rtn, 0.0);
  EXPECT_LE(rel, 0.5 * rtn);
  EXPECT_TRUE(j["fallbacks"].empty());
  const auto q = SafetensorsFile::open(dir + "/q.safetensors");
  EXPECT_EQ(q->find("weight_packed")->shape, (std::vector<int64_t>{rows, cols / 8}));
  EXPECT_EQ(q->find("weight_scale")->shape, (std::vector<int64_t>{rows, cols / 128}));
  EXPECT_EQ(q->find("weight_scale")->dtype, DType::kBF16);
  EXPECT_EQ(q->find("weight_shape")->dtype, DType::kI64);
  EXPECT_EQ(q->find("weight_zero_point"), nullptr);  // symmetric
  EXPECT_EQ(q->find("weight_g_idx"), nullptr);       // actorder static writes none
  EXPECT_EQ(q->find("weight_dequant")->shape, (std::vector<int64_t>{rows, cols}));

  // A Hessian that does not match the weight is rejected with both shapes named.
  write_f32(dir + "/h_bad.safetensors", "hessian", {128, 128}, std::vector<float>(128 * 128, 0.0f));
  EXPECT_EQ(run("solve --weight " + dir + "/w.safetensors --hessian " + dir + "/h_bad.safetensors --out " + dir +
                    "/q2.safetensors",
                &out),
            1);
  EXPECT_NE(out.find("[128, 128]"), std::string::npos) << out;
  EXPECT_NE(out.find("[64, 256]"), std::string::npos) << out;
  // A zero Hessian (a module that saw no tokens) falls back to RTN and says so.
  write_f32(dir + "/h0.safetensors", "hessian", {cols, cols}, std::vector<float>(cols * cols, 0.0f));
  ASSERT_EQ(run("solve --weight " + dir + "/w.safetensors --hessian " + dir + "/h0.safetensors --out " + dir +
                    "/q3.safetensors --json",
                &out),
            0)
      << out;
  const nlohmann::json j0 = nlohmann::json::parse(out.substr(out.find('{')));
  ASSERT_EQ(j0["fallbacks"].size(), 1u) << out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsv4

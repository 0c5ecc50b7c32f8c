// test_finite_scan.cpp: non_finite_scan finds NaN and infinity in every float dtype the release
// holds (and nothing in finite values or integers); weight_load_f32 and the artifact writer's
// copies refuse a tensor holding one, naming it, as a user error (issue 26).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "common/finite_scan.h"
#include "common/safetensors.h"
#include "model/block_weights.h"
#include "tests/scratch_dir.h"

namespace dsv4 {
namespace {

template <typename T>
std::span<const std::byte> raw(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}

TEST(FiniteScan, FindsNanAndInfinityInEachFloatDtype) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  const std::vector<float> f32 = {1.0f, -inf, 3.0f, nan};
  EXPECT_EQ(non_finite_scan(raw(f32), DType::kF32).count, 2);
  EXPECT_EQ(non_finite_scan(raw(f32), DType::kF32).first, 1);
  const std::vector<uint16_t> bf16 = {bf16_encode(1.0f), bf16_encode(-2.5f), bf16_encode(nan), 0x7f80};
  EXPECT_EQ(non_finite_scan(raw(bf16), DType::kBF16).count, 2);
  EXPECT_EQ(non_finite_scan(raw(bf16), DType::kBF16).first, 2);
  const std::vector<uint16_t> f16 = {0x3c00, 0x7c00, 0xfe00, 0x7bff};  // 1, +Inf, NaN, max finite
  EXPECT_EQ(non_finite_scan(raw(f16), DType::kF16).count, 2);
  const std::vector<uint8_t> e4m3 = {0x7e, 0x7f, 0xff, 0x00};  // 448, NaN, -NaN, 0
  EXPECT_EQ(non_finite_scan(raw(e4m3), DType::kF8E4M3).count, 2);
  const std::vector<uint8_t> e8m0 = {0x7f, 0xfe, 0xff};  // 2^0, 2^127, NaN
  EXPECT_EQ(non_finite_scan(raw(e8m0), DType::kF8E8M0).count, 1);
  const std::vector<int32_t> ints = {-1, 0x7fffffff};
  EXPECT_EQ(non_finite_scan(raw(ints), DType::kI32).count, 0);
  EXPECT_EQ(non_finite_scan(raw(std::vector<float>{0.0f, -0.0f, 1e-45f, 3e38f}), DType::kF32).first, -1);
}

TEST(FiniteScan, AWeightHoldingNanIsAUserErrorNamingIt) {
  const std::string dir = testing::scratch_path("finite_scan_ckpt");
  std::filesystem::create_directories(dir);
  std::vector<uint16_t> norm(8, bf16_encode(1.0f));
  norm[5] = bf16_encode(std::nanf(""));
  {
    SafetensorsWriter w(dir + "/model.safetensors", {{"layers.0.attn_norm.weight", DType::kBF16, {8}}});
    w.write("layers.0.attn_norm.weight", raw(norm));
    w.finish();
  }
  const Checkpoint ckpt = Checkpoint::open(dir);
  try {
    model::weight_load_f32(ckpt, "layers.0.attn_norm.weight", {8});
    FAIL() << "a NaN weight was loaded";
  } catch (const Error& e) {
    EXPECT_TRUE(e.user());
    EXPECT_NE(e.message().find("layers.0.attn_norm.weight"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("1 NaN or infinite value(s), the first at index 5"), std::string::npos) << e.message();
  }
}

// inspect's and verify's scan: every tensor of a sharded checkpoint, each found one named with its
// shard file and count; integer tensors (bit patterns that would be NaN as floats) are not flagged.
TEST(FiniteScan, CheckpointScanNamesTensorShardAndCount) {
  const std::string dir = testing::scratch_path("finite_scan_sharded");
  std::filesystem::create_directories(dir);
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<uint16_t> a(8, bf16_encode(1.0f)), b(8, bf16_encode(2.0f));
  b[2] = bf16_encode(std::nanf("")), b[7] = bf16_encode(-inf);
  const std::vector<float> c = {1.0f, inf, 3.0f, 4.0f};
  const std::vector<int32_t> ints(4, -1);  // 0xffffffff: a NaN's bits as F32
  const std::vector<TensorSpec> specs = {{"a.weight", DType::kBF16, {8}}, {"b.weight", DType::kBF16, {8}},
                                         {"c.weight", DType::kF32, {4}}, {"d.ids", DType::kI32, {4}}};
  {
    CheckpointWriter w(dir, specs, /*max_shard_bytes=*/16);  // a shard per tensor
    w.write("a.weight", raw(a));
    w.write("b.weight", raw(b));
    w.write("c.weight", raw(c));
    w.write("d.ids", raw(ints));
    w.finish();
  }
  const Checkpoint ckpt = Checkpoint::open(dir);
  const std::vector<TensorNonFinite> found = checkpoint_non_finite(ckpt, 2);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].tensor, "b.weight");
  EXPECT_EQ(found[0].file, ckpt.file_of("b.weight"));
  EXPECT_EQ(found[0].nf.count, 2);
  EXPECT_EQ(found[0].nf.first, 2);
  EXPECT_EQ(found[0].text(), "b.weight in " + ckpt.file_of("b.weight") +
                                 " holds 2 NaN or infinite value(s), the first at index 2");
  EXPECT_EQ(found[1].tensor, "c.weight");
  EXPECT_NE(found[1].file, found[0].file);
  EXPECT_EQ(found[1].nf.count, 1);
}

}  // namespace
}  // namespace dsv4

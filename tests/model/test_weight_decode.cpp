// test_weight_decode.cpp: the CPU reference decoders on hand-computed examples, including
// ragged FP8 blocks, the MXFP4 nibble order (low nibble = even input) and F32 scales.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <cstring>
#include <vector>

#include "common/check.h"
#include "model/weight_decode.h"

namespace dsv4::model {
namespace {

std::vector<std::byte> bytes_of(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

TEST(WeightDecode, Fp8BlockWithRaggedEdgeBlocks) {
  // 3x3 weight, block 2: scale grid 2x2. e4m3 0x38 = 1.0, 0x40 = 2.0, 0xB8 = -1.0, 0x00 = 0.
  const auto codes = bytes_of({0x38, 0x40, 0xB8,   //
                               0x00, 0x38, 0x38,   //
                               0x40, 0xB8, 0x38});
  // e8m0: 127 = 1, 128 = 2, 126 = 0.5, 130 = 8.
  const auto scales = bytes_of({127, 128, 126, 130});
  std::vector<float> out(9);
  weight_decode_fp8_block(codes, scales, DType::kF8E8M0, 3, 3, 2, out.data());
  const std::vector<float> expected = {1, 2, -2,  //
                                       0, 1, 2,   //
                                       1, -0.5, 8};
  EXPECT_EQ(out, expected);
}

TEST(WeightDecode, Fp8BlockWithF32Scales) {
  const auto codes = bytes_of({0x38, 0x40});
  const float s = 0.25f;
  std::vector<std::byte> scales(4);
  std::memcpy(scales.data(), &s, 4);
  std::vector<float> out(2);
  weight_decode_fp8_block(codes, scales, DType::kF32, 1, 2, 128, out.data());
  EXPECT_EQ(out, (std::vector<float>{0.25f, 0.5f}));
}

TEST(WeightDecode, Mxfp4NibbleOrderAndGroupScales) {
  // One row of 64 inputs = 32 bytes, two groups. Byte 0 = 0x21: input 0 = code 1 (0.5),
  // input 1 = code 2 (1.0). Byte 16 (first of group 1) = 0xF7: input 32 = code 7 (6),
  // input 33 = code 15 (-6).
  std::vector<std::byte> packed(32, std::byte{0});
  packed[0] = std::byte{0x21};
  packed[16] = std::byte{0xF7};
  const auto scales = bytes_of({128, 126});  // group 0 x2, group 1 x0.5
  std::vector<float> out(64);
  weight_decode_mxfp4(packed, scales, DType::kF8E8M0, 1, 64, out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[32], 3.0f);
  EXPECT_EQ(out[33], -3.0f);
}

TEST(WeightDecode, RejectsWrongSizesNamingWhatWasExpected) {
  std::vector<float> out(64);
  try {
    weight_decode_mxfp4(std::vector<std::byte>(31), bytes_of({127, 127}), DType::kF8E8M0, 1, 64, out.data());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("31 bytes"));
  }
  EXPECT_THROW(weight_decode_mxfp4(std::vector<std::byte>(32), bytes_of({127}), DType::kF8E8M0, 1, 64,
                                   out.data()),
               Error);
  EXPECT_THROW(weight_decode_mxfp4(std::vector<std::byte>(16), bytes_of({127}), DType::kF8E8M0, 1, 33,
                                   out.data()),
               Error);
  EXPECT_THROW(weight_decode_fp8_block(std::vector<std::byte>(4), bytes_of({127}), DType::kBF16, 2, 2,
                                       128, out.data()),
               Error);
}

}  // namespace
}  // namespace dsv4::model

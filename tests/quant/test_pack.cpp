// test_pack.cpp: quant/pack.h against the spec (gptq_and_formats.md §3.2-3.3): the worked
// examples bit for bit, a bit-stream reference written here independently (one bit at a time),
// seeded round trips for every bit width with padded rows/columns, exhaustive code sweeps, the
// error messages, and the per-format tensor tables.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "quant/pack.h"

namespace dsv4::quant {
namespace {

// Expects `fn` to throw dsv4::Error from "pack" whose message contains `needle`.
template <typename Fn>
void expect_pack_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    FAIL() << "expected a pack error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "pack");
    EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
  }
}

std::vector<int32_t> random_codes(size_t n, int bits, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(-(1 << (bits - 1)), (1 << (bits - 1)) - 1);
  std::vector<int32_t> q(n);
  for (auto& v : q) v = dist(rng);
  return q;
}

// Reference: set the packed bits one at a time from the definition (element k of a row owns
// stream bits [k*b, k*b+b), LSB first; word j = stream bits [32j, 32j+32)).
std::vector<int32_t> reference_pack_rows(const std::vector<int32_t>& q, size_t rows, size_t cols,
                                         int bits) {
  const size_t words = (cols * bits + 31) / 32;
  std::vector<uint32_t> out(rows * words, 0);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < cols; ++k) {
      const uint32_t u = static_cast<uint32_t>(q[r * cols + k] + (1 << (bits - 1)));
      for (int t = 0; t < bits; ++t) {
        const size_t bit = k * bits + t;
        if ((u >> t) & 1u) out[r * words + bit / 32] |= 1u << (bit % 32);
      }
    }
  }
  return std::vector<int32_t>(out.begin(), out.end());
}

TEST(PackInt32, SpecWorkedExampleInt4) {
  const std::vector<int32_t> q = {-8, -1, 0, 1, 2, 3, 7, -5};
  const auto packed = int32_pack(q, 1, 8, 4);
  ASSERT_EQ(packed.size(), 1u);
  EXPECT_EQ(static_cast<uint32_t>(packed[0]), 0x3FBA9870u);
  EXPECT_EQ(int32_unpack(packed, 1, 8, 4), q);
}

TEST(PackInt32, PackedColsMatchSpecShapes) {
  EXPECT_EQ(int32_packed_cols(4096, 4), 512u);  // [N, K/8]
  EXPECT_EQ(int32_packed_cols(4096, 8), 1024u);  // [N, K/4]
  EXPECT_EQ(int32_packed_cols(10, 3), 1u);       // 30 bits
  EXPECT_EQ(int32_packed_cols(11, 3), 2u);       // 33 bits: straddles
  EXPECT_EQ(int32_packed_cols(0, 4), 0u);
}

TEST(PackInt32, Int3StraddlesWords) {
  // 11 codes of 3 bits: element 10 occupies stream bits [30, 33), split over words 0 and 1.
  std::vector<int32_t> q(11, -4);  // u = 0
  q[10] = 3;                       // u = 7 = 0b111
  const auto packed = int32_pack(q, 1, 11, 3);
  ASSERT_EQ(packed.size(), 2u);
  EXPECT_EQ(static_cast<uint32_t>(packed[0]), 0xC0000000u);
  EXPECT_EQ(static_cast<uint32_t>(packed[1]), 0x1u);
  EXPECT_EQ(int32_unpack(packed, 1, 11, 3), q);
}

TEST(PackInt32, RoundTripEveryBitWidthWithPadding) {
  for (int bits = 1; bits <= 8; ++bits) {
    // K = 37 and 100 are not multiples of 32/b for any b > 1 (padding in the last word).
    for (size_t cols : {1u, 7u, 37u, 100u, 128u}) {
      const size_t rows = 5;
      const auto q = random_codes(rows * cols, bits, 1000u * bits + cols);
      const auto packed = int32_pack(q, rows, cols, bits);
      ASSERT_EQ(packed.size(), rows * int32_packed_cols(cols, bits));
      EXPECT_EQ(packed, reference_pack_rows(q, rows, cols, bits))
          << "bits " << bits << " K " << cols;
      EXPECT_EQ(int32_unpack(packed, rows, cols, bits), q) << "bits " << bits << " K " << cols;
    }
  }
}

TEST(PackInt32, ExhaustiveInt4AndInt8Codes) {
  for (int bits : {4, 8}) {
    const int32_t n = 1 << bits;
    std::vector<int32_t> q(n);
    for (int32_t i = 0; i < n; ++i) q[i] = i - n / 2;
    const auto packed = int32_pack(q, 1, n, bits);
    EXPECT_EQ(packed, reference_pack_rows(q, 1, n, bits));
    EXPECT_EQ(int32_unpack(packed, 1, n, bits), q);
    // Each code alone in element 0 lands as u in the low bits of word 0.
    for (int32_t c = -n / 2; c < n / 2; ++c) {
      const auto one = int32_pack(std::vector<int32_t>{c}, 1, 1, bits);
      EXPECT_EQ(static_cast<uint32_t>(one[0]), static_cast<uint32_t>(c + n / 2));
    }
  }
}

TEST(PackInt32, RejectsOutOfRangeCodesAndBadShapes) {
  expect_pack_error([] { int32_pack(std::vector<int32_t>{0, 8}, 1, 2, 4); },
                    "code 8 at [0, 1] is outside the int4 range [-8, 7]");
  expect_pack_error([] { int32_pack(std::vector<int32_t>{-129}, 1, 1, 8); },
                    "code -129 at [0, 0] is outside the int8 range [-128, 127]");
  expect_pack_error([] { int32_pack(std::vector<int32_t>{0, 0, 0}, 1, 2, 4); },
                    "has 3 elements, expected [1, 2] = 2");
  expect_pack_error([] { int32_pack(std::vector<int32_t>{0}, 1, 1, 9); }, "got 9");
  expect_pack_error([] { int32_pack(std::vector<int32_t>{0}, 1, 1, 0); }, "got 0");
  // Nonzero padding after the 3rd int4 element of a row.
  expect_pack_error([] { int32_unpack(std::vector<int32_t>{0x1000}, 1, 3, 4); },
                    "padding bits of row 0");
  expect_pack_error([] { int32_unpack(std::vector<int32_t>{0, 0}, 1, 8, 4); },
                    "weight_packed has 2 elements, expected [1, 1] = 1");
}

TEST(PackZeroPoint, PacksAlongOutputDim) {
  // zp [N=8, G=2]: column 0 is the worked-example row, column 1 is all -8 (u = 0).
  const std::vector<int32_t> col0 = {-8, -1, 0, 1, 2, 3, 7, -5};
  std::vector<int32_t> zp(16);
  for (size_t n = 0; n < 8; ++n) {
    zp[n * 2 + 0] = col0[n];
    zp[n * 2 + 1] = -8;
  }
  const auto packed = zero_point_pack(zp, 8, 2, 4);
  ASSERT_EQ(packed.size(), 2u);  // [ceil(8*4/32), 2] = [1, 2]
  EXPECT_EQ(static_cast<uint32_t>(packed[0]), 0x3FBA9870u);
  EXPECT_EQ(packed[1], 0);
  EXPECT_EQ(zero_point_unpack(packed, 8, 2, 4), zp);
}

TEST(PackZeroPoint, RoundTripMatchesTransposePackTranspose) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (size_t rows : {1u, 9u, 13u, 70u}) {  // N not a multiple of 32/b
      const size_t groups = 3;
      const auto zp = random_codes(rows * groups, bits, 77u * bits + rows);
      // Reference: transpose to [G, N], pack rows, transpose the words back to [W, G].
      std::vector<int32_t> t(groups * rows);
      for (size_t n = 0; n < rows; ++n)
        for (size_t g = 0; g < groups; ++g) t[g * rows + n] = zp[n * groups + g];
      const auto t_packed = reference_pack_rows(t, groups, rows, bits);
      const size_t words = int32_packed_cols(rows, bits);
      std::vector<int32_t> expected(words * groups);
      for (size_t g = 0; g < groups; ++g)
        for (size_t w = 0; w < words; ++w) expected[w * groups + g] = t_packed[g * words + w];

      const auto packed = zero_point_pack(zp, rows, groups, bits);
      EXPECT_EQ(packed, expected) << "bits " << bits << " N " << rows;
      EXPECT_EQ(zero_point_unpack(packed, rows, groups, bits), zp) << "bits " << bits;
    }
  }
}

TEST(PackZeroPoint, RejectsOutOfRangeAndBadPadding) {
  // zp [2, 2]: the out-of-range value sits at row 1, group 0.
  expect_pack_error([] { zero_point_pack(std::vector<int32_t>{0, 0, 9, 0}, 2, 2, 4); },
                    "code 9 at [1, 0] is outside the int4 range [-8, 7]");
  expect_pack_error([] { zero_point_unpack(std::vector<int32_t>{0, 0x100}, 2, 2, 4); },
                    "padding bits of zero-point column 1");
}

TEST(PackFp4, SpecWorkedExample) {
  const std::vector<float> v = {0.5f, -1.0f, 6.0f, -0.0f, 1.5f, -6.0f};
  const auto bytes = fp4_pack(v, 1, 6);
  EXPECT_EQ(bytes, (std::vector<uint8_t>{0xA1, 0x87, 0xF3}));
  const auto back = fp4_unpack(bytes, 1, 6);
  ASSERT_EQ(back.size(), v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(back[i], v[i]);
    EXPECT_EQ(std::signbit(back[i]), std::signbit(v[i])) << i;  // -0 survives
  }
}

TEST(PackFp4, EveryCodePairRoundTrips) {
  // All 256 (even, odd) code pairs in one row of 512 columns, twice over two rows.
  std::vector<uint8_t> codes;
  for (int rep = 0; rep < 2; ++rep)
    for (int hi = 0; hi < 16; ++hi)
      for (int lo = 0; lo < 16; ++lo) {
        codes.push_back(static_cast<uint8_t>(lo));
        codes.push_back(static_cast<uint8_t>(hi));
      }
  const auto bytes = fp4_pack_codes(codes, 2, 512);
  ASSERT_EQ(bytes.size(), 512u);
  for (size_t i = 0; i < bytes.size(); ++i) {
    EXPECT_EQ(bytes[i], static_cast<uint8_t>(codes[2 * i] | (codes[2 * i + 1] << 4)));
    EXPECT_EQ(bytes[i], static_cast<uint8_t>(i % 256));  // lo | hi << 4 enumerates 0..255
  }
  EXPECT_EQ(fp4_unpack_codes(bytes, 2, 512), codes);
  // From values: every code's value packs to that code.
  std::vector<float> values(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) values[i] = e2m1_decode(codes[i]);
  EXPECT_EQ(fp4_pack(values, 2, 512), bytes);
  const auto back = fp4_unpack(bytes, 2, 512);
  for (size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i], values[i]);
    EXPECT_EQ(std::signbit(back[i]), std::signbit(values[i]));
  }
}

TEST(PackFp4, RejectsOddKOffGridAndBadCodes) {
  expect_pack_error([] { fp4_pack(std::vector<float>{0, 0, 0}, 1, 3); }, "got [1, 3]");
  expect_pack_error([] { fp4_pack_codes(std::vector<uint8_t>{0, 0, 0}, 1, 3); }, "got [1, 3]");
  expect_pack_error([] { fp4_unpack_codes(std::vector<uint8_t>{0}, 1, 3); }, "got [1, 3]");
  expect_pack_error([] { fp4_pack(std::vector<float>{0.5f, 0.7f}, 1, 2); },
                    "value 0.7 at [0, 1] is not on the e2m1 grid");
  expect_pack_error([] { fp4_pack(std::vector<float>{0, 0, 8.0f, 0}, 2, 2); },
                    "value 8 at [1, 0] is not on the e2m1 grid");
  expect_pack_error([] { fp4_pack(std::vector<float>{NAN, 0}, 1, 2); }, "not on the e2m1 grid");
  expect_pack_error([] { fp4_pack_codes(std::vector<uint8_t>{0, 16}, 1, 2); },
                    "e2m1 code 16 at [0, 1] is not in [0, 15]");
}

TEST(PackFp8, WrapsTheE4m3Codec) {
  const std::vector<float> v = {0.0f, 1.0f, -2.5f, 448.0f, 1000.0f, -1e9f, 0.001953125f};
  const auto bytes = fp8_pack(v);
  ASSERT_EQ(bytes.size(), v.size());
  EXPECT_EQ(bytes[1], 0x38);  // 1.0 = 0.0111.000
  EXPECT_EQ(bytes[3], 0x7E);  // 448
  EXPECT_EQ(bytes[4], 0x7E);  // saturates
  EXPECT_EQ(bytes[5], 0xFE);  // -448
  EXPECT_EQ(bytes[6], 0x01);  // min subnormal 2^-9
  const auto back = fp8_unpack(bytes);
  EXPECT_EQ(back[2], -2.5f);
  EXPECT_EQ(back[4], 448.0f);
  // Every non-NaN byte survives decode -> encode.
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7F) == 0x7F) continue;
    const auto f = fp8_unpack(std::vector<uint8_t>{static_cast<uint8_t>(b)});
    EXPECT_EQ(fp8_pack(f)[0], b) << b;
  }
  expect_pack_error([] { fp8_pack(std::vector<float>{1.0f, NAN}); }, "NaN at element 1");
}

TEST(PackFormatName, RoundTripsCompressedTensorsStrings) {
  for (auto f : {PackFormat::kPackQuantized, PackFormat::kFloatQuantized,
                 PackFormat::kNvfp4PackQuantized, PackFormat::kMxfp4PackQuantized,
                 PackFormat::kIntQuantized, PackFormat::kNaiveQuantized}) {
    EXPECT_EQ(pack_format_from_name(pack_format_name(f)), f);
  }
  EXPECT_EQ(pack_format_name(PackFormat::kNvfp4PackQuantized), "nvfp4-pack-quantized");
  EXPECT_EQ(pack_format_name(PackFormat::kPackQuantized), "pack-quantized");
  EXPECT_EQ(pack_format_name(PackFormat::kNaiveQuantized), "naive-quantized");
  EXPECT_FALSE(pack_format_from_name("dense").has_value());
}

// Compact rendering of a tensor set for table comparisons: "name:DTYPE[d0,d1]" joined by " ".
std::string render(const std::vector<PackedTensor>& set) {
  std::string s;
  for (const auto& t : set) {
    if (!s.empty()) s += ' ';
    s += t.name + ':' + std::string(dtype_name(t.dtype)) + '[';
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) s += ',';
      s += std::to_string(t.shape[i]);
    }
    s += ']';
  }
  return s;
}

TEST(PackTensorSet, W4A16Group128) {
  PackedTensorSetArgs a{.format = PackFormat::kPackQuantized, .rows = 2048, .cols = 7168,
                        .bits = 4, .scale_layout = PackScaleLayout::kGroup, .group_size = 128};
  EXPECT_EQ(render(packed_tensor_set(a)),
            "weight_packed:I32[2048,896] weight_scale:BF16[2048,56] weight_shape:I64[2]");
  a.actorder_group = true;
  EXPECT_EQ(render(packed_tensor_set(a)),
            "weight_packed:I32[2048,896] weight_scale:BF16[2048,56] weight_shape:I64[2] "
            "weight_g_idx:I32[7168]");
}

TEST(PackTensorSet, W4A16AsymPacksZeroPointsAlongN) {
  PackedTensorSetArgs a{.format = PackFormat::kPackQuantized, .rows = 100, .cols = 300,
                        .bits = 4, .scale_layout = PackScaleLayout::kGroup, .group_size = 128,
                        .symmetric = false, .model_dtype = DType::kF16};
  EXPECT_EQ(render(packed_tensor_set(a)),
            "weight_packed:I32[100,38] weight_scale:F16[100,3] weight_shape:I64[2] "
            "weight_zero_point:I32[13,3]");
}

TEST(PackTensorSet, W8A16Channel) {
  PackedTensorSetArgs a{.format = PackFormat::kPackQuantized, .rows = 512, .cols = 4096,
                        .bits = 8, .scale_layout = PackScaleLayout::kChannel};
  EXPECT_EQ(render(packed_tensor_set(a)),
            "weight_packed:I32[512,1024] weight_scale:BF16[512,1] weight_shape:I64[2]");
  a.actorder_group = true;  // g_idx needs groups
  expect_pack_error([&] { packed_tensor_set(a); }, "actorder=group needs group scales");
}

TEST(PackTensorSet, Fp8Block) {
  PackedTensorSetArgs a{.format = PackFormat::kFloatQuantized, .rows = 1000, .cols = 7168,
                        .bits = 8, .scale_layout = PackScaleLayout::kBlock};
  EXPECT_EQ(render(packed_tensor_set(a)), "weight:F8_E4M3[1000,7168] weight_scale:BF16[8,56]");
  a.scale_layout = PackScaleLayout::kTensor;
  EXPECT_EQ(render(packed_tensor_set(a)), "weight:F8_E4M3[1000,7168] weight_scale:BF16[1]");
  a.symmetric = false;
  expect_pack_error([&] { packed_tensor_set(a); }, "not float-quantized");
}

TEST(PackTensorSet, Nvfp4AndMxfp4) {
  PackedTensorSetArgs nv{.format = PackFormat::kNvfp4PackQuantized, .rows = 256, .cols = 4096,
                         .bits = 4, .scale_layout = PackScaleLayout::kGroup, .group_size = 16};
  EXPECT_EQ(render(packed_tensor_set(nv)),
            "weight_packed:U8[256,2048] weight_scale:F8_E4M3[256,256] "
            "weight_global_scale:F32[1]");
  PackedTensorSetArgs mx{.format = PackFormat::kMxfp4PackQuantized, .rows = 256, .cols = 4096,
                         .bits = 4, .scale_layout = PackScaleLayout::kGroup, .group_size = 32};
  EXPECT_EQ(render(packed_tensor_set(mx)), "weight_packed:U8[256,2048] weight_scale:U8[256,128]");
  mx.group_size = 16;
  expect_pack_error([&] { packed_tensor_set(mx); }, "expected group scales of size 32");
  nv.cols = 4095;
  nv.group_size = 16;
  expect_pack_error([&] { packed_tensor_set(nv); }, "expected an even K");
  nv.cols = 4096;
  nv.actorder_group = true;
  expect_pack_error([&] { packed_tensor_set(nv); }, "only defined for pack-quantized");
}

TEST(PackTensorSet, IntQuantizedW8A8) {
  PackedTensorSetArgs a{.format = PackFormat::kIntQuantized, .rows = 64, .cols = 128, .bits = 8,
                        .scale_layout = PackScaleLayout::kChannel};
  EXPECT_EQ(render(packed_tensor_set(a)), "weight:I8[64,128] weight_scale:BF16[64,1]");
  a.bits = 4;  // W4A8: int4 codes in int8 storage, as compressed-tensors writes them
  EXPECT_EQ(render(packed_tensor_set(a)), "weight:I8[64,128] weight_scale:BF16[64,1]");
  a.bits = 9;
  expect_pack_error([&] { packed_tensor_set(a); }, "expected 1-8 bits for int-quantized");
}

TEST(PackTensorSet, NaiveQuantizedCodesInTheirOwnDtype) {
  PackedTensorSetArgs a{.format = PackFormat::kNaiveQuantized, .rows = 64, .cols = 128, .bits = 8,
                        .scale_layout = PackScaleLayout::kTensor, .float_codes = true};
  EXPECT_EQ(render(packed_tensor_set(a)), "weight:F8_E4M3[64,128] weight_scale:BF16[1]");
  a.float_codes = false;
  a.bits = 4;
  a.scale_layout = PackScaleLayout::kGroup;
  EXPECT_EQ(render(packed_tensor_set(a)), "weight:I8[64,128] weight_scale:BF16[64,1]");
  a.float_codes = true;
  expect_pack_error([&] { packed_tensor_set(a); }, "naive-quantized");
}

}  // namespace
}  // namespace dsv4::quant

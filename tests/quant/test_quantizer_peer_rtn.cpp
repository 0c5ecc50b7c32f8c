// test_quantizer_peer_rtn.cpp: quantizer_rtn with QuotientArith::kBf16Model is llm-compressor's
// round-to-nearest on a BF16 model, bit for bit, against tests/golden/peer_rtn_seed4.safetensors
// (written by tests/golden/make_peer_rtn_fixture.py with llm-compressor 0.14.0.1 and
// compressed-tensors 0.19.0). This is the baseline of every "GPTQ vs RTN" figure (issue 27).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "quant/gptq.h"
#include "quant/quantizer.h"

namespace dsv4::quant {
namespace {

constexpr int64_t kRows = 32, kCols = 512;

std::vector<float> read_f32(const SafetensorsFile& fx, const std::string& name) {
  const TensorInfo* info = fx.find(name);
  EXPECT_NE(info, nullptr) << name;
  if (info == nullptr) return {};
  EXPECT_EQ(info->dtype, DType::kF32) << name;
  EXPECT_EQ(info->shape, (std::vector<int64_t>{kRows, kCols})) << name;
  const auto bytes = fx.bytes(*info);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// Values compared as numbers: torch's round keeps the sign of a zero quotient (-0.0), our integer
// codes have none; the stored code and every error figure are the same.
int64_t count_differ(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

struct Case {
  const char* fixture;  // the tensor prefix in the fixture
  const char* preset;
  bool fp32_quotient_differs;  // whether the fixture can tell the two arithmetics apart
};

TEST(QuantizerPeerRtn, MatchesLlmCompressorOnABf16Model) {
  const auto fx = SafetensorsFile::open(std::string(DSV4_SOURCE_DIR) + "/tests/golden/peer_rtn_seed4.safetensors");
  const std::vector<float> w = read_f32(*fx, "weight");
  ASSERT_FALSE(::testing::Test::HasFailure());
  const Case cases[] = {{"int8_group128", "W8A16", true},
                        {"int8_channel", "W8A16_CHANNEL", true},
                        {"int4_group128", "W4A16", false},
                        {"int4_group128_asym", "W4A16_ASYM", false}};
  for (const Case& c : cases) {
    const std::vector<float> want = read_f32(*fx, std::string(c.fixture) + ".dequant");
    ASSERT_EQ(want.size(), w.size()) << c.fixture;
    const QuantArgs args = quant_args_preset(c.preset);
    const RtnResult peer = quantizer_rtn(args, w.data(), kRows, kCols, kPeerRtnArith);
    EXPECT_EQ(count_differ(peer.dequant, want), 0) << c.fixture << ": values unlike llm-compressor's";
    const RtnResult ours = quantizer_rtn(args, w.data(), kRows, kCols);
    if (c.fp32_quotient_differs) {
      EXPECT_GT(count_differ(ours.dequant, want), 0) << c.fixture << ": the fixture no longer tells them apart";
      // Never worse: the fp32 quotient rounds each value to its nearest code.
      double e_ours = 0, e_peer = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        e_ours += (ours.dequant[i] - w[i]) * double(ours.dequant[i] - w[i]);
        e_peer += (peer.dequant[i] - w[i]) * double(peer.dequant[i] - w[i]);
      }
      EXPECT_LT(e_ours, e_peer) << c.fixture;
    }
  }
}

// Scales other than the model dtype divide in fp32 in compressed-tensors too (a bf16 weight over
// an fp32 scale promotes): the peer arithmetic is then the fp32 one.
TEST(QuantizerPeerRtn, Fp32ScalesKeepTheFp32Quotient) {
  const auto fx = SafetensorsFile::open(std::string(DSV4_SOURCE_DIR) + "/tests/golden/peer_rtn_seed4.safetensors");
  const std::vector<float> w = read_f32(*fx, "weight");
  QuantArgs args = quant_args_preset("W8A16");
  args.scale_dtype = ScaleDType::kF32;
  const RtnResult peer = quantizer_rtn(args, w.data(), kRows, kCols, kPeerRtnArith);
  const RtnResult ours = quantizer_rtn(args, w.data(), kRows, kCols);
  EXPECT_EQ(peer.codes, ours.codes);
}

}  // namespace
}  // namespace dsv4::quant

// test_compressed_module.cpp: a quantized module laid out as compressed-tensors tensors decodes
// back (through the unpackers) to exactly the codes, scales and zero points it came from, for
// each format; compressed_module_decode (quant/unpack.h) gives back the fake-quantized weight bit
// for bit, and names the module and tensor when a layout is broken.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/check.h"
#include "common/codec.h"
#include "common/rng.h"
#include "quant/compressed_module.h"
#include "quant/gptq.h"
#include "quant/quant_scheme.h"
#include "quant/unpack.h"

namespace dsv4::quant {
namespace {

std::vector<float> random_weight(int64_t rows, int64_t cols, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = rng.normal() * 0.05f;
  return w;
}

// A permuted group mapping, as actorder=group writes it: column k in group ((7k) mod cols) / G.
std::vector<int32_t> permuted_g_idx(int64_t cols, int group_size) {
  std::vector<int32_t> g_idx(static_cast<size_t>(cols));
  for (int64_t k = 0; k < cols; ++k) g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(((k * 7) % cols) / group_size);
  return g_idx;
}

template <typename T>
std::vector<T> as(const EncodedTensor& t) {
  std::vector<T> v(t.bytes.size() / sizeof(T));
  std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
  return v;
}

std::map<std::string, EncodedTensor> by_name(std::vector<EncodedTensor> v) {
  std::map<std::string, EncodedTensor> m;
  for (auto& t : v) m[t.name] = std::move(t);
  return m;
}

TEST(CompressedModule, PackQuantizedRoundTripsCodesScalesZeroPointsAndGIdx) {
  const int64_t rows = 16, cols = 256;
  const auto w = random_weight(rows, cols, 1);
  for (const char* preset : {"W4A16", "W4A16_ASYM", "W8A16"}) {
    const QuantArgs a = quant_args_preset(preset);
    const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
    std::vector<int32_t> g_idx(cols);
    for (int64_t c = 0; c < cols; ++c) g_idx[static_cast<size_t>(c)] = static_cast<int32_t>(c / 128);
    auto t = by_name(compressed_module_encode(PackFormat::kPackQuantized, a, r.qparams, r.codes, g_idx, rows, cols));
    ASSERT_TRUE(t.count("weight_packed")) << preset;
    EXPECT_EQ(int32_unpack(as<int32_t>(t["weight_packed"]), rows, cols, a.num_bits), r.codes) << preset;
    const auto scales = as<uint16_t>(t["weight_scale"]);
    ASSERT_EQ(scales.size(), r.qparams.scale.size());
    for (size_t i = 0; i < scales.size(); ++i) EXPECT_EQ(bf16_decode(scales[i]), r.qparams.scale[i]) << preset;
    EXPECT_EQ(as<int64_t>(t["weight_shape"]), (std::vector<int64_t>{rows, cols}));
    EXPECT_EQ(as<int32_t>(t["weight_g_idx"]), g_idx);
    EXPECT_EQ(t.count("weight_zero_point"), a.symmetric ? 0u : 1u) << preset;
    if (!a.symmetric) {
      const auto zp = zero_point_unpack(as<int32_t>(t["weight_zero_point"]), static_cast<size_t>(r.qparams.scale_rows),
                                        static_cast<size_t>(r.qparams.scale_cols), a.num_bits);
      for (size_t i = 0; i < zp.size(); ++i) EXPECT_EQ(zp[i], static_cast<int32_t>(r.qparams.zero_point[i]));
    }
  }
}

TEST(CompressedModule, FloatFormats) {
  const int64_t rows = 256, cols = 256;
  const auto w = random_weight(rows, cols, 2);
  {
    const QuantScheme s = quant_scheme_preset("FP8_BLOCK");
    const QuantArgs& a = s.weights;
    const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
    EXPECT_EQ(quant_scheme_format(s), PackFormat::kFloatQuantized);
    auto t = by_name(compressed_module_encode(quant_scheme_format(s), a, r.qparams, r.codes, {}, rows, cols));
    const auto bytes = as<uint8_t>(t["weight"]);
    for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], static_cast<uint8_t>(r.codes[i]));
    EXPECT_EQ(t["weight_scale"].shape, (std::vector<int64_t>{2, 2}));
  }
  {
    const QuantArgs a = quant_args_preset("NVFP4A16");
    const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
    auto t = by_name(compressed_module_encode(PackFormat::kNvfp4PackQuantized, a, r.qparams, r.codes, {}, rows, cols));
    const auto codes = fp4_unpack_codes(as<uint8_t>(t["weight_packed"]), rows, cols);
    for (size_t i = 0; i < codes.size(); ++i) ASSERT_EQ(codes[i], static_cast<uint8_t>(r.codes[i]));
    EXPECT_EQ(as<float>(t["weight_global_scale"]), std::vector<float>{r.qparams.global_scale});
    EXPECT_EQ(t["weight_scale"].dtype, DType::kF8E4M3);
  }
  {
    const QuantArgs a = quant_args_preset("MXFP4A16");
    const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
    auto t = by_name(compressed_module_encode(PackFormat::kMxfp4PackQuantized, a, r.qparams, r.codes, {}, rows, cols));
    EXPECT_EQ(as<uint8_t>(t["weight_scale"]), r.qparams.scale_e8m0);
  }
}

TEST(CompressedModule, IntAndNaiveQuantizedHoldTheCodesUnpacked) {
  const int64_t rows = 8, cols = 256;
  const auto w = random_weight(rows, cols, 3);
  {
    // W8A8: int weights with int activations -> int-quantized, int8 codes [N, K], channel scales.
    const QuantScheme s = quant_scheme_preset("W8A8");
    ASSERT_EQ(quant_scheme_format(s), PackFormat::kIntQuantized);
    const RtnResult r = quantizer_rtn(s.weights, w.data(), rows, cols);
    auto t = by_name(compressed_module_encode(PackFormat::kIntQuantized, s.weights, r.qparams, r.codes, {}, rows, cols));
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t["weight"].dtype, DType::kI8);
    const auto codes = as<int8_t>(t["weight"]);
    for (size_t i = 0; i < codes.size(); ++i) ASSERT_EQ(codes[i], r.codes[i]) << i;
    EXPECT_EQ(t["weight_scale"].shape, (std::vector<int64_t>{rows, 1}));
  }
  {
    // FP8 weights without activation quantization -> naive-quantized, e4m3 bytes.
    QuantScheme s = quant_scheme_preset("FP8");
    s.input_activations.reset();
    ASSERT_EQ(quant_scheme_format(s), PackFormat::kNaiveQuantized);
    const RtnResult r = quantizer_rtn(s.weights, w.data(), rows, cols);
    auto t = by_name(compressed_module_encode(PackFormat::kNaiveQuantized, s.weights, r.qparams, r.codes, {}, rows, cols));
    EXPECT_EQ(t["weight"].dtype, DType::kF8E4M3);
    const auto bytes = as<uint8_t>(t["weight"]);
    for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], static_cast<uint8_t>(r.codes[i]));
  }
}

TEST(CompressedModule, FormatThatCannotHoldTheWeightsIsAnError) {
  const QuantArgs w4 = quant_args_preset("W4A16");
  const RtnResult r = quantizer_rtn(w4, random_weight(4, 128, 4).data(), 4, 128);
  for (PackFormat f : {PackFormat::kFloatQuantized, PackFormat::kNvfp4PackQuantized,
                       PackFormat::kMxfp4PackQuantized}) {
    try {
      compressed_module_encode(f, w4, r.qparams, r.codes, {}, 4, 128);
      ADD_FAILURE() << "no error for " << pack_format_name(f);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot hold weights int4"), std::string::npos) << e.what();
    }
  }
}

// --- compressed_module_layout / activation_layout against the encoders ------------------------

struct LayoutCase {
  std::string label;
  QuantScheme scheme;
  PackFormat format;
  bool with_g_idx = false;
};

// Every scheme preset in its inferred format, plus the formats a preset does not reach on its own.
std::vector<LayoutCase> layout_cases() {
  std::vector<LayoutCase> cases;
  for (const std::string& name : quant_scheme_preset_names()) {
    const QuantScheme s = quant_scheme_preset(name);
    cases.push_back({name, s, quant_scheme_format(s)});
  }
  QuantScheme w4 = quant_scheme_preset("W4A16");
  cases.push_back({"W4A16 actorder=group", w4, PackFormat::kPackQuantized, true});
  QuantScheme w4_asym = quant_scheme_preset("W4A16_ASYM");
  cases.push_back({"W4A16_ASYM actorder=group", w4_asym, PackFormat::kPackQuantized, true});
  QuantScheme w3 = quant_scheme_preset("W3A16");
  cases.push_back({"W3A16 actorder=group", w3, PackFormat::kPackQuantized, true});
  QuantScheme fp8 = quant_scheme_preset("FP8");
  fp8.input_activations.reset();
  cases.push_back({"FP8 weight-only (naive)", fp8, PackFormat::kNaiveQuantized});
  cases.push_back({"W8A8 naive", quant_scheme_preset("W8A8"), PackFormat::kNaiveQuantized});
  return cases;
}

std::string layout_string(const std::vector<EncodedTensor>& v) {
  std::string s;
  for (const auto& t : v) {
    s += t.name + ":" + std::string(dtype_name(t.dtype)) + "[";
    for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? "," : "") + std::to_string(t.shape[i]);
    s += "] ";
  }
  return s;
}

TEST(CompressedModuleLayout, EqualsWhatEncodeWritesForEveryPresetAndFormat) {
  // 130 rows: not a multiple of the 128 block (FP8_BLOCK pads) nor of 32/bits (zero points pad).
  const int64_t rows = 130, cols = 256;
  const auto w = random_weight(rows, cols, 7);
  int checked = 0;
  for (const LayoutCase& c : layout_cases()) {
    SCOPED_TRACE(c.label + " as " + std::string(pack_format_name(c.format)) + " [" + std::to_string(rows) +
                 ", " + std::to_string(cols) + "]");
    const QuantArgs& a = c.scheme.weights;
    const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
    const std::vector<int32_t> g_idx = c.with_g_idx ? permuted_g_idx(cols, a.group_size) : std::vector<int32_t>{};
    const auto encoded = compressed_module_encode(c.format, a, r.qparams, r.codes, g_idx, rows, cols);
    const auto layout = compressed_module_layout(c.format, a, rows, cols, c.with_g_idx);
    EXPECT_EQ(layout_string(layout), layout_string(encoded));
    for (const auto& t : layout) EXPECT_TRUE(t.bytes.empty()) << t.name;
    uint64_t layout_bytes = 0, encoded_bytes = 0;
    for (const auto& t : layout) {
      uint64_t b = dtype_size(t.dtype);
      for (int64_t v : t.shape) b *= static_cast<uint64_t>(v);
      layout_bytes += b;
    }
    for (const auto& t : encoded) encoded_bytes += t.bytes.size();
    EXPECT_EQ(layout_bytes, encoded_bytes);
    EXPECT_GT(encoded_bytes, 0u);

    const auto act_layout = activation_layout(c.scheme);
    const auto act = activation_encode(c.scheme, 3.5f);
    EXPECT_EQ(layout_string(act_layout), layout_string(act));
    for (const auto& t : act_layout) EXPECT_TRUE(t.bytes.empty()) << t.name;
    ++checked;
  }
  EXPECT_GE(checked, 15);
}

TEST(CompressedModuleLayout, StaticActivationsWriteTheirScales) {
  EXPECT_EQ(layout_string(activation_layout(quant_scheme_preset("FP8"))), "input_scale:BF16[1] ");
  EXPECT_EQ(layout_string(activation_layout(quant_scheme_preset("NVFP4"))), "input_global_scale:F32[1] ");
  EXPECT_TRUE(activation_layout(quant_scheme_preset("FP8_DYNAMIC")).empty());
  EXPECT_TRUE(activation_layout(quant_scheme_preset("W4A16")).empty());
}

TEST(CompressedModuleLayout, InLayoutOrdersTheTensorsOrSaysWhatDiffers) {
  const int64_t rows = 64, cols = 256;
  const auto w = random_weight(rows, cols, 11);
  const QuantArgs a = quant_args_preset("W4A16_ASYM");
  const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
  std::vector<EncodedTensor> t = compressed_module_encode(PackFormat::kPackQuantized, a, r.qparams, r.codes, {}, rows, cols);
  std::reverse(t.begin(), t.end());  // any order in, layout order out
  std::string why;
  const auto in = compressed_module_in_layout(PackFormat::kPackQuantized, a, rows, cols, t, &why);
  const auto layout = compressed_module_layout(PackFormat::kPackQuantized, a, rows, cols, false);
  ASSERT_EQ(in.size(), layout.size()) << why;
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(in[i]->name, layout[i].name);

  // An act-order g_idx is not the layout; nor is another bit width, nor a short tensor.
  std::vector<int32_t> g_idx(cols);
  for (int64_t k = 0; k < cols; ++k) g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(k / 128);
  const auto with_g = compressed_module_encode(PackFormat::kPackQuantized, a, r.qparams, r.codes, g_idx, rows, cols);
  EXPECT_TRUE(compressed_module_in_layout(PackFormat::kPackQuantized, a, rows, cols, with_g, &why).empty());
  EXPECT_NE(why.find("weight_g_idx"), std::string::npos) << why;
  QuantArgs a8 = a;
  a8.num_bits = 8;
  EXPECT_TRUE(compressed_module_in_layout(PackFormat::kPackQuantized, a8, rows, cols, t, &why).empty());
  EXPECT_NE(why.find("weight_packed is I32 [64, 32]"), std::string::npos) << why;
  t[0].bytes.pop_back();
  EXPECT_TRUE(compressed_module_in_layout(PackFormat::kPackQuantized, a, rows, cols, t, &why).empty());
  EXPECT_NE(why.find(t[0].name), std::string::npos) << why;
}

TEST(CompressedModuleLayout, RejectsWhatEncodeRejects) {
  // actorder=group needs group scales; the layout refuses it as encode does.
  EXPECT_THROW(compressed_module_layout(PackFormat::kPackQuantized, quant_args_preset("W8A8"), 8, 256, true), Error);
  EXPECT_THROW(compressed_module_layout(PackFormat::kFloatQuantized, quant_args_preset("W4A16"), 8, 256, false),
               Error);
}

// The CPU decoder (the reference of the GPU one) inverts the encoder for every preset and format,
// act-order g_idx included: bitwise the dequantized weight of the same codes, qparams and g_idx.
TEST(CompressedModuleDecode, InvertsTheEncoderBitForBit) {
  const int64_t rows = 130, cols = 256;
  const auto w = random_weight(rows, cols, 9);
  int checked = 0;
  for (const LayoutCase& c : layout_cases()) {
    const QuantArgs& a = c.scheme.weights;
    SCOPED_TRACE(c.label + " as " + std::string(pack_format_name(c.format)));
    const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
    const std::vector<int32_t> g_idx = c.with_g_idx ? permuted_g_idx(cols, a.group_size) : std::vector<int32_t>{};
    const auto encoded = compressed_module_encode(c.format, a, r.qparams, r.codes, g_idx, rows, cols);
    const std::vector<float> want = gptq_dequant_with_g_idx(a, r.qparams, r.codes, g_idx);
    const std::vector<float> got = compressed_module_decode(encoded, "m", rows, cols);
    ASSERT_EQ(got.size(), want.size());
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      uint32_t x, y;
      std::memcpy(&x, &got[i], 4);
      std::memcpy(&y, &want[i], 4);
      if (x != y && differ++ == 0) first = i;
    }
    EXPECT_EQ(differ, 0u) << differ << " of " << want.size() << " differ; first at (" << first / cols << ", "
                          << first % cols << "): decoded " << got[first] << " expected " << want[first];
    ++checked;
  }
  EXPECT_GT(checked, 10);
}

TEST(CompressedModuleDecode, BrokenLayoutsNameTheModuleAndTensor) {
  const int64_t rows = 8, cols = 128;
  const QuantArgs a = quant_args_preset("W4A16");
  const auto w = random_weight(rows, cols, 3);
  const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
  auto encoded = compressed_module_encode(PackFormat::kPackQuantized, a, r.qparams, r.codes, {}, rows, cols);
  encoded.erase(std::remove_if(encoded.begin(), encoded.end(), [](const EncodedTensor& t) { return t.name == "weight_scale"; }),
                encoded.end());
  try {
    compressed_module_decode(encoded, "layers.0.attn.wq_a", rows, cols);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor layers.0.attn.wq_a.weight_scale is missing"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(compressed_module_decode(std::vector<EncodedTensor>{}, "m", rows, cols), Error);  // no layout at all
}

}  // namespace
}  // namespace dsv4::quant

// test_quantizer.cpp: the quantizer arithmetic of quant/quantizer.h on small hand-computed
// examples per strategy (int4 grid ends, RNE ties, asym zero points, NVFP4 global scale, MX
// power-of-two scales, bf16 scale storage, eps for zero groups) and on seeded random weights
// (every code on its grid; per-column calls equal whole-matrix RTN; data-free re-encodes).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "common/check.h"
#include "common/codec.h"
#include "quant/observer.h"
#include "quant/quantizer.h"

namespace dsv4::quant {
namespace {

float bf16r(float x) { return bf16_decode(bf16_encode(x)); }

QuantArgs make_int(int bits, bool sym, Strategy st, int group, ScaleDType sd) {
  QuantArgs a;
  a.num_bits = bits;
  a.symmetric = sym;
  a.strategy = st;
  a.group_size = group;
  a.scale_dtype = sd;
  return a;
}

std::vector<float> random_weight(int64_t n, uint32_t seed, float sigma = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& x : w) x = bf16r(d(rng));  // DSV4 weights are bf16
  return w;
}

TEST(Quantizer, Int4SymGridEnds) {
  // amax 7.5 -> s = 1: +amax -> 7.5 clamps to 7 (7s), -amax -> -8 exactly; ties go to even.
  const QuantArgs a = make_int(4, true, Strategy::kTensor, 0, ScaleDType::kModel);
  const std::vector<float> w = {7.5f, -7.5f, 2.5f, 3.5f, -0.5f, 1.5f, 0.0f, 6.4f};
  const RtnResult r = quantizer_rtn(a, w.data(), 1, 8);
  ASSERT_EQ(r.qparams.scale.size(), 1u);
  EXPECT_EQ(r.qparams.scale[0], 1.0f);
  EXPECT_EQ(r.codes, (std::vector<int32_t>{7, -8, 2, 4, 0, 2, 0, 6}));
  EXPECT_EQ(r.dequant, (std::vector<float>{7, -8, 2, 4, 0, 2, 0, 6}));
}

TEST(Quantizer, Int4SymAmaxMapsTo7sAndMinus8s) {
  const QuantArgs a = make_int(4, true, Strategy::kChannel, 0, ScaleDType::kModel);
  const std::vector<float> w = {0.3f, -0.1f, 0.05f, -0.3f, 0.2f, 0.1f};  // rows 2 x cols 3
  const std::vector<float> wb = {bf16r(w[0]), bf16r(w[1]), bf16r(w[2]),
                                 bf16r(w[3]), bf16r(w[4]), bf16r(w[5])};
  const RtnResult r = quantizer_rtn(a, wb.data(), 2, 3);
  const float s0 = r.qparams.scale[0], s1 = r.qparams.scale[1];
  EXPECT_EQ(s0, bf16r(wb[0] / 7.5f));
  EXPECT_EQ(s1, bf16r(wb[3] / -7.5f));
  EXPECT_EQ(r.codes[0], 7);
  // bf16 scales: the fake-quant value is the product rounded to bf16, as compressed-tensors'
  // bf16 multiply gives it (7 * s0 needs more than bf16's 8 significant bits here).
  EXPECT_EQ(r.dequant[0], bf16r(7.0f * s0));
  EXPECT_NE(7.0f * s0, bf16r(7.0f * s0));
  EXPECT_EQ(r.codes[3], -8);
  EXPECT_EQ(r.dequant[3], -8.0f * s1);  // a power-of-two multiple: exact
  // fp32 scales: the plain fp32 product.
  const QuantArgs f = make_int(4, true, Strategy::kChannel, 0, ScaleDType::kF32);
  const RtnResult rf = quantizer_rtn(f, wb.data(), 2, 3);
  EXPECT_EQ(rf.codes[0], 7);
  EXPECT_EQ(rf.dequant[0], 7.0f * rf.qparams.scale[0]);
}

TEST(Quantizer, BF16ScaleStorage) {
  const QuantArgs a = make_int(4, true, Strategy::kTensor, 0, ScaleDType::kModel);
  const CellQParams c = qparams_calculate(a, -1.0f, 1.0f, 0.0f);
  EXPECT_EQ(c.scale, bf16r(1.0f / 7.5f));
  EXPECT_NE(c.scale, 1.0f / 7.5f);
  QuantArgs f = a;
  f.scale_dtype = ScaleDType::kF32;
  EXPECT_EQ(qparams_calculate(f, -1.0f, 1.0f, 0.0f).scale, 1.0f / 7.5f);
  const QuantArgs g = quant_args_preset("W4A16");
  const std::vector<float> w = random_weight(16 * 256, 1);
  const QParams qp = observer_qparams(g, w.data(), 16, 256);
  for (float s : qp.scale) EXPECT_EQ(s, bf16r(s));
}

TEST(Quantizer, AsymZeroPointSignedRangeAndExactOnGrid) {
  const QuantArgs a = quant_args_preset("W4A16_ASYM");
  const std::vector<float> w = random_weight(8 * 256, 2);
  const QParams qp = observer_qparams(a, w.data(), 8, 256);
  for (size_t i = 0; i < qp.zero_point.size(); ++i) {
    const float zp = qp.zero_point[i];
    EXPECT_GE(zp, -8.0f);
    EXPECT_LE(zp, 7.0f);
    EXPECT_EQ(zp, std::nearbyint(zp));
  }
  // Values that sit on the grid come back with their code; the fake-quant value is the grid
  // value rounded to bf16 (model-dtype scales).
  const float s = qp.scale[0], zp = qp.zero_point[0];
  for (int q = -8; q <= 7; ++q) {
    const float x = (static_cast<float>(q) - zp) * s;
    float d;
    EXPECT_EQ(quantizer_quantize_value(a, x, s, zp, &d), q);
    EXPECT_EQ(d, bf16r(x));
  }
  // Hand example, fp32 scale: min -1, max 3 -> s = 4/15, zp = round(-8 + 3.75) = -4.
  QuantArgs f = make_int(4, false, Strategy::kTensor, 0, ScaleDType::kF32);
  const CellQParams c = qparams_calculate(f, -1.0f, 3.0f, 0.0f);
  EXPECT_EQ(c.scale, 4.0f / 15.0f);
  EXPECT_EQ(c.zero_point, -4.0f);
  // Positive-only data: min is clamped to 0, so zp = qmin.
  EXPECT_EQ(qparams_calculate(f, 1.0f, 3.0f, 0.0f).zero_point, -8.0f);
}

TEST(Quantizer, Shapes) {
  int64_t sr, sc;
  qparams_shape(quant_args_preset("FP8"), 300, 200, &sr, &sc);
  EXPECT_EQ(sr, 1); EXPECT_EQ(sc, 1);
  qparams_shape(quant_args_preset("W8A8"), 300, 200, &sr, &sc);
  EXPECT_EQ(sr, 300); EXPECT_EQ(sc, 1);
  qparams_shape(quant_args_preset("W4A16"), 300, 256, &sr, &sc);
  EXPECT_EQ(sr, 300); EXPECT_EQ(sc, 2);
  qparams_shape(quant_args_preset("FP8_BLOCK"), 300, 200, &sr, &sc);
  EXPECT_EQ(sr, 3); EXPECT_EQ(sc, 2);
  qparams_shape(quant_args_preset("NVFP4"), 3, 64, &sr, &sc);
  EXPECT_EQ(sr, 3); EXPECT_EQ(sc, 4);
  const QuantArgs b = quant_args_preset("FP8_BLOCK");
  QParams qp;
  qp.scale_cols = 2;
  EXPECT_EQ(qp.scale_row(b, 255), 1);
  EXPECT_EQ(qp.scale_col(b, 199), 1);
  EXPECT_EQ(qp.index(b, 299, 127), 4);
}

TEST(Quantizer, GroupHandExample) {
  // rows 1, cols 4, group 2, fp32 scales: groups {2.5, -7.5} (s = 1) and {0.5, 0.25}.
  QuantArgs a = make_int(4, true, Strategy::kGroup, 2, ScaleDType::kF32);
  const std::vector<float> w = {2.5f, -7.5f, 0.5f, 0.25f};
  const RtnResult r = quantizer_rtn(a, w.data(), 1, 4);
  EXPECT_EQ(r.qparams.scale, (std::vector<float>{1.0f, 0.5f / 7.5f}));
  // 2.5 ties to 2; -7.5 -> -8; 0.5 -> ~7.5 -> 7 (clamped or rounded); 0.25 -> ~3.75 -> 4.
  EXPECT_EQ(r.codes, (std::vector<int32_t>{2, -8, 7, 4}));
  EXPECT_EQ(r.dequant[0], 2.0f);
  EXPECT_EQ(r.dequant[3], 4.0f * (0.5f / 7.5f));
}

TEST(Quantizer, BlockHandExample) {
  // 3x3 weight, block [2,2], fp8 with fp32 scales: cells {0,1}x{0,1}, s = amax/448.
  QuantArgs a = quant_args_preset("FP8_BLOCK");
  a.block_structure = {2, 2};
  a.scale_dtype = ScaleDType::kF32;
  const std::vector<float> w = {1, 2, 3, -4, 0, 6, 7, -8, 9};
  const RtnResult r = quantizer_rtn(a, w.data(), 3, 3);
  EXPECT_EQ(r.qparams.scale_rows, 2);
  EXPECT_EQ(r.qparams.scale_cols, 2);
  EXPECT_EQ(r.qparams.scale,
            (std::vector<float>{4.0f / 448, 6.0f / 448, 8.0f / 448, 9.0f / 448}));
  // Each cell's amax maps to 448 and comes back (up to the fp32 scale product).
  EXPECT_NEAR(r.dequant[3], -4.0f, 1e-6f);
  EXPECT_NEAR(r.dequant[8], 9.0f, 1e-6f);
}

TEST(Quantizer, Fp8TensorRne) {
  // amax 448 -> s = 1; 17 is a tie between e4m3 16 and 18 and goes to the even mantissa (16).
  const QuantArgs a = quant_args_preset("FP8");
  const std::vector<float> w = {448.0f, 17.0f, 19.0f, -0.0f};
  const RtnResult r = quantizer_rtn(a, w.data(), 1, 4);
  EXPECT_EQ(r.qparams.scale[0], 1.0f);
  EXPECT_EQ(r.dequant[0], 448.0f);
  EXPECT_EQ(r.dequant[1], 16.0f);
  EXPECT_EQ(r.dequant[2], 20.0f);
  EXPECT_EQ(r.codes[0], e4m3_encode(448.0f));
}

TEST(Quantizer, ZeroGroupGetsEpsScaleAndZeroCodes) {
  const std::vector<float> w(2 * 32, 0.0f);
  struct Case { const char* preset; float eps; };
  for (const Case& c : {Case{"W4A16", 0.0078125f}, Case{"NVFP4", 0.125f}}) {
    QuantArgs a = quant_args_preset(c.preset);
    a.group_size = 16;
    const RtnResult r = quantizer_rtn(a, w.data(), 2, 32);
    for (float s : r.qparams.scale) EXPECT_EQ(s, c.eps) << c.preset;
    for (float d : r.dequant) EXPECT_EQ(d, 0.0f) << c.preset;
    for (int32_t q : r.codes) EXPECT_EQ(quantizer_code_value(a, q), 0.0f) << c.preset;
  }
  QuantArgs f = make_int(8, true, Strategy::kChannel, 0, ScaleDType::kF32);
  EXPECT_EQ(qparams_calculate(f, 0.0f, 0.0f, 0.0f).scale, FLT_EPSILON);
  // Asymmetric: zero point qmin, codes equal it, dequantized 0 (never NaN).
  const QuantArgs asym = quant_args_preset("INT8_ASYM_CHANNEL");
  const RtnResult r = quantizer_rtn(asym, w.data(), 2, 32);
  for (float zp : r.qparams.zero_point) EXPECT_EQ(zp, -128.0f);
  for (float d : r.dequant) EXPECT_EQ(d, 0.0f);
}

TEST(Quantizer, Nvfp4GlobalScale) {
  EXPECT_EQ(nvfp4_global_scale(12.0f), 448.0f * 6.0f / 12.0f);
  EXPECT_EQ(nvfp4_global_scale(1.0f), 2688.0f);
  EXPECT_EQ(nvfp4_global_scale(0.0f), 1.0f);  // 2688/FLT_MIN overflows to inf -> guarded to 1
  EXPECT_EQ(nvfp4_global_scale(std::nanf("")), 1.0f);
  // Hand example: amax 12 -> gs 224. Group 0 amax 12: s = e4m3(448), s_eff 2, 12 -> code 6.0.
  // Group 1 amax 3: s = e4m3(112), s_eff 0.5, 1 -> 2.0.
  const QuantArgs a = quant_args_preset("NVFP4A16");
  std::vector<float> w(32, 0.0f);
  w[0] = 12.0f; w[1] = -5.0f; w[16] = 3.0f; w[17] = 1.0f;
  const RtnResult r = quantizer_rtn(a, w.data(), 1, 32);
  EXPECT_TRUE(r.qparams.has_global_scale);
  EXPECT_EQ(r.qparams.global_scale, 224.0f);
  EXPECT_EQ(r.qparams.scale, (std::vector<float>{448.0f, 112.0f}));
  EXPECT_EQ(r.dequant[0], 12.0f);
  EXPECT_EQ(r.dequant[1], -4.0f);  // -2.5 on the e2m1 grid ties to -2
  EXPECT_EQ(r.dequant[17], 1.0f);
  EXPECT_EQ(quantizer_code_value(a, r.codes[17]), 2.0f);
}

TEST(Quantizer, MxScalesArePowersOfTwo) {
  const QuantArgs a = quant_args_preset("MXFP4A16");
  // amax 6 -> 2^0; 7 (mantissa .75 rounds up to 8) -> 2^1; 6.9 -> 2^0; 0.75 -> 2^-3.
  EXPECT_EQ(qparams_calculate(a, 0.0f, 6.0f, 0.0f).scale, 1.0f);
  EXPECT_EQ(qparams_calculate(a, -7.0f, 1.0f, 0.0f).scale, 2.0f);
  EXPECT_EQ(qparams_calculate(a, 0.0f, 6.9f, 0.0f).scale, 1.0f);
  EXPECT_EQ(qparams_calculate(a, 0.0f, 0.75f, 0.0f).scale, 0.125f);
  EXPECT_EQ(qparams_calculate(a, 0.0f, 6.0f, 0.0f).e8m0, 127);
  const std::vector<float> w = random_weight(8 * 128, 3);
  const QParams qp = observer_qparams(a, w.data(), 8, 128);
  ASSERT_EQ(qp.scale_e8m0.size(), qp.scale.size());
  for (size_t i = 0; i < qp.scale.size(); ++i) {
    int e;
    EXPECT_EQ(std::frexp(qp.scale[i], &e), 0.5f);
    EXPECT_EQ(qp.scale[i], e8m0_decode(qp.scale_e8m0[i]));
  }
}

TEST(Quantizer, EveryCodeOnItsGrid) {
  for (const char* name : {"W4A16", "W4A16_ASYM", "W3A16", "W8A8", "INT8_ASYM_CHANNEL", "FP8",
                           "FP8_BLOCK", "FP8_BLOCK_E8M0", "NVFP4", "MXFP4A16", "INT4_G32"}) {
    const QuantArgs a = quant_args_preset(name);
    const int64_t rows = 130, cols = 256;
    const std::vector<float> w = random_weight(rows * cols, 4);
    const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
    for (int64_t i = 0; i < rows * cols; ++i) {
      const int64_t cell = r.qparams.index(a, i / cols, i % cols);
      const float v = quantizer_code_value(a, r.codes[i]);
      ASSERT_GE(v, a.qmin()) << name;
      ASSERT_LE(v, a.qmax()) << name;
      if (a.type == QuantType::kInt) {
        ASSERT_EQ(v, std::nearbyint(v)) << name;
      }
      const float product =
          (v - r.qparams.zero_point[cell]) * qparams_effective_scale(r.qparams, cell);
      const float expect = a.scale_dtype == ScaleDType::kModel ? bf16r(product) : product;
      ASSERT_EQ(r.dequant[i], expect) << name << " at " << i;
      ASSERT_FALSE(std::isnan(r.dequant[i])) << name;
      ASSERT_LE(std::fabs(r.dequant[i] - w[i]), 0.05f) << name;
    }
  }
}

TEST(Quantizer, ColumnCallsMatchRtn) {
  const QuantArgs a = quant_args_preset("W4A16");
  const int64_t rows = 5, cols = 256;
  const std::vector<float> w = random_weight(rows * cols, 5);
  const RtnResult r = quantizer_rtn(a, w.data(), rows, cols);
  std::vector<float> col(rows), deq(rows);
  std::vector<int32_t> codes(rows);
  for (int64_t c = 0; c < cols; c += 37) {
    for (int64_t i = 0; i < rows; ++i) col[i] = w[i * cols + c];
    quantizer_fake_quant_column(a, r.qparams, c, col.data(), rows, codes.data(), deq.data());
    for (int64_t i = 0; i < rows; ++i) {
      EXPECT_EQ(codes[i], r.codes[i * cols + c]);
      EXPECT_EQ(deq[i], r.dequant[i * cols + c]);
    }
  }
  EXPECT_THROW(quantizer_fake_quant_column(a, r.qparams, cols, col.data(), rows, nullptr,
                                           nullptr),
               Error);
}

TEST(Quantizer, Fp8BlockReencodeIsBitIdentical) {
  const int64_t rows = 200, cols = 300, sr = 2, sc = 3;
  std::mt19937 rng(6);
  std::vector<uint8_t> codes(rows * cols), scales(sr * sc);
  for (uint8_t& c : codes) {
    do { c = static_cast<uint8_t>(rng()); } while ((c & 0x7F) == 0x7F);  // no NaN codes
  }
  for (uint8_t& s : scales) s = static_cast<uint8_t>(110 + rng() % 20);
  const RtnResult r = quantizer_fp8_block_reencode(quant_args_preset("FP8_BLOCK_E8M0"),
                                                   codes.data(), scales.data(), rows, cols);
  EXPECT_EQ(r.qparams.scale_e8m0, scales);
  for (size_t i = 0; i < codes.size(); ++i) ASSERT_EQ(r.codes[i], codes[i]) << i;
  // With bf16 scales the weight is re-quantized from its dequantized values.
  const RtnResult b = quantizer_fp8_block_reencode(quant_args_preset("FP8_BLOCK"), codes.data(),
                                                   scales.data(), rows, cols);
  EXPECT_TRUE(b.qparams.scale_e8m0.empty());
  EXPECT_EQ(b.qparams.scale.size(), 6u);
}

TEST(Quantizer, Mxfp4ToInt4Group32) {
  const int64_t rows = 2, cols = 64;
  std::vector<uint8_t> nib(rows * cols), sc(rows * 2);
  std::mt19937 rng(7);
  for (uint8_t& n : nib) n = static_cast<uint8_t>(rng() % 16);
  nib[0] = 7;  // +6 in group (0,0)
  for (uint8_t& s : sc) s = static_cast<uint8_t>(120 + rng() % 8);
  const QuantArgs a = quant_args_preset("INT4_G32");
  const RtnResult r = quantizer_mxfp4_to_int4(a, nib.data(), sc.data(), rows, cols);
  ASSERT_EQ(r.qparams.scale.size(), 4u);
  EXPECT_EQ(r.qparams.scale[0], bf16r(6.0f * e8m0_decode(sc[0]) / 7.5f));
  EXPECT_EQ(r.codes[0], 7);
  for (int32_t q : r.codes) { EXPECT_GE(q, -8); EXPECT_LE(q, 7); }
}

TEST(Quantizer, Mxfp4ToInt4MseScalesNeverWorse) {
  // A realistic expert slice: e2m1 codes drawn with small magnitudes more likely (as a weight's
  // bell shape gives), one MX group per 32 columns with its own exponent.
  const int64_t rows = 64, cols = 256;
  std::vector<uint8_t> nib(rows * cols), sc(rows * cols / 32);
  std::mt19937 rng(11);
  const uint8_t magnitude[] = {0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 6, 7};
  for (uint8_t& n : nib) {
    n = static_cast<uint8_t>(magnitude[rng() % 14] | (rng() % 2 ? 8 : 0));
  }
  for (uint8_t& s : sc) s = static_cast<uint8_t>(118 + rng() % 4);
  QuantArgs mm = quant_args_preset("INT4_G32");
  QuantArgs mse = mm;
  mse.observer = ObserverKind::kMse;
  const RtnResult a = quantizer_mxfp4_to_int4(mm, nib.data(), sc.data(), rows, cols);
  const RtnResult b = quantizer_mxfp4_to_int4(mse, nib.data(), sc.data(), rows, cols);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) {
    w[i] = e2m1_decode(nib[i]) * e8m0_decode(sc[i / 32]);
  }
  const std::vector<double> e_mm = observer_cell_error(mse, a.qparams, w.data(), mse.mse.norm);
  const std::vector<double> e_mse = observer_cell_error(mse, b.qparams, w.data(), mse.mse.norm);
  double sum_mm = 0, sum_mse = 0;
  int64_t shrunk = 0;
  for (size_t g = 0; g < e_mm.size(); ++g) {
    EXPECT_LE(e_mse[g], e_mm[g]) << "group " << g;
    sum_mm += e_mm[g];
    sum_mse += e_mse[g];
    shrunk += b.qparams.scale[g] < a.qparams.scale[g];
  }
  EXPECT_LT(sum_mse, sum_mm);
  EXPECT_GT(shrunk, 0);
  for (int32_t q : b.codes) { ASSERT_GE(q, -8); ASSERT_LE(q, 7); }
  std::printf("[Mxfp4ToInt4] summed group error (norm %.1f): min-max %.6g, mse %.6g (%.3fx); "
              "%lld / %zu groups shrunk\n",
              static_cast<double>(mse.mse.norm), sum_mm, sum_mse, sum_mse / sum_mm,
              static_cast<long long>(shrunk), e_mm.size());
}

}  // namespace
}  // namespace dsv4::quant

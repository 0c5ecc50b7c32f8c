// test_ops.cpp: the dense primitives against naive loops (exact integer data for the GEMM), and the
// CPU references of the GPU row kernels (norm_rope_reference, swiglu_reference) against the
// primitives they are built from.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/codec.h"
#include "common/rng.h"
#include "model/config.h"
#include "model/ops.h"
#include "model/rope.h"

namespace dsv4::model {
namespace {

TEST(Ops, LinearMatchesNaiveOnIntegerData) {
  // Small integers: every product and sum is exact in fp32, so BLAS must match bit for bit.
  for (auto [rows, in, out] : {std::tuple{1, 1, 1}, {3, 5, 7}, {17, 128, 33}, {64, 256, 96}}) {
    Rng rng(static_cast<uint64_t>(rows * 1000 + in));
    std::vector<float> x(rows * in), w(out * in), y(rows * out), ref(rows * out, 0.0f);
    for (auto& v : x) v = static_cast<float>(static_cast<int>(rng.below(9)) - 4);
    for (auto& v : w) v = static_cast<float>(static_cast<int>(rng.below(9)) - 4);
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o)
        for (int k = 0; k < in; ++k) ref[r * out + o] += x[r * in + k] * w[o * in + k];
    linear_forward(x.data(), rows, in, w.data(), out, y.data());
    double norm = 0;
    for (int i = 0; i < rows * out; ++i) {
      ASSERT_EQ(y[i], ref[i]) << "rows " << rows << " in " << in << " out " << out << " at " << i;
      norm += std::fabs(ref[i]);
    }
    EXPECT_GT(norm, 0.0);
  }
}

TEST(Ops, RmsnormWeightedUnweightedAndInPlace) {
  const std::vector<float> x = {3, 4, 0, 0, /*row 2*/ 1, 1, 1, 1};
  const std::vector<float> w = {1, 2, 3, 4};
  std::vector<float> y(8);
  rmsnorm_forward(x.data(), 2, 4, nullptr, 0.0f, y.data());
  // Row 1: rms = sqrt(25/4) = 2.5.
  EXPECT_FLOAT_EQ(y[0], 1.2f);
  EXPECT_FLOAT_EQ(y[1], 1.6f);
  EXPECT_FLOAT_EQ(y[4], 1.0f);
  rmsnorm_forward(x.data(), 2, 4, w.data(), 0.0f, y.data());
  EXPECT_FLOAT_EQ(y[1], 3.2f);
  EXPECT_FLOAT_EQ(y[7], 4.0f);
  std::vector<float> z = x;
  rmsnorm_forward(z.data(), 2, 4, w.data(), 1e-6f, z.data());
  EXPECT_NEAR(z[1], 3.2f, 1e-5f);
}

TEST(Ops, Bf16RoundAndActivations) {
  std::vector<float> v = {1.0f, 1.00390625f, 1.01171875f, -3.14159f};
  bf16_round(v.data(), v.size());
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 1.0f);          // exactly half an ulp above 1: ties to even
  EXPECT_EQ(v[2], 1.015625f);     // 1.5 ulp: rounds up to the even neighbour
  EXPECT_EQ(v[3], -3.140625f);
  EXPECT_FLOAT_EQ(sigmoid(0.0f), 0.5f);
  EXPECT_FLOAT_EQ(silu(1.0f), 1.0f / (1.0f + std::exp(-1.0f)));
  EXPECT_EQ(softplus(25.0f), 25.0f);  // torch's threshold 20
  EXPECT_FLOAT_EQ(softplus(0.0f), std::log(2.0f));
}

}  // namespace
}  // namespace dsv4::model

namespace dsv4::model {
namespace {

TEST(Ops, RowStableLinearGivesEachRowTheSameBitsWhateverTheRowCount) {
  // Random (non-integer) data, small out: the regime where plain sgemm's bits depend on M.
  const int64_t in = 96, out = 24, max_rows = 40;
  Rng rng(5);
  std::vector<float> x(max_rows * in), w(out * in);
  for (auto& v : x) v = rng.normal();
  for (auto& v : w) v = rng.normal();
  std::vector<float> all(max_rows * out);
  linear_forward_row_stable(x.data(), max_rows, in, w.data(), out, all.data());
  for (int64_t rows : {1, 2, 7, 13, 39}) {
    std::vector<float> y(rows * out);
    linear_forward_row_stable(x.data(), rows, in, w.data(), out, y.data());
    for (int64_t i = 0; i < rows * out; ++i) ASSERT_EQ(y[i], all[i]) << "rows " << rows << " element " << i;
  }
}

// norm_rope_reference = rmsnorm_forward, bf16_round, rope_apply at the row's position, bf16_round,
// row by row; in place gives the same; without normalize only the rope (and its rounding) runs.
TEST(Ops, NormRopeReferenceComposesThePrimitives) {
  const ModelConfig c = ModelConfig::tiny();
  const int64_t heads = 2, tokens = 5, seqs = 2, dim = 64, rows = heads * tokens * seqs;
  const RopeTable table = rope_table_build(c, false, tokens);
  Rng rng(7);
  std::vector<float> x(static_cast<size_t>(rows * dim)), weight(static_cast<size_t>(dim));
  for (float& v : x) v = bf16_decode(bf16_encode(rng.normal()));
  for (float& v : weight) v = 1.0f + 0.1f * rng.normal();
  for (const bool normalize : {true, false}) {
    NormRopeArgs op{.normalize = normalize, .weight = weight.data(), .rope = &table, .inverse = true,
                    .rows_per_token = heads, .tokens_per_seq = tokens};
    std::vector<float> got(x.size()), in_place(x);
    norm_rope_reference(x.data(), rows, dim, op, got.data());
    norm_rope_reference(in_place.data(), rows, dim, op, in_place.data());
    EXPECT_EQ(got, in_place);
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> want(x.begin() + r * dim, x.begin() + (r + 1) * dim);
      if (normalize) {
        rmsnorm_forward(want.data(), 1, dim, weight.data(), 1e-6f, want.data());
        bf16_round(want.data(), want.size());
      }
      rope_apply(want.data(), dim, table, (r / heads) % tokens, true);
      bf16_round(want.data(), want.size());
      for (int64_t d = 0; d < dim; ++d) ASSERT_EQ(got[r * dim + d], want[d]) << "normalize " << normalize << " row " << r;
    }
  }
}

// swiglu_reference: gate columns then up columns, the clamps, bf16 h, and hw from the unrounded value.
TEST(Ops, SwigluReferenceClampsAndWeights) {
  const float limit = 10.0f;
  // One row, inter 3: gate {1, 30, -2}, up {2, -20, 0.5}.
  const std::vector<float> gu = {1.0f, 30.0f, -2.0f, 2.0f, -20.0f, 0.5f};
  const std::vector<float> w = {0.5f};
  std::vector<float> h(3), hw(3);
  swiglu_reference(gu.data(), 1, 3, limit, h.data(), w.data(), hw.data());
  const float v[3] = {silu(1.0f) * 2.0f, silu(10.0f) * -10.0f, silu(-2.0f) * 0.5f};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(h[i], bf16_decode(bf16_encode(v[i]))) << i;
    EXPECT_EQ(hw[i], bf16_decode(bf16_encode(v[i] * 0.5f))) << i;
  }
  std::vector<float> h_only(3);
  swiglu_reference(gu.data(), 1, 3, limit, h_only.data(), nullptr, nullptr);
  EXPECT_EQ(h_only, h);
}

}  // namespace
}  // namespace dsv4::model

// test_paired_taps.cpp: GPTAQ's pass A on the CPU (calib/paired_taps.h, LayerStats::on_paired_tap):
// the full-precision pass's taps, recorded, paired row for row with the quantized pass's, sum
// ΔX·Xᵀ beside H. Checked against a direct double-precision 2/n Σ (x̃ − x) xᵀ over the same rows:
// for a two-module tap, for wo_a's groups, for the all-experts w1/w3 Hessian (the layer input
// once per pass, however many experts repeat it), exact and fp32 sums, through a one-rank reduce;
// X̃ = X gives exactly zero; taps that do not pair (another module, another shape, one too many or
// too few) are errors.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "calib/layer_stats.h"
#include "calib/paired_taps.h"
#include "common/check.h"
#include "dist/communicator.h"

namespace dsv4::calib {
namespace {

using model::LinearRole;
constexpr int64_t kT = 7, kD = 5;
const std::string kP = "layers.1.";

std::vector<float> rows(int64_t n, int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * cols));
  for (float& v : x) v = g(rng);
  return x;
}

HessianKey key(HessianInput input, LinearRole role = LinearRole::kHead, int expert = -1) {
  return {.layer = 1, .input = input, .role = role, .expert = expert};
}

// 2/n Σ_t (x̃_t − x_t) x_tᵀ over every pair of batches, in double.
std::vector<double> cross_reference(const std::vector<std::pair<std::vector<float>, std::vector<float>>>& pairs) {
  std::vector<double> c(static_cast<size_t>(kD * kD), 0.0);
  int64_t n = 0;
  for (const auto& [x, xt] : pairs) {
    const int64_t t_rows = static_cast<int64_t>(x.size()) / kD;
    for (int64_t t = 0; t < t_rows; ++t) {
      for (int64_t i = 0; i < kD; ++i) {
        for (int64_t j = 0; j < kD; ++j) {
          c[static_cast<size_t>(i * kD + j)] +=
              static_cast<double>(xt[t * kD + i] - x[t * kD + i]) * static_cast<double>(x[t * kD + j]);
        }
      }
    }
    n += t_rows;
  }
  for (double& v : c) v = 2.0 * v / static_cast<double>(n);
  return c;
}

// fp32 sums of a few products of order 1: relative 1e-5 of the largest entry.
void expect_near(const std::vector<float>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0.0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0.1) << what << ": a vacuous reference";
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-5 * scale) << what << " entry (" << i / kD << ", " << i % kD << ") of " << kD << "x" << kD;
  }
}

// One sample's pass A, both streams: the recorder on X̃'s taps, then the paired sink on X's.
void pass(LayerStats& s, const std::vector<model::TapEvent>& quantized, const std::vector<model::TapEvent>& full) {
  s.next_pass();
  TapRecorder rec(s);
  for (const auto& e : full) rec.on_tap(e);
  PairedTapSink paired(s, rec);
  for (const auto& e : quantized) paired.on_tap(e);
  paired.finish();
}

class PairedTaps : public ::testing::TestWithParam<HessianSums> {};

TEST_P(PairedTaps, CrossSumMatchesDirectReference) {
  LayerStats s(true, W2Input::kUnweighted, GetParam()), cross(true, W2Input::kUnweighted, GetParam());
  s.set_cross(&cross);
  const HessianKey attn = key(HessianInput::kAttnInput);
  const HessianKey shared = key(HessianInput::kExpertW13, LinearRole::kHead, HessianKey::kAllExperts);
  s.want_hessian(kP + "attn.wq_a", attn);
  s.want_hessian(kP + "attn.wkv", attn);
  for (int e = 0; e < 3; ++e) {
    s.want_hessian(kP + "ffn.experts." + std::to_string(e) + ".w1", shared);
    s.want_hessian(kP + "ffn.experts." + std::to_string(e) + ".w3", shared);
  }
  std::vector<std::pair<std::vector<float>, std::vector<float>>> attn_pairs, expert_pairs;
  for (unsigned sample = 0; sample < 2; ++sample) {
    const std::vector<float> xa = rows(kT, kD, 10 + sample), fa = rows(kT, kD, 20 + sample);
    const std::vector<float> xe = rows(kT, kD, 30 + sample), fe = rows(kT, kD, 40 + sample);
    std::vector<model::TapEvent> q, f;
    const std::vector<std::string> attn_mods = {kP + "attn.wq_a", kP + "attn.wkv"};
    q.push_back({.modules = attn_mods, .x = xa.data(), .rows = kT, .cols = kD});
    f.push_back({.modules = attn_mods, .x = fa.data(), .rows = kT, .cols = kD});
    for (int e = 0; e < 3; ++e) {  // every expert repeats the layer input: counted once per pass
      const std::string m = kP + "ffn.experts." + std::to_string(e);
      q.push_back({.modules = {m + ".w1", m + ".w3"}, .x = xe.data(), .rows = kT, .cols = kD, .expert = e});
      f.push_back({.modules = {m + ".w1", m + ".w3"}, .x = fe.data(), .rows = kT, .cols = kD, .expert = e});
    }
    pass(s, q, f);
    attn_pairs.push_back({xa, fa});
    expert_pairs.push_back({xe, fe});
  }
  std::unique_ptr<dist::Communicator> self = dist::communicator_self();
  s.reduce_to_owners(*self, {{attn, {0}}, {shared, {0}}}, 0);
  const quant::HessianResult ca = cross.hessian({attn}, kD), ce = cross.hessian({shared}, kD);
  EXPECT_EQ(ca.num_tokens, 2 * kT);
  EXPECT_EQ(ce.num_tokens, 2 * kT);
  EXPECT_EQ(ca.num_tokens, s.hessian({attn}, kD).num_tokens);  // H's normalization
  expect_near(ca.h, cross_reference(attn_pairs), "attention ΔX·Xᵀ");
  expect_near(ce.h, cross_reference(expert_pairs), "all-experts ΔX·Xᵀ");
}

TEST_P(PairedTaps, WoAGroupsPairSeparatelyAndEqualStreamsGiveZero) {
  LayerStats s(true, W2Input::kUnweighted, GetParam()), cross(true, W2Input::kUnweighted, GetParam());
  s.set_cross(&cross);
  const HessianKey wo_a = key(HessianInput::kOwn, LinearRole::kAttnWoA);
  s.want_hessian(kP + "attn.wo_a", wo_a);
  const std::vector<float> x0 = rows(kT, kD, 1), f0 = rows(kT, kD, 2), x1 = rows(kT, kD, 3);
  const std::string m = kP + "attn.wo_a";
  // Group 1's full-precision input equals its quantized one: ΔX = 0.
  pass(s,
       {{.modules = {m}, .x = x0.data(), .rows = kT, .cols = kD, .group = 0},
        {.modules = {m}, .x = x1.data(), .rows = kT, .cols = kD, .group = 1}},
       {{.modules = {m}, .x = f0.data(), .rows = kT, .cols = kD, .group = 0},
        {.modules = {m}, .x = x1.data(), .rows = kT, .cols = kD, .group = 1}});
  expect_near(cross.hessian({wo_a, 0}, kD).h, cross_reference({{x0, f0}}), "wo_a group 0");
  const quant::HessianResult c1 = cross.hessian({wo_a, 1}, kD);
  EXPECT_EQ(c1.num_tokens, kT);
  for (float v : c1.h) ASSERT_EQ(v, 0.0f) << "X̃ = X must give ΔX·Xᵀ = 0 exactly";
}

INSTANTIATE_TEST_SUITE_P(Sums, PairedTaps, ::testing::Values(HessianSums::kExact, HessianSums::kFp32),
                         [](const ::testing::TestParamInfo<HessianSums>& p) {
                           return std::string(p.param == HessianSums::kExact ? "Exact" : "Fp32");
                         });

TEST(PairedTaps, TapsThatDoNotPairAreErrors) {
  LayerStats s(true, W2Input::kUnweighted, HessianSums::kExact), cross(true, W2Input::kUnweighted, HessianSums::kExact);
  s.set_cross(&cross);
  s.want_hessian(kP + "attn.wq_a", key(HessianInput::kAttnInput));
  s.want_hessian(kP + "ffn.experts.0.w2", key(HessianInput::kOwn, LinearRole::kExpertW2, 0));
  s.want_hessian(kP + "ffn.experts.1.w2", key(HessianInput::kOwn, LinearRole::kExpertW2, 1));
  const std::vector<float> x = rows(kT, kD, 1);
  const model::TapEvent attn{.modules = {kP + "attn.wq_a"}, .x = x.data(), .rows = kT, .cols = kD};
  const model::TapEvent e0{.modules = {kP + "ffn.experts.0.w2"}, .x = x.data(), .rows = kT, .cols = kD, .expert = 0};
  const model::TapEvent e1{.modules = {kP + "ffn.experts.1.w2"}, .x = x.data(), .rows = kT, .cols = kD, .expert = 1};
  model::TapEvent shorter = attn;
  shorter.rows = kT - 1;
  const auto expect_unpaired = [&](const std::vector<model::TapEvent>& q, const std::vector<model::TapEvent>& f,
                                   const char* what) {
    try {
      pass(s, q, f);
      ADD_FAILURE() << what << ": paired";
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find("GPTAQ"), std::string::npos) << what << ": " << err.what();
    }
  };
  expect_unpaired({attn, e1}, {attn, e0}, "another expert");
  expect_unpaired({shorter}, {attn}, "another row count");
  expect_unpaired({attn, e0}, {attn}, "a tap more on the quantized stream");
  expect_unpaired({attn}, {attn, e0}, "a tap more on the full-precision stream");
  // A paired tap with no ΔX·Xᵀ sums to add to is a programming error, not a silent classic GPTQ.
  LayerStats plain(true, W2Input::kUnweighted, HessianSums::kExact);
  plain.want_hessian(kP + "attn.wq_a", key(HessianInput::kAttnInput));
  plain.on_tap(attn);
  EXPECT_THROW(plain.on_paired_tap(attn, x.data()), Error);
}

}  // namespace
}  // namespace dsv4::calib

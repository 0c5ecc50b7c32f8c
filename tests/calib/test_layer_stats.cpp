// test_layer_stats.cpp: LayerStats, pass A's collector on the CPU: each tap feeds the Hessian its
// wanted modules were planned with (wq_a and wkv one, wo_a one per group, the all-experts w1/w3
// one counted once per pass), the weighted w2 convention drops unrouted rows, the plan and the
// taps must agree on the sharing, and the one-rank reduce keeps or frees each Hessian by who
// solves with it. The sums are compared with a HessianAccumulator fed the same rows (same order:
// bit-identical).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "calib/layer_stats.h"
#include "common/check.h"
#include "dist/communicator.h"

namespace dsv4::calib {
namespace {

using model::LinearRole;
constexpr int64_t kT = 9, kD = 6;
const std::string kP = "layers.2.";

std::vector<float> rows(int64_t n, int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * cols));
  for (float& v : x) v = g(rng);
  return x;
}

std::vector<float> summed(const std::vector<std::vector<float>>& batches, int64_t cols) {
  quant::HessianAccumulator acc(cols);
  for (const auto& b : batches) acc.add(b.data(), static_cast<int64_t>(b.size()) / cols);
  return acc.finalize().h;
}

HessianKey key(HessianInput input, LinearRole role = LinearRole::kHead, int expert = -1) {
  return {.layer = 2, .input = input, .role = role, .expert = expert};
}

TEST(LayerStats, OneTapFeedsOneHessianForAllItsModules) {
  LayerStats s(false, W2Input::kUnweighted, HessianSums::kFp32);
  const HessianKey attn = key(HessianInput::kAttnInput);
  s.want_hessian(kP + "attn.wq_a", attn);
  s.want_hessian(kP + "attn.wkv", attn);
  s.want_amax(kP + "attn.wkv");
  const std::vector<float> a = rows(kT, kD, 1), b = rows(kT, kD, 2);
  for (const auto* x : {&a, &b}) {
    s.next_pass();
    s.on_tap({.modules = {kP + "attn.wq_a", kP + "attn.wkv"}, .x = x->data(), .rows = kT, .cols = kD});
  }
  EXPECT_EQ(s.num_hessians(), 1u);
  const quant::HessianResult h = s.hessian({attn}, kD);
  EXPECT_EQ(h.num_tokens, 2 * kT);
  EXPECT_TRUE(h.h == summed({a, b}, kD));
  float amax = 0.0f;
  for (const auto* x : {&a, &b}) {
    for (float v : *x) amax = std::max(amax, std::fabs(v));
  }
  EXPECT_EQ(s.amax(kP + "attn.wkv"), amax);
  EXPECT_EQ(s.amax(kP + "attn.wq_a"), 0.0f);  // not wanted
  EXPECT_THROW(s.hessian({attn}, kD + 1), Error);  // a module of another width
}

TEST(LayerStats, WoAHasOneHessianPerGroup) {
  LayerStats s(false, W2Input::kUnweighted, HessianSums::kFp32);
  const HessianKey wo_a = key(HessianInput::kOwn, LinearRole::kAttnWoA);
  s.want_hessian(kP + "attn.wo_a", wo_a);
  const std::vector<float> g0 = rows(kT, kD, 3), g1 = rows(kT, kD, 4);
  s.on_tap({.modules = {kP + "attn.wo_a"}, .x = g0.data(), .rows = kT, .cols = kD, .group = 0});
  s.on_tap({.modules = {kP + "attn.wo_a"}, .x = g1.data(), .rows = kT, .cols = kD, .group = 1});
  EXPECT_EQ(s.num_hessians(), 2u);
  EXPECT_TRUE(s.hessian({wo_a, 0}, kD).h == summed({g0}, kD));
  EXPECT_TRUE(s.hessian({wo_a, 1}, kD).h == summed({g1}, kD));
  EXPECT_FALSE(s.holds({wo_a, 2}));
  EXPECT_TRUE(s.hessian({wo_a, 2}, kD).no_tokens);  // never tapped: all zero, for RTN
}

TEST(LayerStats, AllExpertsW13CountsTheLayerInputOncePerPass) {
  LayerStats s(true, W2Input::kUnweighted, HessianSums::kFp32);
  const HessianKey shared = key(HessianInput::kExpertW13, LinearRole::kHead, HessianKey::kAllExperts);
  for (int e = 0; e < 3; ++e) {
    s.want_hessian(kP + "ffn.experts." + std::to_string(e) + ".w1", shared);
    s.want_hessian(kP + "ffn.experts." + std::to_string(e) + ".w3", shared);
  }
  const std::vector<float> a = rows(kT, kD, 5), b = rows(kT, kD, 6);
  for (const auto* x : {&a, &b}) {
    s.next_pass();
    for (int e = 0; e < 3; ++e) {
      const std::string m = kP + "ffn.experts." + std::to_string(e);
      s.on_tap({.modules = {m + ".w1", m + ".w3"}, .x = x->data(), .rows = kT, .cols = kD, .expert = e});
    }
  }
  EXPECT_EQ(s.num_hessians(), 1u);
  const quant::HessianResult h = s.hessian({shared}, kD);
  EXPECT_EQ(h.num_tokens, 2 * kT);
  EXPECT_TRUE(h.h == summed({a, b}, kD));
}

TEST(LayerStats, WeightedW2DropsUnroutedRows) {
  const HessianKey w2 = key(HessianInput::kOwn, LinearRole::kExpertW2, 1);
  const std::string m = kP + "ffn.experts.1.w2";
  const std::vector<float> h = rows(4, kD, 7);
  const std::vector<float> weight = {0.5f, 0.0f, 2.0f, 0.0f};
  for (W2Input mode : {W2Input::kUnweighted, W2Input::kWeighted}) {
    LayerStats s(true, mode, HessianSums::kFp32);
    s.want_hessian(m, w2);
    s.on_tap({.modules = {m}, .x = h.data(), .rows = 4, .cols = kD, .expert = 1, .row_weights = weight.data()});
    std::vector<float> scaled;
    for (int64_t r = 0; r < 4; ++r) {
      for (int64_t c = 0; c < kD; ++c) scaled.push_back(h[static_cast<size_t>(r * kD + c)] * weight[static_cast<size_t>(r)]);
    }
    const std::vector<float> kept(scaled.begin(), scaled.begin() + kD);
    std::vector<float> weighted = kept;
    weighted.insert(weighted.end(), scaled.begin() + 2 * kD, scaled.begin() + 3 * kD);
    const quant::HessianResult got = s.hessian({w2}, kD);
    EXPECT_EQ(got.num_tokens, mode == W2Input::kWeighted ? 2 : 4);
    EXPECT_TRUE(got.h == summed({mode == W2Input::kWeighted ? weighted : h}, kD));
  }
}

// Exact sums (the default): the samples' Hessian is the same whatever split of the samples two
// "ranks" took, once their partials are reduced (here: summed through their limbs by hand with
// the reduce's integer buffers, via a one-rank reduce of each and an exact merge).
TEST(LayerStats, ExactSumsDoNotDependOnTheSplitOfTheSamples) {
  const HessianKey attn = key(HessianInput::kAttnInput);
  std::vector<std::vector<float>> samples;
  for (unsigned k = 0; k < 6; ++k) {
    std::vector<float> x = rows(kT, kD, 20 + k);
    for (float& v : x) v *= std::pow(10.0f, static_cast<float>(k) - 3.0f);  // scales that round in fp32
    samples.push_back(std::move(x));
  }
  auto collect = [&](const std::vector<size_t>& mine) {
    LayerStats s(false, W2Input::kUnweighted, HessianSums::kExact);
    s.want_hessian(kP + "attn.wq_a", attn);
    for (size_t i : mine) {
      s.next_pass();
      s.on_tap({.modules = {kP + "attn.wq_a"}, .x = samples[i].data(), .rows = kT, .cols = kD});
    }
    return s;
  };
  LayerStats one = collect({0, 1, 2, 3, 4, 5});
  LayerStats other_order = collect({5, 3, 1, 4, 2, 0});
  const quant::HessianResult h = one.hessian({attn}, kD);
  EXPECT_EQ(h.num_tokens, 6 * kT);
  EXPECT_TRUE(h.h == other_order.hessian({attn}, kD).h);
  // Through the reduce: rank 0 of two holding samples {0, 2, 4}, its peer's sum added as integers.
  quant::HessianExactSum peer(kD);
  for (size_t i : {1, 3, 5}) peer.add(samples[i].data(), kT);
  LayerStats mine = collect({0, 2, 4});
  struct PeerAdds final : public dist::Communicator {
    quant::HessianExactSum* peer;
    explicit PeerAdds(quant::HessianExactSum* p) : Communicator(0, 1, 1.0), peer(p) {}
    std::string_view backend() const override { return "test"; }
    void reduce(void* buf, size_t count, dist::ElemType type, dist::ReduceOp, int) override {
      ASSERT_EQ(type, dist::ElemType::kI64);
      ASSERT_EQ(count, peer->limb_count());
      const int64_t* theirs = peer->normalized_limbs();
      for (size_t i = 0; i < count; ++i) static_cast<int64_t*>(buf)[i] += theirs[i];
    }
    void all_reduce(void* buf, size_t count, dist::ElemType type, dist::ReduceOp) override {
      if (type == dist::ElemType::kI64 && count == 1) static_cast<int64_t*>(buf)[0] += peer->num_tokens();
    }
    void broadcast(void*, size_t, int) override {}
    void all_gather(const void* in, size_t bytes, void* out) override { std::memcpy(out, in, bytes); }
    void barrier() override {}
    [[noreturn]] void abort_job(int) noexcept override { std::abort(); }
  } comm(&peer);
  mine.reduce_to_owners(comm, {{attn, {0}}}, 0);
  const quant::HessianResult reduced = mine.hessian({attn}, kD);
  EXPECT_EQ(reduced.num_tokens, 6 * kT);
  EXPECT_TRUE(reduced.h == h.h);
  // fp32 sums, for contrast, depend on the order of these samples.
  LayerStats f1(false, W2Input::kUnweighted, HessianSums::kFp32), f2(false, W2Input::kUnweighted, HessianSums::kFp32);
  f1.want_hessian(kP + "attn.wq_a", attn), f2.want_hessian(kP + "attn.wq_a", attn);
  for (size_t k = 0; k < 6; ++k) {
    f1.on_tap({.modules = {kP + "attn.wq_a"}, .x = samples[k].data(), .rows = kT, .cols = kD});
    f2.on_tap({.modules = {kP + "attn.wq_a"}, .x = samples[5 - k].data(), .rows = kT, .cols = kD});
  }
  EXPECT_FALSE(f1.hessian({attn}, kD).h == f2.hessian({attn}, kD).h) << "pick samples whose fp32 sums round";
}

TEST(LayerStats, PlanAndTapsMustShareAlike) {
  const std::vector<float> x = rows(kT, kD, 8);
  {  // one key planned for two modules the forward taps separately
    LayerStats s(false, W2Input::kUnweighted, HessianSums::kFp32);
    const HessianKey k = key(HessianInput::kAttnInput);
    s.want_hessian(kP + "attn.wq_a", k);
    s.want_hessian(kP + "attn.wo_b", k);
    s.on_tap({.modules = {kP + "attn.wq_a"}, .x = x.data(), .rows = kT, .cols = kD});
    EXPECT_THROW(s.on_tap({.modules = {kP + "attn.wo_b"}, .x = x.data(), .rows = kT, .cols = kD}), Error);
  }
  {  // two keys planned for the modules of one tap
    LayerStats s(false, W2Input::kUnweighted, HessianSums::kFp32);
    s.want_hessian(kP + "attn.wq_a", key(HessianInput::kAttnInput));
    s.want_hessian(kP + "attn.wkv", key(HessianInput::kOwn, LinearRole::kAttnWkv));
    EXPECT_THROW(s.on_tap({.modules = {kP + "attn.wq_a", kP + "attn.wkv"}, .x = x.data(), .rows = kT, .cols = kD}),
                 Error);
  }
}

// Rank 0 of two whose peer's partial sums are all zero and whose all-gather contribution is
// `peer_text` (so the union of the Hessians can be checked); records the roots of the reduces.
class RankZeroOfTwo final : public dist::Communicator {
 public:
  explicit RankZeroOfTwo(std::string peer_text) : Communicator(0, 2, 1.0), peer_(std::move(peer_text)) {}
  std::string_view backend() const override { return "test"; }
  void reduce(void*, size_t, dist::ElemType, dist::ReduceOp, int root) override { roots.push_back(root); }
  void all_reduce(void*, size_t, dist::ElemType, dist::ReduceOp) override { roots.push_back(-1); }
  void broadcast(void*, size_t, int) override {}
  void all_gather(const void* in, size_t bytes, void* out) override {
    std::memcpy(out, in, bytes);
    char* theirs = static_cast<char*>(out) + bytes;
    if (bytes == sizeof(uint64_t) && !gathered_length_) {  // all_gather_strings: the lengths first
      const uint64_t n = peer_.size();
      std::memcpy(theirs, &n, sizeof n);
      gathered_length_ = true;
      return;
    }
    std::memset(theirs, 0, bytes);
    std::memcpy(theirs, peer_.data(), std::min(bytes, peer_.size()));
    gathered_length_ = false;
  }
  void barrier() override {}
  [[noreturn]] void abort_job(int) noexcept override { std::abort(); }
  std::vector<int> roots;  // per sum in id order: the reduce's root, or -1 for an all-reduce

 private:
  std::string peer_;
  bool gathered_length_ = false;
};

TEST(LayerStats, ReduceSendsEachSumToItsSolversAndFreesTheRest) {
  LayerStats s(false, W2Input::kUnweighted, HessianSums::kFp32);
  const HessianKey attn = key(HessianInput::kAttnInput), qr = key(HessianInput::kQr),
                   wo_b = key(HessianInput::kOwn, LinearRole::kAttnWoB);
  s.want_hessian(kP + "attn.wq_a", attn);
  s.want_hessian(kP + "attn.wq_b", qr);
  s.want_hessian(kP + "attn.wo_b", wo_b);
  const std::vector<float> x = rows(kT, kD, 9);
  s.on_tap({.modules = {kP + "attn.wq_a"}, .x = x.data(), .rows = kT, .cols = kD});
  s.on_tap({.modules = {kP + "attn.wo_b"}, .x = x.data(), .rows = kT, .cols = kD});
  s.on_expert_tokens(kP, 1, 5);
  // The peer saw qr's Hessian (layer 2, kQr, width 6), which this rank never did.
  const std::string peer = "2 " + std::to_string(static_cast<int>(HessianInput::kQr)) + " " +
                           std::to_string(static_cast<int>(LinearRole::kHead)) + " -1 -1 6\n";
  RankZeroOfTwo comm(peer);
  s.reduce_to_owners(comm, {{attn, {0}}, {qr, {0, 1}}, {wo_b, {1}}}, 3);
  // In id order the sums (attention input, qr, wo_b), then the token and expert counts.
  EXPECT_EQ(comm.roots, (std::vector<int>{0, -1, 1, -1, -1}));
  EXPECT_TRUE(s.hessian({attn}, kD).h == summed({x}, kD));
  EXPECT_TRUE(s.holds({qr}));  // a zero partial here; its tokens come from the peer
  EXPECT_TRUE(s.holds({wo_b}));
  EXPECT_THROW(s.hessian({wo_b}, kD), Error);  // rank 1's
  EXPECT_EQ(s.num_hessians(), 2u);
  EXPECT_EQ(s.expert_tokens(), (std::map<int, int64_t>{{1, 5}}));

  LayerStats orphan(false, W2Input::kUnweighted, HessianSums::kFp32);  // a Hessian no rank solves with
  orphan.want_hessian(kP + "attn.wq_a", attn);
  orphan.on_tap({.modules = {kP + "attn.wq_a"}, .x = x.data(), .rows = kT, .cols = kD});
  std::unique_ptr<dist::Communicator> self = dist::communicator_self();
  EXPECT_THROW(orphan.reduce_to_owners(*self, {}, 3), Error);
}

}  // namespace
}  // namespace dsv4::calib

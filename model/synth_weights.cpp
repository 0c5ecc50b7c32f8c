// synth_weights.cpp: draws synthetic tensors; release_encode.h encodes them in the release formats.
#include "model/synth_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/check.h"
#include "common/rng.h"
#include "model/release_encode.h"

namespace dsv4::model {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  return n;
}

// How to draw the values of a plain tensor, chosen from its name (mean + std·z, or uniform).
struct Distribution {
  float mean = 0.0f;
  float std = 1.0f;
  bool uniform = false;  // U[mean - std, mean + std) instead of bell-shaped
};

Distribution distribution_for(const ModelConfig& c, const ExpectedTensor& t) {
  const std::string& n = t.name;
  const float fan_in = t.shape.size() == 2 ? static_cast<float>(t.shape[1]) : 1.0f;
  if (ends_with(n, "_scale") && contains(n, "hc_")) return {1.0f, 0.5f, true};   // HC scales ~ 1
  if (ends_with(n, "_base") && contains(n, "hc_")) return {0.0f, 0.5f};
  if (ends_with(n, "_fn") && contains(n, "hc_")) return {0.0f, 1.0f / std::sqrt(fan_in)};
  if (ends_with(n, "attn_sink")) return {0.0f, 1.0f};
  if (ends_with(n, ".ape")) return {0.0f, 0.5f};
  if (ends_with(n, "gate.bias")) return {0.0f, 0.1f};
  if (ends_with(n, "norm.weight")) return {1.0f, 0.1f};
  if (n == "embed.weight") return {0.0f, 0.05f};
  // Every other BF16 matrix is a linear weight: N(0, 1/fan_in).
  return {0.0f, 1.0f / std::sqrt(fan_in)};
}

SynthBytes synth_tid2eid(const ModelConfig& c, const ExpectedTensor& t, uint64_t seed) {
  const int64_t rows = t.shape[0], k = t.shape[1];
  DSV4_CHECK_IN("synth", k <= c.n_routed_experts, "tid2eid wants %lld distinct ids of %d experts",
                static_cast<long long>(k), c.n_routed_experts);
  SynthBytes out(t.bytes());
  Rng rng(rng_seed_for(seed, t.name));
  std::vector<int64_t> ids(static_cast<size_t>(c.n_routed_experts));
  for (int64_t r = 0; r < rows; ++r) {
    // Partial Fisher-Yates: k distinct expert ids per token, as a hash table of a trained
    // model has (duplicates are legal but would count an expert twice).
    for (size_t e = 0; e < ids.size(); ++e) ids[e] = static_cast<int64_t>(e);
    for (int64_t j = 0; j < k; ++j) {
      const size_t pick = static_cast<size_t>(j) + rng.below(ids.size() - static_cast<size_t>(j));
      std::swap(ids[static_cast<size_t>(j)], ids[pick]);
    }
    std::memcpy(out.data() + static_cast<size_t>(r * k) * 8, ids.data(), static_cast<size_t>(k) * 8);
  }
  return out;
}

// Per-row and per-column magnitude factors exp(0.35·z): gives block scales a realistic spread
// (a few binades) instead of one value for the whole matrix.
std::vector<float> magnitude_factors(uint64_t seed, const std::string& key, int64_t n) {
  Rng rng(rng_seed_for(seed, key));
  std::vector<float> f(static_cast<size_t>(n));
  for (auto& v : f) v = std::exp(0.35f * rng.normal_approx());
  return f;
}

// Draws the logical float matrix of a linear, one row at a time into `row`.
class LinearDraw {
 public:
  LinearDraw(uint64_t seed, const std::string& name, int64_t rows, int64_t cols)
      : rows_(rows), cols_(cols), rng_(rng_seed_for(seed, name)),
        row_f_(magnitude_factors(seed, name + "#rows", rows)),
        col_f_(magnitude_factors(seed, name + "#cols", cols)),
        std_(1.0f / std::sqrt(static_cast<float>(cols))) {}
  void next_row(int64_t i, float* row) {
    const float s = std_ * row_f_[static_cast<size_t>(i)];
    for (int64_t j = 0; j < cols_; ++j) row[j] = rng_.normal_approx() * s * col_f_[static_cast<size_t>(j)];
  }

 private:
  int64_t rows_, cols_;
  Rng rng_;
  std::vector<float> row_f_, col_f_;
  float std_;
};

}  // namespace

SynthBytes synth_tensor(const ModelConfig& c, const ExpectedTensor& t, uint64_t seed) {
  DSV4_CHECK_IN("synth", t.encoding == TensorEncoding::kPlain,
                "%s is an encoded linear; use synth_encoded_linear", t.name.c_str());
  if (t.dtype == DType::kI64) return synth_tid2eid(c, t, seed);
  DSV4_CHECK_IN("synth", t.dtype == DType::kBF16 || t.dtype == DType::kF32,
                "no synthetic values for %s of dtype %s", t.name.c_str(),
                std::string(dtype_name(t.dtype)).c_str());
  const Distribution d = distribution_for(c, t);
  std::vector<float> values(static_cast<size_t>(numel(t.shape)));
  Rng rng(rng_seed_for(seed, t.name));
  for (float& v : values) {
    const float z = d.uniform ? static_cast<float>(2.0 * rng.uniform() - 1.0) : rng.normal_approx();
    v = d.mean + d.std * z;
  }
  return release_encode_plain(t, values.data());
}

SynthPair synth_encoded_linear(const ModelConfig& c, const ExpectedTensor& weight,
                               const ExpectedTensor& scale, uint64_t seed) {
  LinearDraw draw(seed, weight.name, weight.logical_shape[0], weight.logical_shape[1]);
  return release_encode_linear(weight, scale, c.fp8_block, [&](int64_t i, float* row) { draw.next_row(i, row); });
}

}  // namespace dsv4::model

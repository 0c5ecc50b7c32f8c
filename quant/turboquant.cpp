// turboquant.cpp: the TurboQuant codec (see turboquant.h for the format and its arithmetic).
#include "quant/turboquant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "common/check.h"

namespace dsv4::quant {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// scipy.stats.norm for N(0, 1): cdf (ndtr), survival function, pdf.
double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double normal_pdf(double x) { return std::isfinite(x) ? std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI) : 0.0; }

// The standard normal quantile: Acklam's rational start, then Newton steps on erfc to double
// precision. Only the Lloyd iteration's starting boundaries use it; 100 iterations forget them.
double normal_ppf(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01,  -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  double x;
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p > 1 - 0.02425) {
    const double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  for (int i = 0; i < 3; ++i) x -= (normal_cdf(x) - p) / normal_pdf(x);
  return x;
}

// E[X | a < X < b] for X ~ N(0, sigma²), as upstream's _gaussian_conditional_expectation (its
// fallback for an interval of probability < 1e-15 included).
double conditional_mean(double sigma, double a, double b) {
  const double as = std::isfinite(a) ? a / sigma : a, bs = std::isfinite(b) ? b / sigma : b;
  double prob;
  if (!std::isfinite(as)) {
    prob = normal_cdf(bs);
  } else if (!std::isfinite(bs)) {
    prob = normal_cdf(-as);
  } else {
    prob = normal_cdf(bs) - normal_cdf(as);
  }
  if (prob < 1e-15) {
    if (std::isfinite(a) && !std::isfinite(b)) return a + sigma;
    if (!std::isfinite(a) && std::isfinite(b)) return b - sigma;
    return (a + b) / 2.0;
  }
  return sigma * (normal_pdf(as) - normal_pdf(bs)) / prob;
}

// The Walsh–Hadamard butterfly by strides 1, 2, 4 ..., then one division by float(√n), in
// upstream's _fast_wht_batch order.
void fwht(float* x, int n) {
  for (int h = 1; h < n; h *= 2) {
    for (int s = 0; s < n; s += 2 * h) {
      for (int i = s; i < s + h; ++i) {
        const float a = x[i], b = x[i + h];
        x[i] = a + b;
        x[i + h] = a - b;
      }
    }
  }
  const float root = static_cast<float>(std::sqrt(static_cast<double>(n)));
  for (int i = 0; i < n; ++i) x[i] = x[i] / root;
}

int count_below(const std::vector<float>& boundaries, float y) {
  int i = 0;
  while (i < static_cast<int>(boundaries.size()) && boundaries[static_cast<size_t>(i)] < y) ++i;
  return i;
}

}  // namespace

std::vector<double> tq_lloyd_max_centroids(int bits, int dim) {
  const int n = 1 << bits;
  if (bits == 2) {  // upstream's fixed 2-bit table
    const double s = std::sqrt(static_cast<double>(dim));
    return {-1.51 / s, -0.453 / s, 0.453 / s, 1.51 / s};
  }
  const double sigma = 1.0 / std::sqrt(static_cast<double>(dim));
  std::vector<double> bound(static_cast<size_t>(n - 1)), cent(static_cast<size_t>(n));
  for (int i = 1; i < n; ++i) bound[static_cast<size_t>(i - 1)] = sigma * normal_ppf(static_cast<double>(i) / n);
  for (int it = 0; it < 100; ++it) {
    cent[0] = conditional_mean(sigma, -kInf, bound[0]);
    for (int i = 1; i < n - 1; ++i) cent[static_cast<size_t>(i)] = conditional_mean(sigma, bound[i - 1], bound[i]);
    cent[static_cast<size_t>(n - 1)] = conditional_mean(sigma, bound[static_cast<size_t>(n - 2)], kInf);
    for (int i = 0; i < n - 1; ++i) bound[static_cast<size_t>(i)] = (cent[i] + cent[i + 1]) / 2;
  }
  std::sort(cent.begin(), cent.end());
  return cent;
}

void tq_signs(uint64_t seed, int group_size, std::vector<float>* s1, std::vector<float>* s2) {
  // torch's CPU generator is MT19937 (init_genrand); randint(0, 2) takes one 32-bit output per
  // element, modulo the range.
  std::mt19937 mt(static_cast<uint32_t>(seed));
  for (std::vector<float>* s : {s1, s2}) {
    s->resize(static_cast<size_t>(group_size));
    for (float& v : *s) v = (mt() % 2 == 1) ? 1.0f : -1.0f;
  }
}

TqCodec::TqCodec(int bits, int group_size) : bits_(bits), group_(group_size) {
  DSV4_CHECK_IN("quant", bits >= 2 && bits <= 4, "turboquant: %d bits; 2, 3 and 4 are defined", bits);
  DSV4_CHECK_IN("quant", group_size >= 8 && group_size <= 4096 && (group_size & (group_size - 1)) == 0,
                "turboquant: group size %d; a power of two from 8 to 4096 is required", group_size);
  for (double c : tq_lloyd_max_centroids(bits, group_size)) centroids_.push_back(static_cast<float>(c));
  for (size_t i = 0; i + 1 < centroids_.size(); ++i) boundaries_.push_back((centroids_[i] + centroids_[i + 1]) / 2.0f);
  tq_signs(kTqSeed, group_size, &signs1_, &signs2_);
}

void TqCodec::rotate(float* x) const {
  for (int i = 0; i < group_; ++i) x[i] *= signs1_[static_cast<size_t>(i)];
  fwht(x, group_);
  for (int i = 0; i < group_; ++i) x[i] *= signs2_[static_cast<size_t>(i)];
}

void TqCodec::rotate_inverse(float* y) const {
  for (int i = 0; i < group_; ++i) y[i] *= signs2_[static_cast<size_t>(i)];
  fwht(y, group_);
  for (int i = 0; i < group_; ++i) y[i] *= signs1_[static_cast<size_t>(i)];
}

int64_t tq_groups_per_row(int64_t cols, int group_size) { return (cols + group_size - 1) / group_size; }

float tq_norm(const float* x, int n) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);  // each square exact
  return static_cast<float>(std::sqrt(sum));
}

float tq_corrected_norm(const TqCodec& codec, float x_norm, const int32_t* indices) {
  std::vector<float> r(static_cast<size_t>(codec.group_size()));
  for (size_t j = 0; j < r.size(); ++j) r[j] = codec.centroids()[static_cast<size_t>(indices[j])];
  codec.rotate_inverse(r.data());
  const float recon = tq_norm(r.data(), codec.group_size());
  return x_norm / (recon > 0.0f ? recon : 1.0f);
}

float tq_quantize_group(const TqCodec& codec, const float* x, int32_t* indices) {
  const int g = codec.group_size();
  const float n = tq_norm(x, g);
  const float safe = n > 0.0f ? n : 1.0f;
  std::vector<float> y(x, x + g);
  for (float& v : y) v = v / safe;
  codec.rotate(y.data());
  for (int j = 0; j < g; ++j) indices[j] = count_below(codec.boundaries(), y[static_cast<size_t>(j)]);
  return tq_corrected_norm(codec, n, indices);
}

void tq_dequantize_group(const TqCodec& codec, const int32_t* indices, float norm, float* out) {
  const int g = codec.group_size();
  for (int j = 0; j < g; ++j) out[j] = codec.centroids()[static_cast<size_t>(indices[j])];
  codec.rotate_inverse(out);
  for (int j = 0; j < g; ++j) out[j] = out[j] * norm;
}

TqResult tq_quantize(const TqCodec& codec, const float* w, int64_t rows, int64_t cols) {
  const int g = codec.group_size();
  const int64_t groups = tq_groups_per_row(cols, g), padded = groups * g;
  TqResult r;
  r.indices.resize(static_cast<size_t>(rows * padded));
  r.norms.resize(static_cast<size_t>(rows * groups));
  std::vector<float> x(static_cast<size_t>(g));
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t k = 0; k < groups; ++k) {
      for (int j = 0; j < g; ++j) {
        const int64_t c = k * g + j;
        x[static_cast<size_t>(j)] = c < cols ? w[row * cols + c] : 0.0f;  // upstream pads with zeros
      }
      r.norms[static_cast<size_t>(row * groups + k)] =
          tq_quantize_group(codec, x.data(), r.indices.data() + row * padded + k * g);
    }
  }
  r.dequant = tq_dequantize(codec, r.indices, r.norms, rows, cols);
  return r;
}

std::vector<float> tq_dequantize(const TqCodec& codec, const std::vector<int32_t>& indices,
                                 const std::vector<float>& norms, int64_t rows, int64_t cols) {
  const int g = codec.group_size();
  const int64_t groups = tq_groups_per_row(cols, g), padded = groups * g;
  DSV4_CHECK_IN("quant",
                static_cast<int64_t>(indices.size()) == rows * padded &&
                    static_cast<int64_t>(norms.size()) == rows * groups,
                "turboquant: %zu indices and %zu norms for [%lld, %lld] in groups of %d", indices.size(), norms.size(),
                static_cast<long long>(rows), static_cast<long long>(cols), g);
  std::vector<float> out(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(g));
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t k = 0; k < groups; ++k) {
      tq_dequantize_group(codec, indices.data() + row * padded + k * g, norms[static_cast<size_t>(row * groups + k)],
                          x.data());
      for (int j = 0; j < g && k * g + j < cols; ++j) out[static_cast<size_t>(row * cols + k * g + j)] = x[static_cast<size_t>(j)];
    }
  }
  return out;
}

std::vector<uint8_t> tq_pack(const TqCodec& codec, const std::vector<int32_t>& idx) {
  const int g = codec.group_size();
  DSV4_CHECK_IN("quant", idx.size() % static_cast<size_t>(g) == 0, "turboquant: %zu indices are not whole groups of %d",
                idx.size(), g);
  const uint32_t top = (1u << codec.bits()) - 1;
  for (int32_t v : idx) {
    DSV4_CHECK_IN("quant", v >= 0 && static_cast<uint32_t>(v) <= top, "turboquant: index %d outside [0, %u]", v, top);
  }
  std::vector<uint8_t> out(idx.size() * static_cast<size_t>(codec.bits()) / 8);
  const auto u = [&](size_t i) { return static_cast<uint32_t>(idx[i]); };
  if (codec.bits() == 3) {  // eight indices in a little-endian 24-bit word, index k at bit 3k
    for (size_t b = 0, i = 0; i < idx.size(); i += 8, b += 3) {
      uint32_t word = 0;
      for (size_t k = 0; k < 8; ++k) word |= u(i + k) << (3 * k);
      out[b] = static_cast<uint8_t>(word), out[b + 1] = static_cast<uint8_t>(word >> 8),
      out[b + 2] = static_cast<uint8_t>(word >> 16);
    }
  } else {  // 4 bits: even index in the low nibble; 2 bits: index k at bit 2k
    const size_t per = 8 / static_cast<size_t>(codec.bits());
    for (size_t b = 0; b < out.size(); ++b) {
      uint32_t v = 0;
      for (size_t k = 0; k < per; ++k) v |= u(b * per + k) << (static_cast<size_t>(codec.bits()) * k);
      out[b] = static_cast<uint8_t>(v);
    }
  }
  return out;
}

std::vector<int32_t> tq_unpack(const TqCodec& codec, const uint8_t* packed, int64_t num_groups) {
  const size_t n = static_cast<size_t>(num_groups) * static_cast<size_t>(codec.group_size());
  const uint32_t mask = (1u << codec.bits()) - 1;
  std::vector<int32_t> out(n);
  if (codec.bits() == 3) {
    for (size_t b = 0, i = 0; i < n; i += 8, b += 3) {
      const uint32_t word = packed[b] | (static_cast<uint32_t>(packed[b + 1]) << 8) | (static_cast<uint32_t>(packed[b + 2]) << 16);
      for (size_t k = 0; k < 8; ++k) out[i + k] = static_cast<int32_t>((word >> (3 * k)) & mask);
    }
    return out;
  }
  const size_t per = 8 / static_cast<size_t>(codec.bits());
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<int32_t>((packed[i / per] >> (static_cast<size_t>(codec.bits()) * (i % per))) & mask);
  }
  return out;
}

}  // namespace dsv4::quant

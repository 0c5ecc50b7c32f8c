// cholesky.cpp: fp64 CPU Cholesky chains (see cholesky.h).
#include "quant/cholesky.h"

#include <cmath>

#include "common/check.h"

namespace dsv4::quant {
namespace {

// Lower Cholesky factor of a [n, n] row-major SPD matrix. A non-positive or NaN pivot means
// "not positive definite": return false so the caller can raise the damping (torch raises
// LinAlgError at the same point).
bool cholesky_lower(const std::vector<double>& a, int64_t n, std::vector<double>* l_out) {
  std::vector<double>& l = *l_out;
  l.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    const double* lj = &l[static_cast<size_t>(j * n)];
    double s = a[static_cast<size_t>(j * n + j)];
    for (int64_t k = 0; k < j; ++k) s -= lj[k] * lj[k];
    if (!(s > 0.0) || !std::isfinite(s)) return false;
    const double djj = std::sqrt(s);
    l[static_cast<size_t>(j * n + j)] = djj;
    for (int64_t i = j + 1; i < n; ++i) {
      double* li = &l[static_cast<size_t>(i * n)];
      double t = a[static_cast<size_t>(i * n + j)];
      for (int64_t k = 0; k < j; ++k) t -= li[k] * lj[k];
      li[j] = t / djj;
    }
  }
  return true;
}

void check_square(const std::vector<double>& a, int64_t n) {
  DSV4_CHECK_IN("cholesky", n > 0 && a.size() == static_cast<size_t>(n * n), "matrix has %zu values, expected %lld^2",
                a.size(), static_cast<long long>(n));
}

}  // namespace

bool cholesky_inverse_lower_reference(const std::vector<double>& a, int64_t n, std::vector<double>* l_inv) {
  check_square(a, n);
  std::vector<double> l;
  if (!cholesky_lower(a, n, &l)) return false;
  // M = L^-1 row by row (row i only mixes rows k < i), so every update is a contiguous axpy.
  std::vector<double>& m = *l_inv;
  m.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double* mi = &m[static_cast<size_t>(i * n)];
    mi[i] = 1.0;
    const double* li = &l[static_cast<size_t>(i * n)];
    for (int64_t k = 0; k < i; ++k) {
      const double c = li[k];
      const double* mk = &m[static_cast<size_t>(k * n)];
      for (int64_t j = 0; j <= k; ++j) mi[j] -= c * mk[j];
    }
    const double inv = 1.0 / li[i];
    for (int64_t j = 0; j <= i; ++j) mi[j] *= inv;
  }
  return true;
}

bool cholesky_upper_of_inverse_reference(const std::vector<double>& a, int64_t n, std::vector<double>* u) {
  check_square(a, n);
  // torch.linalg.cholesky(A), then torch.cholesky_inverse(L) = L^-T L^-1 = MᵀM with M = L^-1.
  std::vector<double> m;
  if (!cholesky_inverse_lower_reference(a, n, &m)) return false;
  // Ainv = Mᵀ M = Σ_i m_i m_iᵀ (lower triangle, then mirrored).
  std::vector<double> ainv(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const double* mi = &m[static_cast<size_t>(i * n)];
    for (int64_t r = 0; r <= i; ++r) {
      const double mr = mi[r];
      double* ar = &ainv[static_cast<size_t>(r * n)];
      for (int64_t c = 0; c <= r; ++c) ar[c] += mr * mi[c];
    }
  }
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = r + 1; c < n; ++c) ainv[static_cast<size_t>(r * n + c)] = ainv[static_cast<size_t>(c * n + r)];
  }
  // torch.linalg.cholesky(Ainv, upper=True): U = L2ᵀ.
  std::vector<double> l2;
  if (!cholesky_lower(ainv, n, &l2)) return false;
  u->assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j <= i; ++j) (*u)[static_cast<size_t>(j * n + i)] = l2[static_cast<size_t>(i * n + j)];
  }
  return true;
}

}  // namespace dsv4::quant

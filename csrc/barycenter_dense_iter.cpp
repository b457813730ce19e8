// One fixed-support barycenter iteration (iterative Bregman projections) over the dense kernel, and the
// residuals of its state (the update is written out at the top of csrc/barycenter_dense.cpp; the soft-mins are in
// csrc/barycenter_dense_kernel.cpp).
#include "barycenter_dense_iter.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "softmin_common.hpp"

namespace monge_barycenter_dense {

using namespace monge_softmin;

inline double relax1(double old, double nw, double omega) {
  return (omega == 1.0 || !std::isfinite(nw)) ? nw : old + omega * (nw - old);
}

// sum_q |e^{(p_q - s_q)/eps} - t_q|: an l1 marginal residual (t_q: the target).
double l1_residual(const double *p, const double *s, const double *t, int64_t len, double eps) {
  const int64_t lf = len / WD * WD;
  const VD vs = set1(LOG2E / eps), zero = set1(0.0);
  VD acc = zero;
  for (int64_t q = 0; q < lf; q += WD) {
    const VD d = sub(vexp2(mul(sub(load(p + q), load(s + q)), vs)), load(t + q));
    acc = add(acc, maxv(d, sub(zero, d)));
  }
  double r = reduce_add(acc);
  for (int64_t q = lf; q < len; ++q) r += std::fabs(std::exp((p[q] - s[q]) / eps) - t[q]);
  return r;
}

// log b from the column soft-mins S0 (R x m) and (debiased) h: -sum_r lam_r S0_r / eps (+ h / eps), or with a
// penalty rho, (t / eps) log sum_r lam_r e^{-S0_r / t}, t = rho + eps.
void log_barycenter(const Problem &P, const double *S0, const double *h, double *lbo) {
  const int64_t R = P.R, m = P.m;
  const double eps = P.eps, t = P.rho + eps;
  for (int64_t j = 0; j < m; ++j) {
    double lb = 0.0;
    if (std::isinf(P.rho)) {
      for (int64_t r = 0; r < R; ++r) lb -= P.lam[r] * S0[r * m + j];
      lb /= eps;
    } else {
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t r = 0; r < R; ++r) mx = std::max(mx, std::log(P.lam[r]) - S0[r * m + j] / t);
      double z = 0.0;
      for (int64_t r = 0; r < R; ++r) z += std::exp(std::log(P.lam[r]) - S0[r * m + j] / t - mx);
      lb = (t / eps) * (mx + std::log(z));
    }
    lbo[j] = h != nullptr ? lb + h[j] / eps : lb;
  }
}

// One iteration from `s` into `o` (all of o written); false where a soft-min was unreliable.
bool iterate(const Problem &P, const State &s, State &o, double omega, Work &w) {
  const int64_t R = P.R, n = P.n, m = P.m;
  const double eps = P.eps;
  for (int64_t q = 0; q < R * n; ++q) o.f[q] = relax1(s.f[q], P.kappa * (eps * P.la[q] + s.S1[q]), omega);
  if (!softmins(P.k, 0, o.f.data(), R, P.c0, eps, o.S0.data(), w)) return false;
  log_barycenter(P, o.S0.data(), P.debias ? s.h.data() : nullptr, o.lb.data());
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < m; ++j)
      o.g[r * m + j] = relax1(s.g[r * m + j], P.kappa * (eps * o.lb[j] + o.S0[r * m + j]), omega);
  if (!P.debias) return softmins(P.k, 1, o.g.data(), R, P.c0, eps, o.S1.data(), w);
  for (int64_t j = 0; j < m; ++j) o.h[j] = 0.5 * (s.h[j] + eps * o.lb[j] + s.Sh[j]);
  if (!P.k.sym)
    return softmins(P.k, 1, o.g.data(), R, P.c0, eps, o.S1.data(), w) &&
           softmins(P.k, 0, o.h.data(), 1, P.c0, eps, o.Sh.data(), w);
  // symmetric: S1 and Sh in one pass (R + 1 rows)
  std::copy(o.g.begin(), o.g.end(), w.H.begin());
  std::copy(o.h.begin(), o.h.end(), w.H.begin() + R * m);
  if (!softmins(P.k, 1, w.H.data(), R + 1, P.c0, eps, w.S.data(), w)) return false;
  std::copy(w.S.begin(), w.S.begin() + R * n, o.S1.begin());
  std::copy(w.S.begin() + R * n, w.S.begin() + (R + 1) * n, o.Sh.begin());
  return true;
}

// max(a, b), NaN if either is NaN (a NaN residual must reach the caller: status 'diverged').
inline double nan_max(double a, double b) {
  return std::isnan(a) || std::isnan(b) ? std::numeric_limits<double>::quiet_NaN() : std::max(a, b);
}

// The soft-mins and log b of the state (f, g, h) in s: one pass over a symmetric kernel (2R + 1 rows), else two.
bool start_state(const Problem &P, State &s, Work &w) {
  const int64_t R = P.R, n = P.n, m = P.m, nh = P.debias ? 1 : 0;
  bool ok;
  if (P.k.sym) {
    std::copy(s.f.begin(), s.f.end(), w.H.begin());
    std::copy(s.g.begin(), s.g.end(), w.H.begin() + R * n);
    std::copy(s.h.begin(), s.h.end(), w.H.begin() + 2 * R * n);
    ok = softmins(P.k, 0, w.H.data(), 2 * R + nh, P.c0, P.eps, w.S.data(), w);
    std::copy(w.S.begin(), w.S.begin() + R * n, s.S0.begin());
    std::copy(w.S.begin() + R * n, w.S.begin() + 2 * R * n, s.S1.begin());
    std::copy(w.S.begin() + 2 * R * n, w.S.begin() + (2 * R + nh) * n, s.Sh.begin());
  } else {
    std::copy(s.f.begin(), s.f.end(), w.H.begin());
    std::copy(s.h.begin(), s.h.end(), w.H.begin() + R * n);
    ok = softmins(P.k, 0, w.H.data(), R + nh, P.c0, P.eps, w.S.data(), w) &&
         softmins(P.k, 1, s.g.data(), R, P.c0, P.eps, s.S1.data(), w);
    std::copy(w.S.begin(), w.S.begin() + R * m, s.S0.begin());
    std::copy(w.S.begin() + R * m, w.S.begin() + (R + nh) * m, s.Sh.begin());
  }
  if (ok) log_barycenter(P, s.S0.data(), P.debias ? s.h.data() : nullptr, s.lb.data());
  return ok;
}

// The first marginals' residuals max_r sum_i |P_r 1 - ta_r| (ta = a, or a e^{-f/rho} with a penalty).
double rows_residual(const Problem &P, const State &s, std::vector<double> &tmp) {
  double worst = 0.0;
  for (int64_t r = 0; r < P.R; ++r) {
    const double *f = s.f.data() + r * P.n, *a = P.a + r * P.n;
    for (int64_t i = 0; i < P.n; ++i)  // a zero weight has f = -inf: its target is 0, not 0 * inf
      tmp[i] = std::isinf(P.rho) || !(a[i] > 0.0) ? a[i] : a[i] * std::exp(-f[i] / P.rho);
    worst = nan_max(worst, l1_residual(f, s.S1.data() + r * P.n, tmp.data(), P.n, P.eps));
  }
  return worst;
}

// max_r (rows_r + cols_r) (+ the debiasing residual sum_j |d_j (K d)_j - b_j|): the solver's error.
double full_error(const Problem &P, const State &s, std::vector<double> &tmp) {
  double worst = 0.0;
  std::vector<double> b(P.m), tb(P.m);
  for (int64_t j = 0; j < P.m; ++j) b[j] = std::exp(s.lb[j]);
  for (int64_t r = 0; r < P.R; ++r) {
    const double *f = s.f.data() + r * P.n, *a = P.a + r * P.n, *g = s.g.data() + r * P.m;
    for (int64_t i = 0; i < P.n; ++i)  // a zero weight has f = -inf: its target is 0, not 0 * inf
      tmp[i] = std::isinf(P.rho) || !(a[i] > 0.0) ? a[i] : a[i] * std::exp(-f[i] / P.rho);
    for (int64_t j = 0; j < P.m; ++j) tb[j] = std::isinf(P.rho) ? b[j] : std::exp(s.lb[j] - g[j] / P.rho);
    const double e = l1_residual(f, s.S1.data() + r * P.n, tmp.data(), P.n, P.eps) +
                     l1_residual(g, s.S0.data() + r * P.m, tb.data(), P.m, P.eps);
    worst = nan_max(worst, e);
  }
  if (P.debias) worst += l1_residual(s.h.data(), s.Sh.data(), b.data(), P.m, P.eps);
  return worst;
}

}  // namespace monge_barycenter_dense

// The per-iteration vector passes of the compiled dense Sinkhorn loops (csrc/sinkhorn_dense.cpp,
// csrc/sinkhorn_small.cpp), vectorised with simd.hpp's vexp / vlog (a scalar exp and log per entry were most
// of an iteration's time next to the n x m product at n <= 256):
//   shifted_exp : u_k = e^{(h_k - M)/eps}, h = pot + eps lw, M = max h (returned; -inf when no finite h);
//   shifted_log : S_k <- c0 - (M + eps log S_k), and whether every sum was reliable (terms tiny / ulp <= S_k <=
//                 DBL_MAX; NaN fails);
//   residual    : sum_k |w_k e^{lw_k + (pot_k - S_k)/eps} - target_k|, target = w (rho = inf: a hard marginal)
//                 or w e^{-pot/rho} (KL), and the plan's mass along the side (sum of the first terms).
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

#include "simd.hpp"

namespace monge {
namespace softvec {

using namespace monge::simd;

inline double shifted_exp(const double *pot, const double *lw, double eps, int64_t len, double *u) {
  const int64_t lf = len / WD * WD;
  const VD ve = set1(eps);
  VD vm = set1(-std::numeric_limits<double>::infinity());
  for (int64_t k = 0; k < lf; k += WD) {
    const VD h = add(load(pot + k), mul(ve, load(lw + k)));
    store(u + k, h);
    vm = maxv(h, vm);  // (NaN h: the second operand)
  }
  double M = reduce_max(vm);
  bool nan = false;  // (vexp maps NaN to 0: a NaN potential must fail here, as the scalar exp's NaN sum did)
  for (int64_t k = lf; k < len; ++k) M = std::max(M, u[k] = pot[k] + eps * lw[k]);
  for (int64_t k = 0; k < len; ++k) nan |= u[k] != u[k];
  if (nan) return std::numeric_limits<double>::quiet_NaN();
  if (!std::isfinite(M)) return M;
  const double inv = 1.0 / eps;
  const VD vM = set1(M), vi = set1(inv);
  for (int64_t k = 0; k < lf; k += WD) store(u + k, vexp(mul(sub(load(u + k), vM), vi)));
  for (int64_t k = lf; k < len; ++k) u[k] = std::exp((u[k] - M) * inv);
  return M;
}

inline bool shifted_log(double *S, int64_t len, int64_t terms, double c0, double M, double eps) {
  const double floor = static_cast<double>(terms) * DBL_MIN / DBL_EPSILON;  // terms: entries in each sum
  bool ok = true;
  for (int64_t k = 0; k < len; ++k) ok &= S[k] >= floor && S[k] <= DBL_MAX;  // NaN fails both
  if (!ok) return false;
  const int64_t lf = len / WD * WD;
  const VD vc = set1(c0 - M), ve = set1(eps);
  for (int64_t k = 0; k < lf; k += WD) store(S + k, fnmadd(ve, vlog(load(S + k)), vc));
  for (int64_t k = lf; k < len; ++k) S[k] = (c0 - M) - eps * std::log(S[k]);
  return true;
}

inline double residual(const double *pot, const double *S, const double *lw, const double *w, int64_t len,
                       double eps, double rho, double *mass = nullptr) {
  const bool hard = std::isinf(rho);
  const int64_t lf = len / WD * WD;
  const double inv = 1.0 / eps, ir = hard ? 0.0 : -1.0 / rho;
  const VD vi = set1(inv), vr = set1(ir);
  bool nan = false;  // (vexp maps NaN to 0: a NaN state must give a NaN residual, as the scalar exp did)
  for (int64_t k = 0; k < len; ++k) nan |= (pot[k] != pot[k]) | (S[k] != S[k]);
  if (nan) return std::numeric_limits<double>::quiet_NaN();
  VD acc = set1(0.0), tot = set1(0.0);
  for (int64_t k = 0; k < lf; k += WD) {
    const VD p = load(pot + k);
    const VD m = vexp(fmadd(sub(p, load(S + k)), vi, load(lw + k)));
    const VD t = hard ? load(w + k) : mul(load(w + k), vexp(mul(p, vr)));
    tot = add(tot, m);
    VD d = sub(m, t);
    d = maxv(d, sub(set1(0.0), d));  // |d|
    acc = add(acc, d);
  }
  double r = reduce_add(acc), total = reduce_add(tot);
  for (int64_t k = lf; k < len; ++k) {
    const double mk = std::exp(lw[k] + (pot[k] - S[k]) * inv);
    total += mk;
    r += std::fabs(mk - (hard ? w[k] : w[k] * std::exp(pot[k] * ir)));
  }
  if (mass) *mass = total;
  return r;
}

}  // namespace softvec
}  // namespace monge

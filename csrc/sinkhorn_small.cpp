// The two ends of a small dense Sinkhorn solve in one call each (float64, CPU, one problem), against the Gibbs
// kernel K = exp(-(C - c0) / eps) that csrc/sinkhorn_dense.cpp builds and iterates with:
//   start : (f, g) -> Sf = softmin_0(f + eps log a), Sg = softmin_1(g + eps log b) and the residuals of both
//           marginals there (the loop state and its first check);
//   finish: g -> the final half step f = kappa_a softmin_1(g + eps log b), Sf, the residuals of the returned
//           (f, g) and the dual objective (what monge/solvers/sinkhorn.py computes in torch otherwise).
// Each soft-min is a shifted product, softmin(h) = c0 - (M + eps log sum K e^{(h - M)/eps}), M = max h; a sum
// below len * tiny / ulp (or not finite) may have lost terms to underflow: the call then says so (ok = false)
// and the caller computes in the log domain.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "bind_util.hpp"
#include "dense_rows.hpp"

namespace nb = nanobind;

namespace monge_sinkhorn_small {

using Vec1 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Mat = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

struct Side {  // one marginal: log-weights, weights, penalty (inf: hard), kappa = rho / (rho + eps)
  const double *lw, *w;
  int64_t len;
  double rho, kappa;
};

// S (size n if dim == 1, m if dim == 0) = softmin along `dim` of h = pot + eps lw; false where a sum is unreliable.
bool softmin(const double *K, int64_t n, int64_t m, double c0, double eps, int dim, const double *pot,
             const double *lw, double *S, std::vector<double> &u) {
  const int64_t len = dim == 0 ? n : m, out = dim == 0 ? m : n;
  double M = -std::numeric_limits<double>::infinity();
  for (int64_t k = 0; k < len; ++k) M = std::max(M, pot[k] + eps * lw[k]);
  if (!std::isfinite(M)) return false;
  const double inv = 1.0 / eps;
  for (int64_t k = 0; k < len; ++k) u[k] = std::exp(((pot[k] + eps * lw[k]) - M) * inv);
  if (dim == 0) {  // S_j = sum_i K_ij u_i: axpy over rows
    std::fill(S, S + m, 0.0);
    monge::dense::axpy_rows(K, u.data(), m, 0, n, S);
  } else {  // S_i = sum_j K_ij u_j: row dots, four vector accumulators (a scalar sum is one dependency chain)
    monge::dense::dot_rows(K, u.data(), m, 0, n, S);
  }
  const double floor = static_cast<double>(len) * DBL_MIN / DBL_EPSILON;
  bool ok = true;
  for (int64_t k = 0; k < out; ++k) {
    ok &= S[k] >= floor && S[k] <= DBL_MAX;  // NaN fails both
    S[k] = c0 - (M + eps * std::log(S[k]));
  }
  return ok;
}

// sum_k |w_k e^{lw_k + (pot_k - S_k)/eps} - target_k|, target = w (hard) or w e^{-pot/rho} (KL): the l1
// residual of the side's optimality condition; *mass += the plan's mass along it.
double residual(const Side &s, const double *pot, const double *S, double eps, double *mass) {
  double r = 0.0, total = 0.0;
  const bool hard = std::isinf(s.rho);
  for (int64_t k = 0; k < s.len; ++k) {
    const double mk = std::exp(s.lw[k] + (pot[k] - S[k]) / eps);
    total += mk;
    r += std::fabs(mk - (hard ? s.w[k] : s.w[k] * std::exp(-pot[k] / s.rho)));
  }
  if (mass) *mass = total;
  return r;
}

// The side's term of the dual objective: sum w f (hard), -rho sum w expm1(-f / rho) (KL).
double conjugate(const Side &s, const double *pot) {
  double c = 0.0;
  const bool hard = std::isinf(s.rho);
  for (int64_t k = 0; k < s.len; ++k) c += hard ? s.w[k] * pot[k] : -s.rho * s.w[k] * std::expm1(-pot[k] / s.rho);
  return c;
}

double total(const Side &s) {
  double t = 0.0;
  for (int64_t k = 0; k < s.len; ++k) t += s.w[k];
  return t;
}

void check(const Mat &K, const Vec1 &lwa, const Vec1 &lwb, const Vec1 &wa, const Vec1 &wb, const Vec1 &f,
           const Vec1 &g, double eps) {
  const size_t n = K.shape(0), m = K.shape(1);
  if (lwa.shape(0) != n || wa.shape(0) != n || f.shape(0) != n || lwb.shape(0) != m || wb.shape(0) != m ||
      g.shape(0) != m || n == 0 || m == 0)
    throw nb::value_error("sinkhorn_small: lwa, wa, f must have n entries and lwb, wb, g m entries (K: n x m, "
                          "non-empty)");
  if (!(eps > 0.0) || !std::isfinite(eps)) throw nb::value_error("sinkhorn_small: eps must be positive and finite");
}

nb::object vec(std::vector<double> &v, int64_t len) {
  auto p = monge::zeros<double>(len);
  std::copy(v.begin(), v.begin() + len, p.get());
  return nb::cast(monge::owned<double, 1>(std::move(p), {size_t(len)}));
}

// (f, Sf, Sg, rows, cols, value, ok). half = false: the state at the given (f, g) (start). half = true: f is
// replaced by kappa_a softmin_1(g + eps lwb) first (finish). value: the dual objective at (f, g).
nb::tuple sinkhorn_small_state(Mat K, double c0, double eps, Vec1 lwa, Vec1 lwb, Vec1 wa, Vec1 wb, double rho_a,
                               double rho_b, Vec1 f0, Vec1 g, bool half) {
  check(K, lwa, lwb, wa, wb, f0, g, eps);
  const int64_t n = K.shape(0), m = K.shape(1);
  const double inf = std::numeric_limits<double>::infinity();
  Side A{lwa.data(), wa.data(), n, rho_a, std::isinf(rho_a) ? 1.0 : rho_a / (rho_a + eps)};
  Side B{lwb.data(), wb.data(), m, rho_b, std::isinf(rho_b) ? 1.0 : rho_b / (rho_b + eps)};
  std::vector<double> f(f0.data(), f0.data() + n), Sf(m), Sg(n), u(std::max(n, m));
  double rows = inf, cols = inf, value = std::numeric_limits<double>::quiet_NaN(), mass = 0.0;
  bool ok;
  {
    nb::gil_scoped_release release;
    ok = softmin(K.data(), n, m, c0, eps, 1, g.data(), B.lw, Sg.data(), u);
    if (ok && half)
      for (int64_t i = 0; i < n; ++i) f[i] = A.kappa * Sg[i];
    ok = ok && softmin(K.data(), n, m, c0, eps, 0, f.data(), A.lw, Sf.data(), u);
    if (ok) {
      rows = residual(A, f.data(), Sg.data(), eps, &mass);
      cols = residual(B, g.data(), Sf.data(), eps, nullptr);
      value = conjugate(A, f.data()) + conjugate(B, g.data()) - eps * (mass - total(A) * total(B));
    }
  }
  return nb::make_tuple(vec(f, n), vec(Sf, m), vec(Sg, n), rows, cols, value, ok);
}

// (f, S, done, complete, rows, trace): `iters` averaged iterations of a symmetric problem (one measure on one
// support, OT(a, a)): f <- (f + kappa S) / 2, S = softmin_1(f + eps lw); rows (the residual of the side's
// optimality condition at the returned (f, S)) after each in trace. complete = false: a sum was unreliable at
// iteration `done` (the state returned is the one before it).
nb::tuple sinkhorn_small_symmetric(Mat K, double c0, double eps, Vec1 lw, Vec1 w, double rho, Vec1 f0, Vec1 S0,
                                   int64_t iters) {
  check(K, lw, lw, w, w, f0, f0, eps);
  const int64_t n = K.shape(0);
  if (K.shape(1) != size_t(n) || S0.shape(0) != size_t(n))
    throw nb::value_error("sinkhorn_small_symmetric: K must be square (n x n) and f, S, lw, w of n entries");
  Side A{lw.data(), w.data(), n, rho, std::isinf(rho) ? 1.0 : rho / (rho + eps)};
  std::vector<double> f(f0.data(), f0.data() + n), S(S0.data(), S0.data() + n), fn(n), Sn(n), u(n),
      trace(std::max<int64_t>(iters, 1));
  int64_t done = 0;
  bool complete = true;
  double rows = std::numeric_limits<double>::quiet_NaN();
  {
    nb::gil_scoped_release release;
    for (; done < iters; ++done) {
      for (int64_t i = 0; i < n; ++i) fn[i] = 0.5 * (f[i] + A.kappa * S[i]);
      if (!softmin(K.data(), n, n, c0, eps, 1, fn.data(), A.lw, Sn.data(), u)) { complete = false; break; }
      f.swap(fn);
      S.swap(Sn);
      trace[done] = rows = residual(A, f.data(), S.data(), eps, nullptr);
    }
    if (done == 0) rows = residual(A, f.data(), S.data(), eps, nullptr);
  }
  auto tr = monge::zeros<double>(std::max<int64_t>(done, 1));
  std::copy(trace.begin(), trace.begin() + std::max<int64_t>(done, 1), tr.get());
  return nb::make_tuple(vec(f, n), vec(S, n), done, complete, rows,
                        monge::owned<double, 1>(std::move(tr), {size_t(std::max<int64_t>(done, 1))}));
}

}  // namespace monge_sinkhorn_small

void register_sinkhorn_small(nb::module_ &m) {
  using namespace monge_sinkhorn_small;
  m.def("sinkhorn_small_state", &sinkhorn_small_state, nb::arg("K").noconvert(), nb::arg("c0"), nb::arg("eps"),
        nb::arg("lwa").noconvert(), nb::arg("lwb").noconvert(), nb::arg("wa").noconvert(), nb::arg("wb").noconvert(),
        nb::arg("rho_a"), nb::arg("rho_b"), nb::arg("f").noconvert(), nb::arg("g").noconvert(), nb::arg("half"),
        "sinkhorn_small_state(K, c0, eps, lwa, lwb, wa, wb, rho_a, rho_b, f, g, half)\n"
        "  -> (f, Sf, Sg, rows, cols, value, ok)\n\n"
        "One Sinkhorn state against K = exp(-(C - c0)/eps) (float64, CPU, GIL released): Sg = softmin_1(g + eps lwb),\n"
        "f = kappa_a Sg when half (the final half step; kappa = rho / (rho + eps), 1 for rho = inf: a hard side),\n"
        "else f as given; Sf = softmin_0(f + eps lwa); rows, cols: the l1 residuals of the two marginals'\n"
        "optimality conditions at (f, g); value: the dual objective there. ok = False: a sum under- or overflowed\n"
        "(compute in the log domain instead; rows, cols, value are then inf, inf, NaN).");
  m.def("sinkhorn_small_symmetric", &sinkhorn_small_symmetric, nb::arg("K").noconvert(), nb::arg("c0"), nb::arg("eps"),
        nb::arg("lw").noconvert(), nb::arg("w").noconvert(), nb::arg("rho"), nb::arg("f").noconvert(),
        nb::arg("S").noconvert(), nb::arg("iters"),
        "sinkhorn_small_symmetric(K, c0, eps, lw, w, rho, f, S, iters) -> (f, S, done, complete, rows, trace)\n\n"
        "`iters` averaged Sinkhorn iterations of OT(a, a) on one support (float64, CPU, GIL released, K square):\n"
        "f <- (f + kappa S) / 2, S = softmin_1(f + eps lw) against K = exp(-(C - c0)/eps). complete = False: a sum\n"
        "was unreliable at iteration `done` (the state returned is the last certified one); rows: the l1 residual of\n"
        "the side's optimality condition at the returned state; trace: rows after each iteration run.");
}

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
#include "softmin_vec.hpp"

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
  const double M = monge::softvec::shifted_exp(pot, lw, eps, len, u.data());  // u = e^{(h - M)/eps}
  if (!std::isfinite(M)) return false;
  if (dim == 0) {  // S_j = sum_i K_ij u_i: axpy over rows
    std::fill(S, S + m, 0.0);
    monge::dense::axpy_rows(K, u.data(), m, 0, n, S);
  } else {  // S_i = sum_j K_ij u_j: row dots, four vector accumulators (a scalar sum is one dependency chain)
    monge::dense::dot_rows(K, u.data(), m, 0, n, S);
  }
  return monge::softvec::shifted_log(S, out, len, c0, M, eps);
}

// sum_k |w_k e^{lw_k + (pot_k - S_k)/eps} - target_k|, target = w (hard) or w e^{-pot/rho} (KL): the l1
// residual of the side's optimality condition; *mass = the plan's mass along it.
double residual(const Side &s, const double *pot, const double *S, double eps, double *mass) {
  return monge::softvec::residual(pot, S, s.lw, s.w, s.len, eps, s.rho, mass);
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

// K = exp(-(C - c0) / e) (entries below the smallest normal flushed to 0); from the previous stage's kernel by
// one squaring where e is exactly half its temperature (eps-scaling by 0.5: exp(-2x) = exp(-x)^2).
void stage_kernel(const double *C, int64_t nm, double c0, double e, double prev, std::vector<double> &K) {
  using namespace monge::simd;
  if (prev == 2.0 * e) {
    for (int64_t k = 0; k < nm; ++k) {
      const double q = K[k] * K[k];
      K[k] = q >= DBL_MIN ? q : 0.0;
    }
    return;
  }
  const double inv = LOG2E / e;
  const int64_t lf = nm / WD * WD;
  const VD vc0 = set1(c0), vi = set1(inv);
  for (int64_t k = 0; k < lf; k += WD) store(K.data() + k, vexp2(mul(sub(vc0, load(C + k)), vi)));
  for (int64_t k = lf; k < nm; ++k) K[k] = std::exp2((c0 - C[k]) * inv);
  for (int64_t k = 0; k < nm; ++k) K[k] = K[k] >= DBL_MIN ? K[k] : 0.0;
}

// (f, g, stages): eps-scaling's annealing stages in one call, `iters` plain iterations at each temperature e of
// temps (f = kappa_a softmin_1(g + e lwb), g = kappa_b softmin_0(f + e lwa), kappa = rho / (rho + e)) on
// K_e = exp(-(C - c0)/e), c0 = min C. stages < len(temps): a sum was unreliable in that stage; (f, g) are the
// potentials before it (the caller runs the rest in the log domain).
nb::tuple sinkhorn_small_stages(Mat C, Vec1 temps, int64_t iters, Vec1 lwa, Vec1 lwb, double rho_a, double rho_b,
                                Vec1 f0, Vec1 g0) {
  const int64_t n = C.shape(0), m = C.shape(1), ns = temps.shape(0);
  if (lwa.shape(0) != size_t(n) || f0.shape(0) != size_t(n) || lwb.shape(0) != size_t(m) ||
      g0.shape(0) != size_t(m) || n == 0 || m == 0)
    throw nb::value_error("sinkhorn_small_stages: lwa, f must have n entries and lwb, g m entries (C: n x m, "
                          "non-empty)");
  for (int64_t s = 0; s < ns; ++s)
    if (!(temps.data()[s] > 0.0) || !std::isfinite(temps.data()[s]))
      throw nb::value_error("sinkhorn_small_stages: every temperature must be positive and finite");
  std::vector<double> f(f0.data(), f0.data() + n), g(g0.data(), g0.data() + m), fn(n), gn(m), Sf(m), Sg(n),
      u(std::max(n, m)), K(static_cast<size_t>(n * m));
  int64_t done = 0;
  {
    nb::gil_scoped_release release;
    const double *c = C.data();
    double c0 = std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < n * m; ++k) c0 = std::min(c0, c[k]);
    double prev = 0.0;
    for (; done < ns; ++done) {
      const double e = temps.data()[done];
      stage_kernel(c, n * m, c0, e, prev, K);
      prev = e;
      const double ka = std::isinf(rho_a) ? 1.0 : rho_a / (rho_a + e);
      const double kb = std::isinf(rho_b) ? 1.0 : rho_b / (rho_b + e);
      bool ok = std::isfinite(c0);
      std::copy(f.begin(), f.end(), fn.begin());
      std::copy(g.begin(), g.end(), gn.begin());
      for (int64_t it = 0; ok && it < iters; ++it) {
        ok = softmin(K.data(), n, m, c0, e, 1, gn.data(), lwb.data(), Sg.data(), u);
        for (int64_t i = 0; ok && i < n; ++i) fn[i] = ka * Sg[i];
        ok = ok && softmin(K.data(), n, m, c0, e, 0, fn.data(), lwa.data(), Sf.data(), u);
        for (int64_t j = 0; ok && j < m; ++j) gn[j] = kb * Sf[j];
      }
      if (!ok) break;
      f.swap(fn);
      g.swap(gn);
    }
  }
  return nb::make_tuple(vec(f, n), vec(g, m), done);
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
  m.def("sinkhorn_small_stages", &sinkhorn_small_stages, nb::arg("C").noconvert(), nb::arg("temps").noconvert(),
        nb::arg("iters"), nb::arg("lwa").noconvert(), nb::arg("lwb").noconvert(), nb::arg("rho_a"), nb::arg("rho_b"),
        nb::arg("f").noconvert(), nb::arg("g").noconvert(),
        "sinkhorn_small_stages(C, temps, iters, lwa, lwb, rho_a, rho_b, f, g) -> (f, g, stages)\n\n"
        "eps-scaling's annealing stages in one call (float64, CPU, one thread, GIL released): at each temperature e\n"
        "of temps, `iters` plain iterations f = kappa_a softmin_1(g + e lwb), g = kappa_b softmin_0(f + e lwa)\n"
        "(kappa = rho / (rho + e), 1 for rho = inf) on K_e = exp(-(C - c0)/e), c0 = min C (the square of the\n"
        "previous stage's kernel where e is exactly half its temperature). stages < len(temps): a sum was\n"
        "unreliable in that stage and (f, g) are the potentials before it.");
}

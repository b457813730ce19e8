// Scaling-domain Sinkhorn iterations against a materialised Gibbs kernel K = exp(-(C - c0) / eps), several
// iterations per call (float64, CPU). The state stays in the log domain (f, g and the soft-mins Sf, Sg), each
// soft-min being a shifted product (monge/geometry/_backends/shifted.py):
//   softmin_0(h)_j = c0 - (M + eps log sum_i K_ij e^{(h_i - M)/eps}),   M = max_i h_i   (one pass, axpy rows)
//   softmin_1(h)_i = c0 - (M + eps log sum_j K_ij e^{(h_j - M)/eps})                    (one pass, row dots)
// Every term is a product of two numbers in [0, 1]: a sum of k terms below k tiny / ulp (or not finite) may have
// lost terms to underflow, and the call stops there and says so (the caller finishes in the log domain).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "dense_rows.hpp"
#include "softmin_common.hpp"
#include "softmin_vec.hpp"

namespace nb = nanobind;

namespace monge_sinkhorn_dense {

using namespace monge_softmin;
using monge::dense::axpy_rows;
using monge::dense::dot_rows;
using Vec1 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Mat = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// Threads for one pass over an n x m kernel: one below 2^21 entries (a thread start costs more than it saves).
inline int pass_threads(int n_threads, int64_t n, int64_t m) {
  if (n * m < (int64_t(1) << 21)) return 1;
  int nt = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(std::max(nt, 1), n)));
}

struct Problem {
  const double *K, *lwa, *lwb;
  int64_t n, m;
  double c0, eps, ka, kb;
  int nt_cols, nt_rows;
};

// S = softmin over the `len` entries of h = pot + eps * lw (through the kernel along `dim`) into S (size `out`).
// Returns false where a sum is unreliable (S then partly written; the caller discards it).
bool half_softmin(const Problem &P, int dim, const double *pot, const double *lw, double *S,
                  std::vector<double> &u, std::vector<std::vector<double>> &part) {
  const int64_t len = dim == 0 ? P.n : P.m, out = dim == 0 ? P.m : P.n;
  const double M = monge::softvec::shifted_exp(pot, lw, P.eps, len, u.data());  // vectorised (softmin_vec.hpp)
  if (!std::isfinite(M)) return false;
  if (dim == 0) {
    const int nt = P.nt_cols;
    for (int t = 0; t < nt; ++t) std::fill(part[t].begin(), part[t].end(), 0.0);
    parallel_rows(nt, 1, P.n, [&](int t, int64_t, int64_t i0, int64_t i1) {
      axpy_rows(P.K, u.data(), P.m, i0, i1, part[t].data());
    });
    for (int64_t j = 0; j < P.m; ++j) {
      double s = part[0][j];
      for (int t = 1; t < nt; ++t) s += part[t][j];
      S[j] = s;
    }
  } else {
    parallel_rows(P.nt_rows, 1, P.n, [&](int, int64_t, int64_t i0, int64_t i1) {
      dot_rows(P.K, u.data(), P.m, i0, i1, S);
    });
  }
  return monge::softvec::shifted_log(S, out, len, P.c0, M, P.eps);
}

// pot <- pot + omega (kappa S - pot) where the update is finite (over-relaxation; omega = 1: pot = kappa S).
inline void relax(double *pot, const double *S, int64_t len, double kappa, double omega) {
  for (int64_t k = 0; k < len; ++k) {
    const double nw = kappa * S[k];
    pot[k] = (omega == 1.0 || !std::isfinite(nw)) ? nw : pot[k] + omega * (nw - pot[k]);
  }
}

// sum_k |w_k e^{lw_k + (pot_k - S_k)/eps} - w_k e^{-pot_k / rho}|: the l1 residual of one marginal's optimality
// condition (rho = inf: a hard constraint, target w), as monge/solvers/marginals.py measures it.
double residual(const double *pot, const double *S, const double *lw, const double *w, int64_t len, double eps,
                double rho) {
  return monge::softvec::residual(pot, S, lw, w, len, eps, rho);
}

// (f, g, Sf, Sg, iterations run, complete, rows, cols, rows after each iteration): `iters` iterations f <- ka Sg, Sf, g <- kb Sf, Sg (over-relaxed by
// omega) from the state given. complete = false: a soft-min was unreliable at iteration `iterations run`; the
// state returned is the one before it. rows, cols: the residuals of the two marginals at the state returned
// (weights wa, wb; penalties rho_a, rho_b, inf for hard constraints), NaN when there is no state.
nb::tuple sinkhorn_kernel_run(Mat K, double c0, double eps, Vec1 lwa, Vec1 lwb, Vec1 f0, Vec1 g0, Vec1 Sg0,
                              double ka, double kb, double omega, int64_t iters, Vec1 wa, Vec1 wb, double rho_a,
                              double rho_b, int n_threads) {
  const int64_t n = K.shape(0), m = K.shape(1);
  if (lwa.shape(0) != size_t(n) || f0.shape(0) != size_t(n) || Sg0.shape(0) != size_t(n) ||
      lwb.shape(0) != size_t(m) || g0.shape(0) != size_t(m) || wa.shape(0) != size_t(n) || wb.shape(0) != size_t(m))
    throw nb::value_error("sinkhorn_kernel_run: lwa, f, Sg must have n entries and lwb, g m entries (K: n x m)");
  if (!(eps > 0.0)) throw nb::value_error("sinkhorn_kernel_run: eps must be positive");
  auto f = monge::zeros<double>(n), g = monge::zeros<double>(m), Sf = monge::zeros<double>(m),
       Sg = monge::zeros<double>(n);
  std::copy(f0.data(), f0.data() + n, f.get());
  std::copy(g0.data(), g0.data() + m, g.get());
  std::copy(Sg0.data(), Sg0.data() + n, Sg.get());
  int64_t done = 0;
  bool complete = true;
  auto trace = monge::zeros<double>(iters);  // the first marginal's residual after each iteration
  {
    nb::gil_scoped_release release;
    Problem P{K.data(), lwa.data(), lwb.data(), n, m, c0, eps, ka, kb, pass_threads(n_threads, n, m),
              pass_threads(n_threads, n, m)};
    std::vector<double> u(static_cast<size_t>(std::max(n, m)) + 1), fn(n + 1), gn(m + 1), sf(m + 1), sg(n + 1);
    std::vector<std::vector<double>> part(P.nt_cols, std::vector<double>(static_cast<size_t>(m) + 1));
    for (; done < iters; ++done) {
      std::copy(f.get(), f.get() + n, fn.begin());
      relax(fn.data(), Sg.get(), n, ka, omega);
      if (!half_softmin(P, 0, fn.data(), P.lwa, sf.data(), u, part)) { complete = false; break; }
      std::copy(g.get(), g.get() + m, gn.begin());
      relax(gn.data(), sf.data(), m, kb, omega);
      if (!half_softmin(P, 1, gn.data(), P.lwb, sg.data(), u, part)) { complete = false; break; }
      std::copy(fn.begin(), fn.begin() + n, f.get());
      std::copy(gn.begin(), gn.begin() + m, g.get());
      std::copy(sf.begin(), sf.begin() + m, Sf.get());
      std::copy(sg.begin(), sg.begin() + n, Sg.get());
      trace[done] = residual(f.get(), Sg.get(), lwa.data(), wa.data(), n, eps, rho_a);
    }
  }
  if (done == 0 && iters > 0) Sf.reset();  // nothing valid to return for Sf: the caller keeps its own
  auto vec = [](std::unique_ptr<double[]> p, int64_t len) { return monge::owned<double, 1>(std::move(p), {size_t(len)}); };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (!Sf) return nb::make_tuple(nb::none(), nb::none(), nb::none(), nb::none(), done, complete, nan, nan, nb::none());
  const double rows = done > 0 ? trace[done - 1] : residual(f.get(), Sg.get(), lwa.data(), wa.data(), n, eps, rho_a);
  const double cols = residual(g.get(), Sf.get(), lwb.data(), wb.data(), m, eps, rho_b);
  return nb::make_tuple(vec(std::move(f), n), vec(std::move(g), m), vec(std::move(Sf), m), vec(std::move(Sg), n),
                        done, complete, rows, cols, vec(std::move(trace), std::max<int64_t>(done, 1)));
}

// (K, c0): K = exp(-(C - c0) / eps), c0 = min C, entries below the smallest normal flushed to 0.
nb::tuple gibbs_kernel(Mat C, double eps, int n_threads) {
  const int64_t n = C.shape(0), m = C.shape(1);
  if (!(eps > 0.0) || !std::isfinite(eps)) throw nb::value_error("gibbs_kernel: eps must be positive and finite");
  auto K = monge::zeros<double>(n * m);
  double c0 = 0.0;
  {
    nb::gil_scoped_release release;
    const double *Cd = C.data();
    double lo = std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < n * m; ++k) lo = std::min(lo, Cd[k]);
    c0 = n * m > 0 ? lo : 0.0;
    const double inv = LOG2E / eps;
    double *Kd = K.get();
    parallel_rows(pass_threads(n_threads, n, m), 1, n, [&](int, int64_t, int64_t i0, int64_t i1) {
      const int64_t mf = m / WD * WD;
      const VD vc0 = set1(c0), vinv = set1(inv);
      for (int64_t i = i0; i < i1; ++i) {
        const double *c = Cd + i * m;
        double *k = Kd + i * m;
        for (int64_t j = 0; j < mf; j += WD) store(k + j, vexp2(mul(sub(vc0, load(c + j)), vinv)));
        for (int64_t j = mf; j < m; ++j) k[j] = std::exp2((c0 - c[j]) * inv);
        for (int64_t j = 0; j < m; ++j) k[j] = k[j] < DBL_MIN ? 0.0 : k[j];
      }
    });
  }
  return nb::make_tuple(monge::owned<double, 2>(std::move(K), {size_t(n), size_t(m)}), c0);
}

}  // namespace monge_sinkhorn_dense

void register_barycenter_dense(nb::module_ &m);  // csrc/barycenter_dense.cpp: the barycenter loop

void register_sinkhorn_dense(nb::module_ &m) {
  register_barycenter_dense(m);
  using namespace monge_sinkhorn_dense;
  m.def("gibbs_kernel", &gibbs_kernel, nb::arg("C").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0,
        "gibbs_kernel(C, eps, n_threads=0) -> (K, c0)\n\nK = exp(-(C - c0)/eps) with c0 = min C (float64, C-contiguous,"
        " CPU), entries below the smallest normal float64 set to 0. Threads from 2^21 entries. Releases the GIL.");
  m.def("sinkhorn_kernel_run", &sinkhorn_kernel_run, nb::arg("K").noconvert(), nb::arg("c0"), nb::arg("eps"),
        nb::arg("lwa").noconvert(), nb::arg("lwb").noconvert(), nb::arg("f").noconvert(), nb::arg("g").noconvert(),
        nb::arg("Sg").noconvert(), nb::arg("ka"), nb::arg("kb"), nb::arg("omega"), nb::arg("iters"),
        nb::arg("wa").noconvert(), nb::arg("wb").noconvert(), nb::arg("rho_a"), nb::arg("rho_b"),
        nb::arg("n_threads") = 0,
        "sinkhorn_kernel_run(K, c0, eps, lwa, lwb, f, g, Sg, ka, kb, omega, iters, wa, wb, rho_a, rho_b, n_threads=0)\n"
        "  -> (f, g, Sf, Sg, iterations, complete, rows, cols, rows_trace)\n\n"
        "`iters` scaling-domain Sinkhorn iterations in one call (float64, CPU, GIL released): f <- relaxed(f, ka Sg),\n"
        "Sf = softmin_0(f + eps lwa), g <- relaxed(g, kb Sf), Sg = softmin_1(g + eps lwb), each soft-min a shifted\n"
        "product with K = exp(-(C - c0)/eps). complete = False: a sum was unreliable (under/overflow, NaN) at\n"
        "iteration `iterations`; the state returned is the last certified one (all None when there is none).\n"
        "rows, cols: l1 residuals of the marginals' optimality conditions there (rho = inf: hard; NaN: no state);\n"
        "rows_trace: the rows residual after each iteration run.");
}

// Fixed-support barycenter iterations (iterative Bregman projections) against a materialised Gibbs kernel
// K = exp(-(C - c0) / eps), several iterations per call (float64, CPU, GIL released). Same state and update as
// monge/solvers/barycenter.py (the K couplings are R rows of one right-hand-side block):
//   f_r <- relaxed(f_r, kappa (eps log a_r + S1_r)),   S0_r = softmin_0(f_r),   log b = bar(S0) (+ h / eps),
//   g_r <- relaxed(g_r, kappa (eps log b + S0_r)),     [h <- (h + eps log b + Sh) / 2, Sh = softmin_0(h)],
//   S1_r = softmin_1(g_r).
// The soft-mins (shifted products over the kernel, a symmetric kernel read through its upper triangle) are in
// csrc/barycenter_dense_kernel.cpp, the iteration and its residuals in csrc/barycenter_dense_iter.cpp; here the
// bindings and the loop of one call.
// A sum below len * tiny / ulp (or not finite) may have lost terms to underflow: the call stops at the last
// certified state and says so (the caller finishes in the log domain).
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

#include "barycenter_dense_iter.hpp"
#include "softmin_common.hpp"

namespace nb = nanobind;

namespace monge_barycenter_dense {

using Vec1 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Mat = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// A symmetric kernel, bitwise (blocks of 64 x 64, stops at the first difference).
bool is_symmetric(const double *K, int64_t n) {
  constexpr int64_t B = 64;
  for (int64_t i0 = 0; i0 < n; i0 += B)
    for (int64_t j0 = i0; j0 < n; j0 += B)
      for (int64_t i = i0; i < std::min(n, i0 + B); ++i)
        for (int64_t j = std::max(j0, i + 1); j < std::min(n, j0 + B); ++j)
          if (!(K[i * n + j] == K[j * n + i])) return false;
  return true;
}

bool kernel_symmetric(Mat K) {
  if (K.shape(0) != K.shape(1)) return false;
  nb::gil_scoped_release release;
  return is_symmetric(K.data(), static_cast<int64_t>(K.shape(0)));
}

using Arr1 = monge::NumpyOut<double, 1>;
using Arr2 = monge::NumpyOut<double, 2>;

template <size_t N>
monge::NumpyOut<double, N> to_numpy(const std::vector<double> &v, std::initializer_list<size_t> shape) {
  auto p = monge::zeros<double>(static_cast<int64_t>(v.size()));
  std::copy(v.begin(), v.end(), p.get());
  return monge::owned<double, N>(std::move(p), shape);
}

nb::tuple barycenter_kernel_run(Mat K, double c0, double eps, Mat f0, Mat g0, Mat S10, Vec1 h0, Vec1 Sh0, Mat la,
                                Vec1 lam, Mat a, double rho, double omega, int64_t iters, bool symmetric, bool start,
                                int n_threads) {
  const int64_t n = K.shape(0), m = K.shape(1), R = f0.shape(0);
  const bool debias = h0.shape(0) > 0;
  if ((R < 1 || g0.shape(0) != size_t(R) || S10.shape(0) != size_t(R) || la.shape(0) != size_t(R) ||
          a.shape(0) != size_t(R) || lam.shape(0) != size_t(R) || f0.shape(1) != size_t(n) ||
          S10.shape(1) != size_t(n) || la.shape(1) != size_t(n) || a.shape(1) != size_t(n) ||
          g0.shape(1) != size_t(m)))
    throw nb::value_error("barycenter_kernel_run: f, S1, log a, a must be R x n, g R x m, lam R (K: n x m)");
  if (debias && (n != m || h0.shape(0) != size_t(m) || Sh0.shape(0) != size_t(m)))
    throw nb::value_error("barycenter_kernel_run: h, Sh must have m entries and K must be square (debiased)");
  if (symmetric && n != m) throw nb::value_error("barycenter_kernel_run: symmetric needs a square kernel");
  if (!(eps > 0.0) || !(rho > 0.0)) throw nb::value_error("barycenter_kernel_run: eps and rho must be positive");
  if (debias && !std::isinf(rho)) throw nb::value_error("barycenter_kernel_run: debiased is balanced only");
  const int64_t mx = std::max(n, m), hm = debias ? m : 0;
  State s{std::vector<double>(f0.data(), f0.data() + R * n), std::vector<double>(g0.data(), g0.data() + R * m),
          std::vector<double>(h0.data(), h0.data() + hm), std::vector<double>(S10.data(), S10.data() + R * n),
          std::vector<double>(R * m), std::vector<double>(m), std::vector<double>(Sh0.data(), Sh0.data() + hm)};
  State o = s;
  int64_t done = 0;
  bool complete = true, valid = false;
  double err = std::numeric_limits<double>::quiet_NaN(), rows = err;
  std::vector<double> trace(std::max<int64_t>(iters, 1), err);
  {
    nb::gil_scoped_release release;
    Problem P{make_kernel(K.data(), n, m, symmetric, n_threads), R, n, m, c0, eps, rho,
              std::isinf(rho) ? 1.0 : rho / (rho + eps), omega, la.data(), lam.data(), a.data(), debias};
    Work w;
    const int64_t rows_max = (2 * R + 1) * mx;
    w.U.resize(rows_max), w.O.resize(rows_max), w.H.resize(rows_max), w.S.resize(rows_max);
    w.part.assign(P.k.nt, std::vector<double>(rows_max));
    std::vector<double> tmp(mx);
    complete = !start || start_state(P, s, w);
    valid = start && complete;
    for (; complete && done < iters; ++done) {
      if (!iterate(P, s, o, omega, w)) { complete = false; break; }
      std::swap(s, o);
      trace[done] = rows_residual(P, s, tmp);
    }
    valid |= done > 0;
    if (valid) err = full_error(P, s, tmp), rows = done > 0 ? trace[done - 1] : rows_residual(P, s, tmp);
  }
  if (!valid)
    return nb::make_tuple(nb::none(), nb::none(), nb::none(), nb::none(), nb::none(), nb::none(), nb::none(), done,
                          complete, err, rows, nb::none());
  const size_t R_ = size_t(R), n_ = size_t(n), m_ = size_t(m), h_ = size_t(hm);
  trace.resize(std::max<int64_t>(done, 1));
  return nb::make_tuple(to_numpy<2>(s.f, {R_, n_}), to_numpy<2>(s.g, {R_, m_}), to_numpy<1>(s.h, {h_}),
                        to_numpy<2>(s.S1, {R_, n_}), to_numpy<2>(s.S0, {R_, m_}), to_numpy<1>(s.lb, {m_}),
                        to_numpy<1>(s.Sh, {h_}), done, complete, err, rows, to_numpy<1>(trace, {trace.size()}));
}

}  // namespace monge_barycenter_dense

void register_barycenter_dense(nb::module_ &m) {
  using namespace monge_barycenter_dense;
  m.def("kernel_symmetric", &kernel_symmetric, nb::arg("K").noconvert(),
        "kernel_symmetric(K) -> bool\n\nWhether the float64 C-contiguous square matrix K equals its transpose "
        "bitwise (blocked scan, stops at the first difference; GIL released).");
  m.def("barycenter_kernel_run", &barycenter_kernel_run, nb::arg("K").noconvert(), nb::arg("c0"), nb::arg("eps"),
        nb::arg("f").noconvert(), nb::arg("g").noconvert(), nb::arg("S1").noconvert(), nb::arg("h").noconvert(),
        nb::arg("Sh").noconvert(), nb::arg("la").noconvert(), nb::arg("lam").noconvert(), nb::arg("a").noconvert(),
        nb::arg("rho"), nb::arg("omega"), nb::arg("iters"), nb::arg("symmetric"), nb::arg("start") = false,
        nb::arg("n_threads") = 0,
        "barycenter_kernel_run(K, c0, eps, f, g, S1, h, Sh, la, lam, a, rho, omega, iters, symmetric, start=False,\n"
        "                      n_threads=0)\n"
        "  -> (f, g, h, S1, S0, lb, Sh, iterations, complete, error, rows, rows_trace)\n\n"
        "`iters` fixed-support barycenter iterations (iterative Bregman projections, monge.solvers.barycenter) in\n"
        "one call (float64, CPU, GIL released) with K = exp(-(C - c0)/eps): R couplings (f, S1, la = log a, a:\n"
        "R x n; g: R x m; lam: R weights), rho = inf (balanced) or a KL penalty, h/Sh of m entries (debiased,\n"
        "square K) or empty. symmetric: K = K^T (read through its upper triangle). complete = False: a sum was\n"
        "unreliable at iteration `iterations`; the state returned is the last certified one (all None if none).\n"
        "error: max_r of both marginals' l1 residuals (+ the debiasing residual) at the returned state; rows: the\n"
        "first marginals' residual there, rows_trace: after each iteration. start: first compute S1, S0, lb, Sh\n"
        "of the (f, g, h) given (the S1, Sh given are ignored; iters = 0: just that state and its error).");
}

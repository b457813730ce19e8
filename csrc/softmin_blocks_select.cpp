// Hierarchical (dual-tree) block selection of the multiscale soft-min: which column leaves each row leaf keeps.
//
// Both clouds are complete k-d trees in heap layout (root 1, children 2k and 2k + 1, leaves K .. 2K - 1), with
// float64 bounding boxes per node, and the column tree carries L_J = eps log sum_{j in J} exp(h_j / eps). For
// a row leaf I and a column node J, every pair (i in I, j in J) has a cost at least phi(t_min(I, J)) (t_min the
// box-to-box distance) and at most phi(t_max(I, J)), so the soft-min's sum over J is bounded by
//
//   sum_{j in J} exp((h_j - C_ij) / eps) <= exp((L_J - phi(t_min)) / eps).
//
// The selection walks the column tree from the root for every row leaf (threads over row leaves): a node whose
// term v = (L_J - phi(t_min) + est_I) / eps is below log(tau) is dropped whole (its bound added to the row's
// dropped sum), otherwise its children are visited; a leaf that survives is kept. est_I estimates the row
// leaf's largest output (the caller's estimate, capped by the rigorous upper bound min_J (phi(t_max) - L_J) over
// the nodes of a greedy descent towards the nearest heavy node), so the dropped sum times exp(out / eps) is the certificate's fraction. Rows
// whose dropped sum exceeds the budget are walked again with a smaller tau. Two passes (count, then write):
// memory O(kept pairs), work O(visited nodes). blocks_dropped evaluates the dropped bound of a GIVEN block list
// at new potentials by the same walk (nodes holding a kept leaf are always opened): no K x K matrix anywhere.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bind_util.hpp"

namespace nb = nanobind;

namespace monge_select {

constexpr double NEG_INF = -std::numeric_limits<double>::infinity();
constexpr double TAU_STEP = 3.4657359027997265;  // log(32): tau shrinks by 32 per retry
constexpr int TAU_RETRIES = 5;

struct Trees {
  const double *rlo, *rhi, *clo, *chi, *L;
  int64_t Kr, Kc;
  int d, kind;
  double param, inv_eps;

  // phi of a squared distance t2 (0: s t2; 1: t2^(p/2); 2: min(t2 / 2, 2), the cosine on normalised points)
  double phi(double t2) const {
    if (kind == 0) return param * t2;
    if (kind == 1) return std::pow(t2, 0.5 * param);
    return std::min(0.5 * t2, 2.0);
  }
  // phi(t_min), phi(t_max) between row node a and column node b
  void bounds(int64_t a, int64_t b, double &low, double &up) const {
    const double *al = rlo + a * d, *ah = rhi + a * d, *bl = clo + b * d, *bh = chi + b * d;
    double t2 = 0.0, u2 = 0.0;
    for (int k = 0; k < d; ++k) {
      const double g = std::max({0.0, bl[k] - ah[k], al[k] - bh[k]});
      const double f = std::max(bh[k] - al[k], ah[k] - bl[k]);
      t2 += g * g;
      u2 += f * f;
    }
    low = phi(t2 * (1.0 - 1e-14));
    up = phi(u2 * (1.0 + 1e-14));
  }
  double lower(int64_t a, int64_t b) const {
    double lo, up;
    bounds(a, b, lo, up);
    return lo;
  }
  // A rigorous upper bound of every output of row leaf I: min (phi(t_max) - L_J) along a greedy descent.
  double rigorous(int64_t I) const {
    const int64_t a = Kr + I;
    if (L[1] == NEG_INF) return std::numeric_limits<double>::infinity();
    double lo, up;
    bounds(a, 1, lo, up);
    double best = up - L[1];
    for (int64_t J = 1; J < Kc;) {  // down the child of smaller phi(t_min) - L (the nearer heavy one)
      double v[2] = {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
      double w[2] = {v[0], v[1]};
      for (int c = 0; c < 2; ++c)
        if (L[2 * J + c] != NEG_INF) {
          bounds(a, 2 * J + c, lo, up);
          v[c] = up - L[2 * J + c];
          w[c] = lo - L[2 * J + c];
        }
      J = 2 * J + (w[1] < w[0] ? 1 : 0);
      best = std::min(best, std::min(v[0], v[1]));
    }
    return best;
  }
};

struct Lse {  // a running log-sum-exp
  double m = NEG_INF, s = 0.0;
  void add(double v) {
    if (v == NEG_INF) return;  // an empty node (no points: an infinite lower bound)
    if (v <= m) {
      s += std::exp(v - m);
    } else {
      s = s * std::exp(m - v) + 1.0;
      m = v;
    }
  }
  double value() const { return m == NEG_INF ? NEG_INF : m + std::log(s); }
};

// One walk for row leaf I. mark (dropped mode): nodes holding a kept leaf, else null (select mode: leaves with
// v >= log_tau are kept and written to out when out is not null). Returns the kept count; lse: the dropped terms.
inline int64_t walk(const Trees &t, int64_t I, double est, double log_tau, const uint8_t *mark, int32_t *out,
                    Lse &lse, std::vector<int64_t> &stack) {
  const int64_t a = t.Kr + I;
  int64_t kept = 0;
  stack.clear();
  stack.push_back(1);
  while (!stack.empty()) {
    const int64_t J = stack.back();
    stack.pop_back();
    if (t.L[J] == NEG_INF) continue;  // no weight below this node
    const bool leaf = J >= t.Kc, marked = mark != nullptr && mark[J];
    if (!marked) {
      const double v = (t.L[J] - t.lower(a, J) + est) * t.inv_eps;
      if (v < log_tau || (mark != nullptr && leaf)) {
        lse.add(v);
        continue;
      }
    }
    if (leaf) {
      if (mark == nullptr) {
        if (out != nullptr) out[kept] = static_cast<int32_t>(J - t.Kc);
        ++kept;
      }
      continue;
    }
    stack.push_back(2 * J + 1);
    stack.push_back(2 * J);
  }
  return kept;
}

template <class F>
void parallel_rows(int nt, int64_t K, F &&body) {
  std::vector<std::vector<int64_t>> stacks(std::max(1, nt));  // one walk stack per thread
  monge::parallel_chunks(nt, K, 8, [&](int th, int64_t I) { body(th, I, stacks[th]); });
}

using D2 = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using D1 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using I64 = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using I32 = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

Trees make(const D2 &rlo, const D2 &rhi, const D2 &clo, const D2 &chi, const D1 &L, const D1 &est, double eps,
           int kind, double param, const char *name) {
  auto fail = [&](const std::string &what) { throw nb::value_error((std::string(name) + ": " + what).c_str()); };
  const int64_t Kr = rlo.shape(0) / 2, Kc = clo.shape(0) / 2;
  const size_t d = rlo.shape(1);
  if (Kr < 1 || Kc < 1 || (Kr & (Kr - 1)) || (Kc & (Kc - 1)) || rlo.shape(0) != size_t(2 * Kr) ||
      clo.shape(0) != size_t(2 * Kc))
    fail("the boxes must be heaps (2K, d) of complete trees, K a power of two");
  if (rhi.shape(0) != rlo.shape(0) || chi.shape(0) != clo.shape(0) || rhi.shape(1) != d || clo.shape(1) != d ||
      chi.shape(1) != d || d < 1)
    fail("lo and hi boxes of both trees must share d >= 1");
  if (L.shape(0) != size_t(2 * Kc)) fail("L must hold the 2 Kc node values of the column tree");
  if (est.shape(0) != size_t(Kr)) fail("est must hold one value per row leaf (Kr)");
  if (!(eps > 0.0) || !std::isfinite(eps)) fail("eps must be positive and finite");
  if (kind < 0 || kind > 2) fail("kind must be 0 (s t^2), 1 (t^p) or 2 (cosine)");
  return Trees{rlo.data(), rhi.data(), clo.data(), chi.data(), L.data(), Kr, Kc, static_cast<int>(d), kind,
               param, 1.0 / eps};
}

inline double row_est(const Trees &t, const double *est, int64_t I) {
  const double r = t.rigorous(I), e = est[I];
  return std::isnan(e) ? r : std::min(r, e);
}

std::tuple<monge::NumpyOut<int64_t, 1>, monge::NumpyOut<int32_t, 1>, monge::NumpyOut<double, 1>> select_binding(
    D2 rlo, D2 rhi, D2 clo, D2 chi, D1 L, D1 est, double eps, double log_tau, double log_budget, int kind,
    double param, int64_t max_kept, int n_threads) {
  const Trees t = make(rlo, rhi, clo, chi, L, est, eps, kind, param, "blocks_select");
  const int64_t Kr = t.Kr;
  auto ptr = std::make_unique<int64_t[]>(Kr + 1);
  auto logD = std::make_unique<double[]>(Kr);
  std::unique_ptr<int32_t[]> cols;
  int64_t nnz = 0;
  {
    nb::gil_scoped_release release;
    std::vector<double> tau(Kr), e(Kr);
    std::atomic<int64_t> total{0};
    std::atomic<bool> over{false};
    const int nt = std::max(1, std::min<int>(n_threads > 0 ? n_threads : 1, static_cast<int>(Kr)));
    parallel_rows(nt, Kr, [&](int, int64_t I, std::vector<int64_t> &stack) {
      if (over.load(std::memory_order_relaxed)) return;
      e[I] = row_est(t, est.data(), I);
      double lt = log_tau;
      int64_t k = 0;
      for (int r = 0;; ++r) {
        Lse lse;
        k = walk(t, I, e[I], lt, nullptr, nullptr, lse, stack);
        logD[I] = lse.value();
        if (logD[I] <= log_budget || lt == NEG_INF) break;
        lt = r + 1 < TAU_RETRIES ? lt - TAU_STEP : NEG_INF;
      }
      tau[I] = lt;
      logD[I] = logD[I] == NEG_INF ? NEG_INF : logD[I] - e[I] * t.inv_eps;
      ptr[I + 1] = k;
      if (total.fetch_add(k) + k > max_kept) over.store(true);
    });
    if (!over.load()) {
      ptr[0] = 0;
      for (int64_t I = 0; I < Kr; ++I) ptr[I + 1] += ptr[I];
      nnz = ptr[Kr];
      cols = std::make_unique<int32_t[]>(std::max<int64_t>(1, nnz));
      parallel_rows(nt, Kr, [&](int, int64_t I, std::vector<int64_t> &stack) {
        Lse lse;
        walk(t, I, e[I], tau[I], nullptr, cols.get() + ptr[I], lse, stack);
      });
    } else {  // more than max_kept: the caller goes dense; no list
      ptr[0] = 0;
      for (int64_t I = 0; I < Kr; ++I) ptr[I + 1] = max_kept + 1;
      cols = std::make_unique<int32_t[]>(1);
    }
  }
  return {monge::owned<int64_t, 1>(std::move(ptr), {size_t(Kr + 1)}),
          monge::owned<int32_t, 1>(std::move(cols), {size_t(nnz)}),
          monge::owned<double, 1>(std::move(logD), {size_t(Kr)})};
}

monge::NumpyOut<double, 1> dropped_binding(D2 rlo, D2 rhi, D2 clo, D2 chi, D1 L, D1 est, double eps,
                                           double log_tau, int kind, double param, I64 ptr, I32 cols,
                                           int n_threads) {
  const Trees t = make(rlo, rhi, clo, chi, L, est, eps, kind, param, "blocks_dropped");
  const int64_t Kr = t.Kr, Kc = t.Kc;
  if (ptr.shape(0) != size_t(Kr + 1) || ptr.data()[0] != 0 || ptr.data()[Kr] != int64_t(cols.shape(0)))
    throw nb::value_error("blocks_dropped: ptr must hold Kr + 1 offsets from 0 to len(cols)");
  for (int64_t I = 0; I < Kr; ++I)
    if (ptr.data()[I + 1] < ptr.data()[I]) throw nb::value_error("blocks_dropped: ptr must be nondecreasing");
  for (size_t q = 0; q < cols.shape(0); ++q)
    if (cols.data()[q] < 0 || cols.data()[q] >= Kc)
      throw nb::value_error("blocks_dropped: cols must hold column leaves in [0, Kc)");
  auto logD = std::make_unique<double[]>(Kr);
  {
    nb::gil_scoped_release release;
    const int nt = std::max(1, std::min<int>(n_threads > 0 ? n_threads : 1, static_cast<int>(Kr)));
    std::vector<std::vector<uint8_t>> marks(nt);
    const int64_t *p = ptr.data();
    const int32_t *c = cols.data();
    parallel_rows(nt, Kr, [&](int th, int64_t I, std::vector<int64_t> &stack) {
      auto &mark = marks[th];
      if (mark.empty()) mark.assign(2 * Kc, 0);
      auto paint = [&](uint8_t on) {
        for (int64_t q = p[I]; q < p[I + 1]; ++q)
          for (int64_t J = Kc + c[q]; J >= 1 && mark[J] != on; J >>= 1) mark[J] = on;
      };
      paint(1);
      const double e = row_est(t, est.data(), I);
      Lse lse;
      walk(t, I, e, log_tau, mark.data(), nullptr, lse, stack);
      const double v = lse.value();
      logD[I] = v == NEG_INF ? NEG_INF : v - e * t.inv_eps;
      paint(0);
    });
  }
  return monge::owned<double, 1>(std::move(logD), {size_t(Kr)});
}

}  // namespace monge_select

void register_softmin_blocks_select(nb::module_ &m) {
  using namespace monge_select;
  m.def("blocks_select", &select_binding, nb::arg("rlo").noconvert(), nb::arg("rhi").noconvert(),
        nb::arg("clo").noconvert(), nb::arg("chi").noconvert(), nb::arg("L").noconvert(), nb::arg("est").noconvert(),
        nb::arg("eps"), nb::arg("log_tau"), nb::arg("log_budget"), nb::arg("kind"), nb::arg("param"),
        nb::arg("max_kept"), nb::arg("n_threads") = 1,
        "blocks_select(rlo, rhi, clo, chi, L, est, eps, log_tau, log_budget, kind, param, max_kept, n_threads=1)\n"
        "-> (ptr int64 (Kr + 1,), cols int32 (nnz,), logD float64 (Kr,))\n\n"
        "The column leaves each row leaf keeps, by a walk of the column tree (heaps of float64 boxes (2K, d), L:\n"
        "(2Kc,) node log-sums eps log sum exp(h / eps)): a node is dropped whole when\n"
        "(L_J - phi(t_min) + est_I) / eps < log_tau, tau shrinking per row until the row's dropped sum is below\n"
        "exp(log_budget). logD: log sum over dropped nodes of exp((L_J - phi(t_min)) / eps). est (Kr,) NaN: the\n"
        "rigorous bound alone. phi: kind 0 s t^2, 1 t^p, 2 min(t^2/2, 2). More than max_kept kept pairs: stops\n"
        "early, cols empty and ptr[-1] = max_kept + 1. Releases the GIL.");
  m.def("blocks_dropped", &dropped_binding, nb::arg("rlo").noconvert(), nb::arg("rhi").noconvert(),
        nb::arg("clo").noconvert(), nb::arg("chi").noconvert(), nb::arg("L").noconvert(), nb::arg("est").noconvert(),
        nb::arg("eps"), nb::arg("log_tau"), nb::arg("kind"), nb::arg("param"), nb::arg("ptr").noconvert(),
        nb::arg("cols").noconvert(), nb::arg("n_threads") = 1,
        "blocks_dropped(rlo, rhi, clo, chi, L, est, eps, log_tau, kind, param, ptr, cols, n_threads=1) -> logD\n\n"
        "log of the dropped bound of the given block list (CSR, int32 cols) at the node log-sums L: the same walk\n"
        "as blocks_select, nodes holding a kept leaf always opened, dropped leaves added whatever their term.");
}

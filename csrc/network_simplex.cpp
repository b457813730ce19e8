// Exact discrete optimal transport by the primal network simplex on the complete bipartite graph: the Python
// bindings (one problem, a batch, a warm-started batch) and the compaction that drops zero-mass nodes before the
// solve. The solver itself (what it solves, its basis, pricing and pivots) is described in
// network_simplex_solver.hpp; its initial bases are in network_simplex_init.cpp.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "bind_util.hpp"
#include "network_simplex_solver.hpp"

namespace nb = nanobind;

namespace {

using monge::ns::i64;
using monge::ns::kInf;
using monge::ns::TransportSimplex;

// ------------------------------------------------------------------------------------------------------
// Drops zero-mass nodes, solves, and maps the result back (c-transform duals on the dropped nodes).

// Neumaier-compensated sum: the mass mismatch to fold is at rounding level, so the sums must be accurate.
double accurate_sum(const std::vector<double> &v) {
  double s = 0.0, comp = 0.0;
  for (double x : v) {
    const double t = s + x;
    comp += std::fabs(s) >= std::fabs(x) ? (s - t) + x : (x - t) + s;
    s = t;
  }
  return s + comp;
}

struct Result {
  std::vector<i64> rows, cols;
  std::vector<double> vals, f, g;
  double cost = 0.0;
  int status = 0;
  i64 n_iter = 0;
  bool warm = false;  // started from the given basis
};

// The basis in the caller's indices (node i < n: row i, n + j: column j, n + m: the root; -1: a dropped node of
// zero mass) -> the compacted solver's parents; false when it does not fit the kept nodes.
bool compact_basis(const i64 *basis, int n, int m, const std::vector<int> &ri, const std::vector<int> &cj,
                   std::vector<int> &par) {
  const int nn = int(ri.size()), mm = int(cj.size());
  std::vector<int> to(n + m + 1, -1);
  for (int k = 0; k < nn; ++k) to[ri[k]] = k;
  for (int l = 0; l < mm; ++l) to[n + cj[l]] = nn + l;
  to[n + m] = nn + mm;
  par.assign(nn + mm, -1);
  for (int u = 0; u < n + m; ++u) {
    const i64 p = basis[u];
    const bool kept = to[u] >= 0 && u < n + m;
    if (!kept) {
      if (p != -1) return false;
      continue;
    }
    if (p < 0 || p > n + m || to[p] < 0) return false;
    par[to[u]] = to[p];
  }
  return true;
}

Result solve_problem(const double *C, int n, int m, const double *a_in, const double *b_in, i64 max_iter,
                     const i64 *basis_in = nullptr, i64 *basis_out = nullptr) {
  Result res;
  res.f.assign(n, 0.0);
  res.g.assign(m, 0.0);
  if (basis_out != nullptr) std::fill(basis_out, basis_out + n + m, i64(-1));
  std::vector<int> ri, cj;  // kept (positive-mass) rows and columns
  for (int i = 0; i < n; ++i)
    if (a_in[i] > 0.0) ri.push_back(i);
  for (int j = 0; j < m; ++j)
    if (b_in[j] > 0.0) cj.push_back(j);
  const int nn = int(ri.size()), mm = int(cj.size());
  std::vector<char> row_kept(n, 0), col_kept(m, 0);
  for (int i : ri) row_kept[i] = 1;
  for (int j : cj) col_kept[j] = 1;

  if (nn > 0 && mm > 0) {
    std::vector<double> a(nn), b(mm);
    for (int k = 0; k < nn; ++k) a[k] = a_in[ri[k]];
    for (int k = 0; k < mm; ++k) b[k] = b_in[cj[k]];
    // Fold the rounding-level mass mismatch into the largest weight on the heavier side.
    const double sa = accurate_sum(a), sb = accurate_sum(b);
    if (!(std::fabs(sa - sb) <= 1e-9 * std::max(sa, sb))) res.status = 2;  // not a balanced problem
    if (sa > sb) {
      auto it = std::max_element(a.begin(), a.end());
      *it = std::max(0.0, *it - (sa - sb));
    } else if (sb > sa) {
      auto it = std::max_element(b.begin(), b.end());
      *it = std::max(0.0, *it - (sb - sa));
    }
    // A compact copy of C only when nodes were dropped; otherwise C is read in place.
    std::vector<double> Cc;
    const double *Cs = C;
    i64 ldc = m;
    if (nn < n || mm < m) {
      Cc.resize(size_t(nn) * mm);
      for (int k = 0; k < nn; ++k) {
        const double *src = C + i64(ri[k]) * m;
        double *dst = Cc.data() + i64(k) * mm;
        for (int l = 0; l < mm; ++l) dst[l] = src[cj[l]];
      }
      Cs = Cc.data();
      ldc = mm;
    }
    TransportSimplex ns(Cs, ldc, nn, mm, a.data(), b.data());
    std::vector<int> warm;
    const bool fits = basis_in != nullptr && compact_basis(basis_in, n, m, ri, cj, warm);
    const int st = ns.solve(max_iter, fits ? warm.data() : nullptr);
    if (res.status == 0) res.status = st;
    res.n_iter = ns.iterations();
    res.warm = ns.warm_started();
    if (basis_out != nullptr) {  // back to the caller's indices
      std::vector<int> par(nn + mm);
      ns.basis(par.data());
      auto orig = [&](int v) -> i64 { return v < nn ? ri[v] : v < nn + mm ? n + cj[v - nn] : n + m; };
      for (int u = 0; u < nn + mm; ++u) basis_out[orig(u)] = orig(par[u]);
    }
    std::vector<double> f(nn), g(mm);
    ns.extract(f.data(), g.data(), res.rows, res.cols, res.vals);
    for (int k = 0; k < nn; ++k) res.f[ri[k]] = f[k];
    for (int k = 0; k < mm; ++k) res.g[cj[k]] = g[k];
    for (auto &r : res.rows) r = ri[r];
    for (auto &c : res.cols) c = cj[c];
  }
  // c-transforms for the dropped nodes: rows against kept columns, then columns against all rows.
  for (int i = 0; i < n; ++i) {
    if (row_kept[i] && mm > 0) continue;
    const double *row = C + i64(i) * m;
    double best = kInf;
    for (int j : cj) best = std::min(best, row[j] - res.g[j]);
    res.f[i] = mm > 0 ? best : 0.0;
  }
  if (mm == 0) {  // no kept columns: f was set to 0; make it the c-transform of g = 0
    for (int i = 0; i < n; ++i) res.f[i] = *std::min_element(C + i64(i) * m, C + i64(i) * m + m);
  }
  if (mm < m || nn == 0) {  // a pass over C, only when some column needs it
    std::vector<double> colbest(m, kInf);
    for (int i = 0; i < n; ++i) {
      const double *row = C + i64(i) * m;
      const double fi = res.f[i];
      for (int j = 0; j < m; ++j) colbest[j] = std::min(colbest[j], row[j] - fi);
    }
    for (int j = 0; j < m; ++j)
      if (!col_kept[j] || nn == 0) res.g[j] = colbest[j];
  }
  double cost = 0.0;
  for (size_t k = 0; k < res.vals.size(); ++k) cost += res.vals[k] * C[res.rows[k] * m + res.cols[k]];
  res.cost = cost;
  return res;
}

using monge::to_numpy;

using CArray1 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using CArray2 = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

nb::tuple network_simplex(CArray1 a, CArray1 b, CArray2 C, i64 max_iter) {
  const size_t n = C.shape(0), m = C.shape(1);
  if (a.shape(0) != n || b.shape(0) != m)
    throw std::invalid_argument("network_simplex: expected a (n,), b (m,), C (n, m)");
  if (n == 0 || m == 0) throw std::invalid_argument("network_simplex: empty problem");
  if (n > size_t(std::numeric_limits<int>::max() / 2) || m > size_t(std::numeric_limits<int>::max() / 2))
    throw std::invalid_argument("network_simplex: problem too large");
  const double *pa = a.data(), *pb = b.data(), *pC = C.data();
  for (size_t i = 0; i < n; ++i)
    if (!(pa[i] >= 0.0) || !std::isfinite(pa[i])) throw std::invalid_argument("network_simplex: a must be >= 0");
  for (size_t j = 0; j < m; ++j)
    if (!(pb[j] >= 0.0) || !std::isfinite(pb[j])) throw std::invalid_argument("network_simplex: b must be >= 0");
  Result r;
  {
    nb::gil_scoped_release release;
    r = solve_problem(pC, int(n), int(m), pa, pb, max_iter);
  }
  return nb::make_tuple(to_numpy(std::move(r.rows)), to_numpy(std::move(r.cols)), to_numpy(std::move(r.vals)),
                        to_numpy(std::move(r.f)), to_numpy(std::move(r.g)), r.cost, r.status, r.n_iter);
}

using CArray3 = nb::ndarray<const double, nb::ndim<3>, nb::c_contig, nb::device::cpu>;

void check_weights(const double *w, size_t count, const char *msg) {
  for (size_t q = 0; q < count; ++q)
    if (!(w[q] >= 0.0) || !std::isfinite(w[q])) throw std::invalid_argument(msg);
}

// Neumaier-compensated sum of x_k * y_k.
double accurate_dot(const double *x, const double *y, i64 len) {
  double s = 0.0, comp = 0.0;
  for (i64 k = 0; k < len; ++k) {
    const double v = x[k] * y[k], t = s + v;
    comp += std::fabs(s) >= std::fabs(v) ? (s - t) + v : (v - t) + s;
    s = t;
  }
  return s + comp;
}

// One problem of a batch into its packed rows (see network_simplex_batch): iq (2K + 2) ints, fq (K + n + m + 3)
// floats; basis_in / basis_out (n + m, or null): warm start and final basis. Returns whether it started warm.
bool solve_packed(const double *aq, const double *bq, const double *Cq, size_t n, size_t m, i64 max_iter,
                  bool rebalance, i64 *iq, double *fq, const i64 *basis_in, i64 *basis_out) {
  const i64 K = i64(n + m - 1), NF = K + i64(n + m) + 3;
  std::vector<double> bs;
  if (rebalance) {
    double sa = 0.0, sb = 0.0;
    for (size_t i = 0; i < n; ++i) sa += aq[i];
    for (size_t j = 0; j < m; ++j) sb += bq[j];
    const double ratio = sa / sb;
    if (sb > 0.0 && std::isfinite(ratio) && std::fabs(ratio - 1.0) > 1e-12) {
      bs.assign(bq, bq + m);
      for (double &w : bs) w *= ratio;
      bq = bs.data();
    }
  }
  bool finite = true;
  const int e = monge::cost_exponent(Cq, i64(n * m), finite);
  if (!finite) {  // no answer to give (e.g. costs that overflowed when computed from points near 1e300)
    if (basis_out != nullptr) std::fill(basis_out, basis_out + n + m, i64(-1));
    iq[2 * K] = 3;
    std::fill(fq + K, fq + NF, std::numeric_limits<double>::quiet_NaN());
    return false;
  }
  std::vector<double> Cs;  // C / 2^e (exact) when its scale is far from 1
  if (e != 0) {
    Cs.resize(n * m);
    for (size_t t = 0; t < n * m; ++t) Cs[t] = std::ldexp(Cq[t], -e);
    Cq = Cs.data();
  }
  Result r = solve_problem(Cq, int(n), int(m), aq, bq, max_iter, basis_in, basis_out);
  if (e != 0) monge::centre_duals(r.f.data(), i64(n), r.g.data(), i64(m));  // room for the scale
  const i64 k = std::min<i64>(K, i64(r.vals.size()));
  std::copy(r.rows.begin(), r.rows.begin() + k, iq);
  std::copy(r.cols.begin(), r.cols.begin() + k, iq + K);
  iq[2 * K] = r.status;
  iq[2 * K + 1] = r.n_iter;
  std::copy(r.vals.begin(), r.vals.begin() + k, fq);
  std::copy(r.f.begin(), r.f.end(), fq + K);
  std::copy(r.g.begin(), r.g.end(), fq + K + i64(n));
  std::vector<double> rs(n, 0.0), cs(m, 0.0);
  for (size_t t = 0; t < r.vals.size(); ++t) {
    rs[r.rows[t]] += r.vals[t];
    cs[r.cols[t]] += r.vals[t];
  }
  double err = 0.0;
  for (size_t i = 0; i < n; ++i) err += std::fabs(rs[i] - aq[i]);
  for (size_t j = 0; j < m; ++j) err += std::fabs(cs[j] - bq[j]);
  double *tail = fq + K + i64(n + m);
  tail[0] = r.cost;
  tail[1] = err;
  tail[2] = r.cost - accurate_dot(aq, r.f.data(), i64(n)) - accurate_dot(bq, r.g.data(), i64(m));
  if (e != 0) {  // back to the caller's scale; an answer beyond float64 (inf) is reported as status 3
    bool ok = true;
    for (double *x = fq + K; x != fq + NF; ++x) {
      if (x == tail + 1) continue;  // the marginal error is in units of the weights
      *x = std::ldexp(*x, e);
      ok &= std::isfinite(*x);
    }
    if (!ok) iq[2 * K] = 3;
  }
  return r.warm;
}

// B independent problems in one call (threads over the batch, none for one problem), with each plan's marginal
// error and duality gap: what the Python solver reports, without a per-problem round trip through Python.
// Two packed outputs (K = n + m - 1; few arrays, because each numpy array handed back costs about a
// microsecond, which counts at n = 50):
//   ints   (B, 2K + 2): rows (K) | cols (K) | status | n_iter
//   floats (B, K + n + m + 3): vals (K) | f (n) | g (m) | cost | error | gap
// The sparse plan is padded with zeros. A cost matrix whose scale is far from 1 is solved as C / 2^e (exact) and
// the answer scaled back; status 3: no representable answer (a non-finite cost: f, g, cost, error and gap are
// NaN; or an optimal value or dual beyond float64). rebalance: b is first rescaled by sum(a) / sum(b) (weights whose
// masses agree only to float32 precision), and error and gap are measured against that b.
std::tuple<monge::NumpyOut<i64, 2>, monge::NumpyOut<double, 2>> network_simplex_batch(CArray2 a, CArray2 b,
                                                                                     CArray3 C, i64 max_iter,
                                                                                     int n_threads, bool rebalance) {
  const size_t B = C.shape(0), n = C.shape(1), m = C.shape(2);
  if (a.shape(0) != B || b.shape(0) != B || a.shape(1) != n || b.shape(1) != m)
    throw std::invalid_argument("network_simplex_batch: expected a (B, n), b (B, m), C (B, n, m)");
  if (n == 0 || m == 0) throw std::invalid_argument("network_simplex_batch: empty problem");
  if (n > size_t(std::numeric_limits<int>::max() / 2) || m > size_t(std::numeric_limits<int>::max() / 2))
    throw std::invalid_argument("network_simplex_batch: problem too large");
  const double *pa = a.data(), *pb = b.data(), *pC = C.data();
  check_weights(pa, B * n, "network_simplex_batch: a must be >= 0");
  check_weights(pb, B * m, "network_simplex_batch: b must be >= 0");
  const i64 K = i64(n + m - 1), NI = 2 * K + 2, NF = K + i64(n + m) + 3;
  auto ints = monge::zeros<i64>(B * NI);
  auto flts = monge::zeros<double>(B * NF);
  {
    nb::gil_scoped_release release;
    monge::parallel_for(i64(B), n_threads, [&](i64 q) {
      solve_packed(pa + q * n, pb + q * m, pC + q * i64(n * m), n, m, max_iter, rebalance, ints.get() + q * NI,
                   flts.get() + q * NF, nullptr, nullptr);
    });
  }
  return {monge::owned<i64, 2>(std::move(ints), {B, size_t(NI)}),
          monge::owned<double, 2>(std::move(flts), {B, size_t(NF)})};
}

using IArray2 = nb::ndarray<const i64, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// network_simplex_batch with a warm start: each problem may start from a basis (e.g. the final basis of a solve of
// the same marginals with a nearby cost: a conditional-gradient or a Sinkhorn-like outer loop), and hands back
// its final basis. basis (B, n + m) int64: the parent of every node in the spanning tree (row i: node i, column j:
// node n + j, the root: n + m; -1 for nodes of zero mass); None: the greedy start.
std::tuple<monge::NumpyOut<i64, 2>, monge::NumpyOut<double, 2>, monge::NumpyOut<i64, 2>, monge::NumpyOut<i64, 1>>
network_simplex_warm(CArray2 a, CArray2 b, CArray3 C, IArray2 basis, i64 max_iter, int n_threads, bool rebalance) {
  const size_t B = C.shape(0), n = C.shape(1), m = C.shape(2);
  if (a.shape(0) != B || b.shape(0) != B || a.shape(1) != n || b.shape(1) != m)
    throw std::invalid_argument("network_simplex_warm: expected a (B, n), b (B, m), C (B, n, m)");
  if (n == 0 || m == 0) throw std::invalid_argument("network_simplex_warm: empty problem");
  if (n > size_t(std::numeric_limits<int>::max() / 2) || m > size_t(std::numeric_limits<int>::max() / 2))
    throw std::invalid_argument("network_simplex_warm: problem too large");
  const bool has_basis = basis.is_valid();
  if (has_basis && (basis.shape(0) != B || basis.shape(1) != n + m))
    throw std::invalid_argument("network_simplex_warm: expected basis (B, n + m) int64 or None");
  const double *pa = a.data(), *pb = b.data(), *pC = C.data();
  const i64 *pbase = has_basis ? basis.data() : nullptr;
  check_weights(pa, B * n, "network_simplex_warm: a must be >= 0");
  check_weights(pb, B * m, "network_simplex_warm: b must be >= 0");
  const i64 K = i64(n + m - 1), NI = 2 * K + 2, NF = K + i64(n + m) + 3, NB = i64(n + m);
  auto ints = monge::zeros<i64>(B * NI);
  auto flts = monge::zeros<double>(B * NF);
  auto bout = monge::zeros<i64>(B * NB);
  auto warm = monge::zeros<i64>(B);
  {
    nb::gil_scoped_release release;
    monge::parallel_for(i64(B), n_threads, [&](i64 q) {
      warm.get()[q] = solve_packed(pa + q * n, pb + q * m, pC + q * i64(n * m), n, m, max_iter, rebalance,
                                   ints.get() + q * NI, flts.get() + q * NF, pbase ? pbase + q * NB : nullptr,
                                   bout.get() + q * NB);
    });
  }
  return {monge::owned<i64, 2>(std::move(ints), {B, size_t(NI)}),
          monge::owned<double, 2>(std::move(flts), {B, size_t(NF)}),
          monge::owned<i64, 2>(std::move(bout), {B, size_t(NB)}), monge::owned<i64, 1>(std::move(warm), {B})};
}

}  // namespace

void register_network_simplex(nb::module_ &m) {
  m.def("network_simplex_batch", &network_simplex_batch, nb::arg("a"), nb::arg("b"), nb::arg("C"),
        nb::arg("max_iter") = 0, nb::arg("n_threads") = 0, nb::arg("rebalance") = true,
        "network_simplex_batch(a, b, C, max_iter=0, n_threads=0, rebalance=True) -> (ints, floats)\n\n"
        "B independent problems: a (B, n), b (B, m), C (B, n, m), float64, C-contiguous. With K = n + m - 1:\n"
        "ints (B, 2K + 2) = rows (K) | cols (K) | status | n_iter; floats (B, K + n + m + 3) = vals (K) | f (n) |\n"
        "g (m) | cost | error | gap. The sparse plans are padded with zeros; status 0 optimal, 1 max_iter\n"
        "reached (feasible, not proven optimal), 2 infeasible, 3 no representable answer (C not finite, or\n"
        "the value or a dual beyond float64; costs far from 1 are solved as C / 2^e and scaled back); error: l1 marginal error of the plan; gap:\n"
        "cost - <a, f> - <b, g>. rebalance: b is first rescaled to the mass of a. Threads over the batch\n"
        "(n_threads <= 0: one per hardware thread; one problem runs on the calling thread). Releases the GIL.");
  m.def("network_simplex_warm", &network_simplex_warm, nb::arg("a"), nb::arg("b"), nb::arg("C"),
        nb::arg("basis").none(), nb::arg("max_iter") = 0, nb::arg("n_threads") = 0, nb::arg("rebalance") = true,
        "network_simplex_warm(a, b, C, basis, max_iter=0, n_threads=0, rebalance=True) -> (ints, floats, basis,\n"
        "warm)\n\nnetwork_simplex_batch started from given bases. basis (B, n + m) int64 or None: the parent of\n"
        "every node in a spanning tree (row i: node i, column j: node n + j, the root: n + m, -1: a node of zero\n"
        "mass), e.g. the basis returned by a solve with the same a, b and another C. A basis that is not a\n"
        "feasible, strongly feasible tree for a, b is ignored (greedy start). Returns ints, floats as\n"
        "network_simplex_batch, the final bases (B, n + m) and warm (B,): 1 where the given basis was used.");
  m.def("network_simplex", &network_simplex, nb::arg("a"), nb::arg("b"), nb::arg("C"), nb::arg("max_iter") = 0,
        "Exact OT by the network simplex: (rows, cols, vals, f, g, cost, status, n_iter). status 0 = optimal, "
        "1 = max_iter reached (feasible, not proven optimal), 2 = infeasible. max_iter <= 0: no cap.");
}

// Reduced costs r_ij = |x_i - y_j|^p - f_i - g_j of two point clouds without storing the cost: the global
// optimality certificate of the multiscale exact solver (every r_ij >= -tol) and its short lists (the arcs of
// smallest reduced cost of each row).
//
// Full scan (leaf = 0): every pair, rows split over threads. Blocked scan (leaf > 0): a kd-tree on each cloud
// (median splits of the widest side, leaves of <= leaf points). Per node B of either tree: the box centre c_B,
// half widths w_B, and an affine upper bound of the potential over the node, g(y) <= g_B + <t_B, y - c_B> + rho_B
// (least-squares slope t_B, rho_B the largest residual, measured: the bound holds whatever the fit). For a leaf A
// of x and a node B of y, with e = c_A - c_B, dx = x - c_A, dy = y - c_B:
//   |x - y|^2 = |e|^2 + 2<e, dx> - 2<e, dy> + |dx - dy|^2 >= |e|^2 + 2<e, dx> - 2<e, dy>, so for p = 2
//   r >= |e|^2 - f_A - g_B - rho_A - rho_B - sum_k |2e_k - s_A,k| w_A,k - sum_k |2e_k + t_B,k| w_B,k,
// and for every p also r >= dist(box A, box B)^p - max_A f - max_B g. The larger bound, lowered by a rounding
// margin, prunes the block pair when it is >= the threshold; other pairs descend the y tree (nearer child
// first) down to leaf pairs, whose arcs are priced one by one. The result is the same set of arcs as the full
// scan's (up to ties): nothing below the threshold is ever pruned. Leaves of x are spread over threads; the
// output does not depend on their number or their timing: each leaf writes its own block (concatenated in the
// x tree's row order) and a column's best arc is the smallest r, ties to the row first in that order.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bind_util.hpp"

namespace nb = nanobind;

namespace {

using i64 = std::int64_t;
constexpr double kInf = std::numeric_limits<double>::infinity();

using monge::to_numpy;

inline double ground(const double *a, const double *b, int d, double p) {
  double c = 0.0;
  for (int k = 0; k < d; ++k) c += (a[k] - b[k]) * (a[k] - b[k]);
  return p == 2.0 ? c : std::pow(std::sqrt(c), p);
}

// The per_row smallest (r, j) of one row, as a max-heap on r.
struct RowBest {
  std::vector<std::pair<double, int>> heap;
  double worst(int k, double thresh) const { return int(heap.size()) < k ? thresh : heap.front().first; }
  void offer(double v, int j, int k) {
    if (int(heap.size()) < k) {
      heap.emplace_back(v, j);
      std::push_heap(heap.begin(), heap.end());
    } else if (v < heap.front().first) {
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = {v, j};
      std::push_heap(heap.begin(), heap.end());
    }
  }
};

// The smallest r of each column and the position in the x tree's order of its row (a), ties to the first
// position (what one thread scanning the leaves in order keeps): the same whatever order the arcs come in.
// The scan of a leaf keeps the first of equal r itself (its rows in s order, a thread's leaves too); offer()
// merges the threads'.
struct ColBest {
  std::vector<double> v;
  std::vector<i64> a;
  explicit ColBest(int m) : v(m, kInf), a(m, -1) {}
  void offer(int j, double r, i64 i) {
    if (r < v[j] || (r == v[j] && i < a[j])) v[j] = r, a[j] = i;
  }
};

// The arcs one leaf of x contributes (its rows' short lists, in the tree's row order) and the pairs it priced.
struct LeafOut {
  std::vector<i64> rows, cols;
  std::vector<double> vals;
  i64 priced = 0;
};

// A kd-tree over one cloud with the per-node potential bounds.
struct Tree {
  int d = 0;
  std::vector<int> perm, begin, end, left, right;  // left = -1 at leaves
  std::vector<double> lo, hi, ctr, half, slope, base, rho, vmax;

  void build(const double *z, const double *v, int n, int dim, int leaf) {
    d = dim;
    perm.resize(n);
    std::iota(perm.begin(), perm.end(), 0);
    node(z, v, 0, n);
    for (size_t q = 0; q < begin.size(); ++q) {
      const int b = begin[q], e = end[q];
      if (e - b <= leaf) continue;
      int ax = 0;
      for (int k = 1; k < d; ++k)
        if (hi[q * d + k] - lo[q * d + k] > hi[q * d + ax] - lo[q * d + ax]) ax = k;
      if (!(hi[q * d + ax] > lo[q * d + ax])) continue;  // all points equal: a leaf however large
      const int mid = b + (e - b) / 2;
      std::nth_element(perm.begin() + b, perm.begin() + mid, perm.begin() + e,
                       [&](int s, int t) { return z[i64(s) * d + ax] < z[i64(t) * d + ax]; });
      const int l = node(z, v, b, mid), r = node(z, v, mid, e);
      left[q] = l, right[q] = r;
    }
  }

  // A node over perm[b, e): box, affine least-squares bound of v, largest value.
  int node(const double *z, const double *v, int b, int e) {
    const int q = int(begin.size());
    begin.push_back(b), end.push_back(e), left.push_back(-1), right.push_back(-1);
    for (auto *arr : {&lo, &hi, &ctr, &half, &slope}) arr->resize(size_t(q + 1) * d);
    double *L = &lo[size_t(q) * d], *H = &hi[size_t(q) * d], *C = &ctr[size_t(q) * d], *W = &half[size_t(q) * d];
    double *S = &slope[size_t(q) * d];
    std::fill(L, L + d, kInf), std::fill(H, H + d, -kInf);
    double vm = -kInf;
    for (int s = b; s < e; ++s) {
      const double *zi = z + i64(perm[s]) * d;
      for (int k = 0; k < d; ++k) L[k] = std::min(L[k], zi[k]), H[k] = std::max(H[k], zi[k]);
      vm = std::max(vm, v[perm[s]]);
    }
    for (int k = 0; k < d; ++k) C[k] = 0.5 * (L[k] + H[k]), W[k] = 0.5 * (H[k] - L[k]);
    const double b0 = fit(z, v, b, e, C, S);
    double res = -kInf;
    for (int s = b; s < e; ++s) {
      const double *zi = z + i64(perm[s]) * d;
      double a = b0;
      for (int k = 0; k < d; ++k) a += S[k] * (zi[k] - C[k]);
      res = std::max(res, v[perm[s]] - a);
    }
    base.push_back(b0), rho.push_back(res), vmax.push_back(vm);
    return q;
  }

  // Least squares v ~ b0 + <S, z - C> over the node (normal equations with a tiny ridge; no slope for d > 8).
  double fit(const double *z, const double *v, int b, int e, const double *C, double *S) const {
    std::fill(S, S + d, 0.0);
    double mean = 0.0;
    for (int s = b; s < e; ++s) mean += v[perm[s]];
    mean /= (e - b);
    if (d > 8 || e - b <= d) return mean;
    const int D = d + 1;
    double A[9][10] = {};
    for (int s = b; s < e; ++s) {
      const double *zi = z + i64(perm[s]) * d;
      double u[9];
      u[0] = 1.0;
      for (int k = 0; k < d; ++k) u[k + 1] = zi[k] - C[k];
      for (int r = 0; r < D; ++r) {
        for (int c = 0; c < D; ++c) A[r][c] += u[r] * u[c];
        A[r][D] += u[r] * v[perm[s]];
      }
    }
    for (int r = 1; r < D; ++r) A[r][r] += 1e-12 * (A[r][r] + 1e-300);
    for (int c = 0; c < D; ++c) {  // Gauss-Jordan with partial pivoting
      int piv = c;
      for (int r = c + 1; r < D; ++r)
        if (std::fabs(A[r][c]) > std::fabs(A[piv][c])) piv = r;
      if (!(std::fabs(A[piv][c]) > 0.0)) return mean;
      for (int k = 0; k <= D; ++k) std::swap(A[c][k], A[piv][k]);
      for (int r = 0; r < D; ++r) {
        if (r == c) continue;
        const double fct = A[r][c] / A[c][c];
        for (int k = c; k <= D; ++k) A[r][k] -= fct * A[c][k];
      }
    }
    for (int k = 0; k < d; ++k) S[k] = A[k + 1][D] / A[k + 1][k + 1];
    const double b0 = A[0][D] / A[0][0];
    for (int k = 0; k < d; ++k)
      if (!std::isfinite(S[k])) {
        std::fill(S, S + d, 0.0);
        return mean;
      }
    return std::isfinite(b0) ? b0 : mean;
  }
};

struct Scan {
  const double *x, *y, *f, *g;
  int d;
  double p, thresh, margin;
  int per_row;
  bool prune;
  const Tree *tx, *ty;

  // A lower bound of r over (leaf A of x) x (node B of y).
  double bound(int A, int B) const {
    if (!prune) return -kInf;
    const double *cA = &tx->ctr[size_t(A) * d], *wA = &tx->half[size_t(A) * d], *sA = &tx->slope[size_t(A) * d];
    const double *cB = &ty->ctr[size_t(B) * d], *wB = &ty->half[size_t(B) * d], *sB = &ty->slope[size_t(B) * d];
    double gap2 = 0.0, e2 = 0.0, lin = 0.0;
    for (int k = 0; k < d; ++k) {
      const double e = cA[k] - cB[k];
      const double gk = std::max(0.0, std::fabs(e) - wA[k] - wB[k]);
      gap2 += gk * gk;
      e2 += e * e;
      lin += std::fabs(2 * e - sA[k]) * wA[k] + std::fabs(2 * e + sB[k]) * wB[k];
    }
    double lb = (p == 2.0 ? gap2 : std::pow(std::sqrt(gap2), p)) - tx->vmax[A] - ty->vmax[B];
    if (p == 2.0) lb = std::max(lb, e2 - tx->base[A] - ty->base[B] - tx->rho[A] - ty->rho[B] - lin);
    return lb - margin;
  }

  // Every arc of leaf A of x against the y tree; row heaps of A's rows, column bests of this thread.
  i64 leaf(int A, std::vector<RowBest> &best, ColBest &cb) const {
    const int b = tx->begin[A], e = tx->end[A];
    auto level = [&] {  // no arc of A above this helps any row of A
      double w = -kInf;
      for (int s = b; s < e; ++s) w = std::max(w, best[s - b].worst(per_row, thresh));
      return w;
    };
    double need = thresh;  // column bests only matter below thresh too
    i64 priced = 0;
    std::vector<std::pair<double, int>> stack{{bound(A, 0), 0}};
    while (!stack.empty()) {
      auto [lb, B] = stack.back();
      stack.pop_back();
      if (lb >= need) continue;
      if (ty->left[B] < 0) {
        for (int s = b; s < e; ++s) {
          const int i = tx->perm[s];
          const double *xi = x + i64(i) * d;
          RowBest &rb = best[s - b];
          for (int t = ty->begin[B]; t < ty->end[B]; ++t) {
            const int j = ty->perm[t];
            const double r = ground(xi, y + i64(j) * d, d, p) - f[i] - g[j];
            if (r < cb.v[j]) cb.v[j] = r, cb.a[j] = s;  // ties: the first s (a thread's leaves come in s order)
            if (r < thresh && r < rb.worst(per_row, thresh)) rb.offer(r, j, per_row);
          }
        }
        priced += i64(e - b) * (ty->end[B] - ty->begin[B]);
        need = level();
        continue;
      }
      const int L = ty->left[B], R = ty->right[B];
      const double bl = bound(A, L), br = bound(A, R);
      if (bl <= br) stack.push_back({br, R}), stack.push_back({bl, L});
      else stack.push_back({bl, L}), stack.push_back({br, R});
    }
    return priced;
  }
};

using F1 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using F2 = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// Leaves of x over min(n_threads, #leaves) threads, handed out one at a time; each leaf's short lists go to its
// own block, the column bests to the thread's (merged after the join; ColBest's tie rule makes the merge
// order-free). The column bests of every thread end up in the returned one.
ColBest scan_leaves(const Scan &sc, const std::vector<int> &leaves, int n_threads, int m, std::vector<LeafOut> &out) {
  const Tree &tx = *sc.tx;
  const int T = std::max(1, std::min<int>(n_threads, int(leaves.size())));
  std::vector<ColBest> cb(T, ColBest(m));
  out.assign(leaves.size(), LeafOut{});
  std::atomic<size_t> next{0};
  auto work = [&](int t) {
    std::vector<RowBest> best;
    for (size_t q; (q = next.fetch_add(1)) < leaves.size();) {
      const int A = leaves[q], b = tx.begin[A], e = tx.end[A];
      best.assign(e - b, RowBest{});
      LeafOut &o = out[q];
      o.priced = sc.leaf(A, best, cb[t]);
      for (int s = b; s < e; ++s)
        for (auto &bj : best[s - b].heap) o.rows.push_back(tx.perm[s]), o.cols.push_back(bj.second),
                                          o.vals.push_back(bj.first);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < T; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto &th : pool) th.join();
  for (int t = 1; t < T; ++t)
    for (int j = 0; j < m; ++j) cb[0].offer(j, cb[t].v[j], cb[t].a[j]);
  return std::move(cb[0]);
}

// Rows of x in blocks of at most `lf` (the full scan: a fixed number of blocks, whatever the thread count), the
// y tree with leaves of `leaf` points; the blocks' arcs in leaf order, then each column's best below -tol.
nb::tuple reduced_cost_scan(F2 x, F2 y, F1 f, F1 g, double p, double tol, int per_row, int n_threads, int leaf) {
  const int n = int(x.shape(0)), m = int(y.shape(0)), d = int(x.shape(1));
  if (int(y.shape(1)) != d || int(f.shape(0)) != n || int(g.shape(0)) != m || per_row < 1 || leaf < 0 || n < 1 ||
      m < 1)
    throw std::invalid_argument("reduced_cost_scan: expected x (n, d), y (m, d), f (n,), g (m,), per_row >= 1, "
                                "leaf >= 0");
  const double thresh = -tol;
  std::vector<i64> rows, cols;
  std::vector<double> vals;
  i64 priced = 0;
  {
    nb::gil_scoped_release release;
    Tree tx, ty;
    const int lf = leaf > 0 ? leaf : std::max(n, m) + 1;  // leaf = 0: one leaf each, i.e. the full scan
    double scale = 0.0;
    for (int i = 0; i < n; ++i) scale = std::max(scale, std::fabs(f.data()[i]));
    for (int j = 0; j < m; ++j) scale = std::max(scale, std::fabs(g.data()[j]));
    tx.build(x.data(), f.data(), n, d, leaf > 0 ? lf : 1 + n / 64);
    ty.build(y.data(), g.data(), m, d, lf);
    double diam = 0.0;
    for (int k = 0; k < d; ++k) {
      const double s = std::max(tx.hi[k], ty.hi[k]) - std::min(tx.lo[k], ty.lo[k]);
      diam += s * s;
    }
    const double cmax = p == 2.0 ? diam : std::pow(std::sqrt(diam), p);
    Scan sc{x.data(), y.data(), f.data(), g.data(), d, p, thresh, 64 * 2.2e-16 * (cmax + 2 * scale + 1e-300),
            per_row, leaf > 0, &tx, &ty};
    std::vector<int> leaves;
    for (size_t q = 0; q < tx.begin.size(); ++q)
      if (tx.left[q] < 0) leaves.push_back(int(q));
    std::sort(leaves.begin(), leaves.end(), [&](int u, int v) { return tx.begin[u] < tx.begin[v]; });
    std::vector<LeafOut> out;
    const ColBest cb = scan_leaves(sc, leaves, n_threads, m, out);
    for (LeafOut &o : out) {
      rows.insert(rows.end(), o.rows.begin(), o.rows.end());
      cols.insert(cols.end(), o.cols.begin(), o.cols.end());
      vals.insert(vals.end(), o.vals.begin(), o.vals.end());
      priced += o.priced;
      o = LeafOut{};
    }
    for (int j = 0; j < m; ++j)
      if (cb.v[j] < thresh) rows.push_back(tx.perm[cb.a[j]]), cols.push_back(j), vals.push_back(cb.v[j]);
  }
  return nb::make_tuple(to_numpy(std::move(rows)), to_numpy(std::move(cols)), to_numpy(std::move(vals)), priced);
}

}  // namespace

void register_reduced_costs(nb::module_ &m) {
  m.def("reduced_cost_scan", &reduced_cost_scan, nb::arg("x"), nb::arg("y"), nb::arg("f"), nb::arg("g"),
        nb::arg("p"), nb::arg("tol"), nb::arg("per_row"), nb::arg("n_threads"), nb::arg("leaf") = 32,
        "Arcs with r = |x_i - y_j|^p - f_i - g_j < -tol, the cost never stored: (rows, cols, r, n_priced) with "
        "the per_row smallest r of each row, then the smallest of each column (may repeat a row's). leaf > 0: "
        "blocked scan over kd-trees (block pairs whose lower bound is >= -tol are skipped; the same arcs as the "
        "full scan up to ties); leaf = 0: every pair. tol may be negative (short lists: arcs with r < -tol).");
}

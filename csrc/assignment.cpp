// Dense linear assignment (Monge matching) solver.
//
// Algorithm: Jonker-Volgenant (LAPJV, Computing 38, 1987), i.e. a shortest-augmenting-path method on
// the dual potentials v of the columns, preceded by JV's cheap initialisation:
//   1. column reduction + reduction transfer (square problems only),
//   2. augmenting row reduction (ARR, an auction-like pass), with a bounded amount of work because
//      ties (integer costs) can make it cycle,
//   3. one Dijkstra shortest-path search per remaining free row on the reduced costs
//      C_ij - v_j - u_i >= 0, dense (O(m) per scanned row), with the lazy potential update of JV.
//
// Invariants (exact arithmetic): every assigned row i is matched to a column x_i minimising
// C_ij - v_j over j; so with u_i := C_{i,x_i} - v_{x_i} all reduced costs are >= 0. Columns, once
// assigned, stay assigned, and v only decreases after the initialisation. For rectangular problems
// (n < m) v starts at 0 and the square-only column reduction is skipped, hence v <= 0 throughout
// and v == 0 on every unassigned column: (u, v) is then dual optimal for
//   max sum u + sum v  s.t.  u_i + v_j <= C_ij, v_j <= 0.
//
// Hot loop: the relaxation of one scanned row against all columns (`relax_row`, assignment_relax.hpp): scalar,
// AVX2 and AVX-512 versions that fuse into the pass the minima Dijkstra needs next.

#include "assignment.hpp"

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "assignment_relax.hpp"
#include "bind_util.hpp"

namespace nb = nanobind;

namespace monge {
namespace {

class LapSolver {
 public:
  LapSolver(const double *C, int n, int m)
      : C_(C), n_(n), m_(m), row_to_col_(n, -1), col_to_row_(m, -1), v_(m, 0.0) {}

  void solve() {
    if (n_ == m_) {
      column_reduction();
    } else {
      for (int i = 0; i < n_; ++i) free_rows_.push_back(i);
    }
    augmenting_row_reduction();
    augment_free_rows();
  }

  // Writes the matching and the duals u_i = C_{i,x_i} - v_{x_i}; returns the cost.
  double extract(int64_t *cols, double *u, double *v) const {
    double cost = 0.0;
    for (int i = 0; i < n_; ++i) {
      const int j = row_to_col_[i];
      cols[i] = j;
      u[i] = row(i)[j] - v_[j];
      cost += row(i)[j];
    }
    std::copy(v_.begin(), v_.end(), v);
    return cost;
  }

 private:
  const double *row(int i) const { return C_ + static_cast<std::size_t>(i) * m_; }

  void assign(int i, int j) {
    row_to_col_[i] = j;
    col_to_row_[j] = i;
  }

  // ---- 1. Column reduction and reduction transfer (square problems) ----------------------------

  // v_j = min_i C_ij; each column is tentatively given to its minimising row (a row keeps only one
  // column). Rows that got exactly one column transfer their slack to it (reduction transfer),
  // rows that got none are free.
  void column_reduction() {
    std::vector<double> colmin(row(0), row(0) + m_);
    std::vector<int> colarg(m_, 0);
    for (int i = 1; i < n_; ++i) {  // row-major sweep: contiguous and vectorisable
      const double *ci = row(i);
      for (int j = 0; j < m_; ++j) {
        const bool better = ci[j] < colmin[j];
        colmin[j] = better ? ci[j] : colmin[j];
        colarg[j] = better ? i : colarg[j];
      }
    }
    v_ = colmin;
    std::vector<int> matches(n_, 0);
    for (int j = m_ - 1; j >= 0; --j) {
      const int i = colarg[j];
      if (++matches[i] == 1) {
        assign(i, j);
      } else if (v_[j] < v_[row_to_col_[i]]) {
        col_to_row_[row_to_col_[i]] = -1;
        assign(i, j);
      }
    }
    for (int i = 0; i < n_; ++i) {
      if (matches[i] == 0) {
        free_rows_.push_back(i);
      } else if (matches[i] == 1) {
        reduction_transfer(i);
      }
    }
  }

  // Lowers v of row i's column by the gap to the row's second best reduced cost.
  void reduction_transfer(int i) {
    const int j1 = row_to_col_[i];
    const double *ci = row(i);
    double best = kInf;
    for (int j = 0; j < m_; ++j) {
      const double r = (j == j1) ? kInf : ci[j] - v_[j];
      best = r < best ? r : best;
    }
    const double slack = best - (ci[j1] - v_[j1]);
    if (slack > 0.0 && slack < kInf) v_[j1] -= slack;
  }

  // ---- 2. Augmenting row reduction ---------------------------------------------------------------

  // Smallest and second smallest reduced cost C_ij - v_j of row i, with their columns.
  void two_smallest(int i, double &u1, int &j1, double &u2, int &j2) const {
    const double *ci = row(i);
    u1 = kInf, u2 = kInf;
    j1 = 0, j2 = -1;
    for (int j = 0; j < m_; ++j) {
      const double r = ci[j] - v_[j];
      if (r < u2) {
        if (r < u1) {
          u2 = u1, j2 = j1;
          u1 = r, j1 = j;
        } else {
          u2 = r, j2 = j;
        }
      }
    }
  }

  // JV's ARR: each free row bids for its best column, lowering that column's v by the gap to the
  // second best (an auction step with zero epsilon), and evicts the column's previous row. With
  // ties (gap 0) this can cycle, so at most kArrPasses passes are made and the total number of
  // steps is capped; whatever rows are left free go to the shortest-path phase.
  void augmenting_row_reduction() {
    constexpr int kArrPasses = 2;
    const long long budget = 4LL * n_ + 16;  // total ARR steps, each O(m)
    long long steps = 0;
    for (int pass = 0; pass < kArrPasses && !free_rows_.empty(); ++pass) {
      std::vector<int> todo;
      todo.swap(free_rows_);
      std::size_t k = 0;
      while (k < todo.size()) {
        if (m_ < 2 || ++steps > budget) break;
        const int i = todo[k++];
        double u1, u2;
        int j1, j2;
        two_smallest(i, u1, j1, u2, j2);
        int i0 = col_to_row_[j1];
        if (u1 < u2) {
          v_[j1] -= u2 - u1;  // row i's best becomes tied with its second best
        } else if (i0 >= 0) {  // tie: prefer the second column, maybe unassigned
          j1 = j2;
          i0 = col_to_row_[j1];
        }
        assign(i, j1);
        if (i0 >= 0) {
          row_to_col_[i0] = -1;
          if (u1 < u2) {
            todo[--k] = i0;  // strictly improved: reprocess the evicted row at once
          } else {
            free_rows_.push_back(i0);
          }
        }
      }
      for (; k < todo.size(); ++k) free_rows_.push_back(todo[k]);
      if (steps > budget) break;
    }
  }

  // ---- 3. Shortest augmenting paths ----------------------------------------------------------------

  void augment_free_rows() {
    if (free_rows_.empty()) return;
    dist_.assign(m_, kInf);
    pred_.assign(m_, 0);
    status_.assign(m_, kAssigned);
    for (int j = 0; j < m_; ++j) {
      if (col_to_row_[j] < 0) status_[j] = kFree;
    }
    scanned_.clear();
    scanned_.reserve(m_);
    for (int f : free_rows_) augment(f);
    free_rows_.clear();
  }

  // Relaxes row i, whose reduced costs are C_ik - v_k - h, into the labels of unscanned columns.
  void relax(int i, double h, Best &assigned, Best &free) {
    relax_row(row(i), v_.data(), h, i, status_.data(), dist_.data(), pred_.data(), m_, assigned, free);
  }

  int first_free_column_at(double label) const {
    for (int k = 0; k < m_; ++k) {
      if (status_[k] == kFree && dist_[k] == label) return k;
    }
    return -1;  // unreachable: `label` is the minimum over free columns
  }

  // Dijkstra from free row f until an unassigned column is reached at minimum distance (ties
  // prefer unassigned columns), then JV's lazy potential update on the scanned columns and
  // augmentation along the predecessor tree.
  void augment(int f) {
    std::fill(dist_.begin(), dist_.end(), kInf);
    Best assigned, free;
    relax(f, 0.0, assigned, free);  // labels d_k = C_fk - v_k
    double mu;
    int sink;
    for (;;) {
      if (free.key <= assigned.key) {
        mu = free.key;
        sink = first_free_column_at(mu);
        break;
      }
      mu = assigned.key;
      const int j = assigned.col;
      status_[j] = kScanned;
      scanned_.push_back(j);
      const int i = col_to_row_[j];
      relax(i, row(i)[j] - v_[j] - mu, assigned, free);
    }
    for (int k : scanned_) {  // lazy update: v_k -= mu - d_k on the scanned columns only
      v_[k] -= mu - dist_[k];
      status_[k] = kAssigned;
    }
    scanned_.clear();
    status_[sink] = kAssigned;
    for (int j = sink;;) {
      const int i = pred_[j];
      col_to_row_[j] = i;
      std::swap(j, row_to_col_[i]);
      if (i == f) break;
    }
  }

  const double *C_;
  const int n_, m_;
  std::vector<int> row_to_col_, col_to_row_;
  std::vector<double> v_;
  std::vector<int> free_rows_;
  // Dijkstra workspace.
  std::vector<double> dist_;
  std::vector<int> pred_;
  std::vector<uint8_t> status_;  // kAssigned / kFree / kScanned (in the current search)
  std::vector<int> scanned_;
};

}  // namespace

void solve_assignment(const double *C, int64_t n, int64_t m, int64_t *cols, double *u, double *v,
                      double *cost) {
  if (n > m) throw std::invalid_argument("assignment: C must have at most as many rows as columns");
  if (m > std::numeric_limits<int>::max() - 1)
    throw std::invalid_argument("assignment: too many columns");
  const std::size_t size = static_cast<std::size_t>(n) * static_cast<std::size_t>(m);
  for (std::size_t k = 0; k < size; ++k) {
    if (!std::isfinite(C[k])) throw std::invalid_argument("assignment: C must be finite");
  }
  if (n == 0) {
    std::fill(v, v + m, 0.0);
    *cost = 0.0;
    return;
  }
  LapSolver solver(C, static_cast<int>(n), static_cast<int>(m));
  solver.solve();
  *cost = solver.extract(cols, u, v);
}

}  // namespace monge

namespace {

nb::tuple assignment_binding(
    nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu> C) {
  const std::size_t n = C.shape(0), m = C.shape(1);
  if (n > m) throw nb::value_error("assignment: C must have at most as many rows as columns");
  auto cols = std::make_unique<int64_t[]>(n);
  auto u = std::make_unique<double[]>(n);
  auto v = std::make_unique<double[]>(m);
  double cost = 0.0;
  {
    nb::gil_scoped_release release;
    monge::solve_assignment(C.data(), static_cast<int64_t>(n), static_cast<int64_t>(m), cols.get(),
                            u.get(), v.get(), &cost);
  }
  return nb::make_tuple(monge::owned<int64_t, 1>(std::move(cols), {n}), monge::owned<double, 1>(std::move(u), {n}),
                        monge::owned<double, 1>(std::move(v), {m}), cost);
}

// B independent problems C (B, n, m) in one call: threads over the batch (none for one problem). A cost matrix
// whose scale is far from 1 is solved as C / 2^e (exact) and the answer scaled back (an answer beyond float64
// comes back as inf); gap = cost - sum(u) - sum(v) is computed at the solver's scale, then scaled.
std::tuple<monge::NumpyOut<int64_t, 2>, monge::NumpyOut<double, 2>, monge::NumpyOut<double, 2>,
           monge::NumpyOut<double, 1>, monge::NumpyOut<double, 1>>
assignment_batch(nb::ndarray<const double, nb::ndim<3>, nb::c_contig, nb::device::cpu> C, int n_threads) {
  const std::size_t B = C.shape(0), n = C.shape(1), m = C.shape(2);
  if (n > m) throw nb::value_error("assignment_batch: C must have at most as many rows as columns");
  auto cols = monge::zeros<int64_t>(B * n);
  auto u = monge::zeros<double>(B * n), v = monge::zeros<double>(B * m), cost = monge::zeros<double>(B);
  auto gap = monge::zeros<double>(B);
  {
    nb::gil_scoped_release release;
    const double *pC = C.data();
    monge::parallel_for(static_cast<int64_t>(B), n_threads, [&](int64_t q) {
      const double *Cq = pC + q * static_cast<int64_t>(n * m);
      bool finite = true;
      const int e = monge::cost_exponent(Cq, static_cast<int64_t>(n * m), finite);
      std::vector<double> Cs;
      if (e != 0) {
        Cs.resize(n * m);
        for (std::size_t t = 0; t < n * m; ++t) Cs[t] = std::ldexp(Cq[t], -e);
        Cq = Cs.data();
      }
      double *uq = u.get() + q * n, *vq = v.get() + q * m;
      monge::solve_assignment(Cq, static_cast<int64_t>(n), static_cast<int64_t>(m), cols.get() + q * n, uq, vq,
                              cost.get() + q);
      if (e != 0 && n == m) monge::centre_duals(uq, int64_t(n), vq, int64_t(m));  // room for the scale
      double g = cost[q];  // Neumaier-compensated cost - sum(u) - sum(v)
      double comp = 0.0;
      auto add = [&](double x) {
        const double t = g + x;
        comp += std::fabs(g) >= std::fabs(x) ? (g - t) + x : (x - t) + g;
        g = t;
      };
      for (std::size_t i = 0; i < n; ++i) add(-uq[i]);
      for (std::size_t j = 0; j < m; ++j) add(-vq[j]);
      gap[q] = std::ldexp(g + comp, e);
      if (e != 0) {
        cost[q] = std::ldexp(cost[q], e);
        for (std::size_t i = 0; i < n; ++i) uq[i] = std::ldexp(uq[i], e);
        for (std::size_t j = 0; j < m; ++j) vq[j] = std::ldexp(vq[j], e);
      }
    });
  }
  return {monge::owned<int64_t, 2>(std::move(cols), {B, n}), monge::owned<double, 2>(std::move(u), {B, n}),
          monge::owned<double, 2>(std::move(v), {B, m}), monge::owned<double, 1>(std::move(cost), {B}),
          monge::owned<double, 1>(std::move(gap), {B})};
}

}  // namespace

void register_assignment(nb::module_ &m) {
  m.def("assignment_batch", &assignment_batch, nb::arg("C"), nb::arg("n_threads") = 0,
        "assignment_batch(C, n_threads=0) -> (cols, u, v, cost, gap)\n\n"
        "assignment() over a batch C (B, n, m), float64, C-contiguous, n <= m, finite: cols (B, n), u (B, n),\n"
        "v (B, m), cost (B,), gap = cost - sum(u) - sum(v) (B,). Costs of a scale far from 1 are solved as\n"
        "C / 2^e (exact) and the answer scaled back (inf where it exceeds float64). Threads over the batch (n_threads <= 0: one per hardware thread; one problem\n"
        "runs on the calling thread). Releases the GIL.");
  m.def("assignment", &assignment_binding, nb::arg("C"),
        "assignment(C) -> (cols, u, v, cost)\n\n"
        "Exact dense linear assignment (Jonker-Volgenant). C: float64 (n, m), C-contiguous, n <= m,\n"
        "finite. Returns cols (int64, n): row i -> column cols[i], all distinct, minimising\n"
        "sum_i C[i, cols[i]]; dual potentials u (n), v (m) with u_i + v_j <= C_ij, equality on\n"
        "matched pairs; for n < m also v <= 0 with v_j = 0 on unmatched columns, so that\n"
        "sum(u) + sum(v) == cost; and cost (float). Releases the GIL.");
}

// Exact discrete optimal transport by the primal network simplex on the complete bipartite graph.
//
//     min_{P >= 0, P 1 = a, P^T 1 = b} <P, C>   =   max_{f_i + g_j <= C_ij} <a, f> + <b, g>
//
// Graph. Supply node i (0 <= i < n) has supply a_i, demand node n + j has supply -b_j, and an extra root node
// R = n + m closes the spanning tree. Real arcs i -> n+j are never stored: arc (i, j) is priced straight from
// row i of the cost matrix. Nodes of zero mass are dropped before the solve (see `Compacted`).
//
// Basis. A spanning tree rooted at R, stored per node (the arc joining a node to its parent is the node's
// "pred" arc; nothing is stored per arc): parent, preorder thread / reverse thread, subtree size (succ_num)
// and last node of the subtree in thread order (last_succ), the flow on the pred arc, and the node potential
// pi. Reduced cost of arc u -> v:  rc = c + pi[u] - pi[v]  (zero on tree arcs), so f_i = -pi[i],
// g_j = pi[n+j]. The direction of a pred arc is implicit: real arcs always go supply -> demand, and the
// artificial arcs R -> v (which join tree components to the root) always point down with zero flow.
//
// Initial basis. A greedy "row-minimum" transportation basis (each row ships to its cheapest open
// columns; every allocation closes exactly one row or column, so the n + m - 1 allocations form a spanning
// tree). Its strictly positive arcs form a forest whose components are balanced; each component hangs from
// R by an artificial arc of zero flow. All zero-flow arcs then point away from the root, i.e. the tree is
// *strongly feasible*, and the leaving-arc rule below keeps it so, which rules out cycling on the many
// degenerate pivots of OT problems. Artificial arcs are never priced, so once they leave they never return.
//
// Warm start (network_simplex_warm). A spanning tree given by its parents, e.g. the final tree of a solve with the
// same weights and another cost (a conditional-gradient loop: one LP per step, nearby costs). Its flows are the
// tree solve of the supplies, so it is primal feasible whatever the cost; potentials are recomputed for the new
// cost and pivoting goes on from there. It is checked (a tree, flows >= 0, balanced components, zero flows on arcs
// towards the root) and ignored when it fails: the greedy start is then used. Warm solves price densely.
//
// Pricing. Row-wise block search (the most negative reduced cost within blocks of ~sqrt(#arcs) arcs,
// resuming where the last search stopped), first over "shortlists" (the 48 cheapest columns of each row,
// Gottschlich & Schuhmacher's shortlist idea: compact, cache-resident, and they hold most improving arcs of
// geometric costs), then, when they hold none, over the dense matrix with a vectorised min over row segments
// (C is read in place; the dense scan is memory-bound). Optimality is only declared by a full dense pass.
// Problems of fewer than 768 columns price the dense matrix only (faster there, see build_shortlists).
//
// Pivots. The leaving arc is the last blocking arc of the cycle met from the join node (strongly-feasible rule);
// the tree update (flow_tree.hpp, shared with min_cost_flow_solver.hpp) follows the thread/reverse-thread scheme of
// Barr-Glover-Klingman / Kovacs ("Minimum-cost flow algorithms: an experimental evaluation", 2015); potentials are
// shifted on the smaller side of the cut.
// At the end flows and potentials are recomputed from the final tree (exact tree solves), which removes
// accumulated rounding, and zero-mass nodes get their duals by c-transforms.
//
// Files: this header holds the solver's pricing and pivots (the hot loop, inlined); network_simplex_init.cpp its
// initial bases (shortlists, the greedy basis, the warm start from a given tree); network_simplex.cpp the
// compaction of zero-mass nodes and the Python bindings.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "flow_tree.hpp"

namespace monge::ns {

using i64 = std::int64_t;
inline constexpr double kInf = std::numeric_limits<double>::infinity();

// ------------------------------------------------------------------------------------------------------
// Vectorisable kernels on one row of C.

// min_{0 <= j < len} (c[j] - p[j]); eight independent accumulators so that the compiler emits packed mins.
inline double seg_min(const double *__restrict c, const double *__restrict p, int len) {
  double acc[8] = {kInf, kInf, kInf, kInf, kInf, kInf, kInf, kInf};
  int j = 0;
  for (; j + 8 <= len; j += 8)
    for (int l = 0; l < 8; ++l) {
      const double v = c[j + l] - p[j + l];
      acc[l] = v < acc[l] ? v : acc[l];
    }
  for (; j < len; ++j) {
    const double v = c[j] - p[j];
    acc[0] = v < acc[0] ? v : acc[0];
  }
  double r = acc[0];
  for (int l = 1; l < 8; ++l) r = acc[l] < r ? acc[l] : r;
  return r;
}

// First j with c[j] - p[j] == target (target came from seg_min on the same data, so it exists).
inline int seg_find(const double *c, const double *p, int len, double target) {
  for (int j = 0; j < len; ++j)
    if (c[j] - p[j] == target) return j;
  return len - 1;  // unreachable
}

// ------------------------------------------------------------------------------------------------------
// The solver for one problem with strictly positive weights a (n), b (m) and costs C (n x m, row-major,
// leading dimension ldc). sum(a) and sum(b) must agree up to rounding.

class TransportSimplex : private monge::flow::FlowTree {
 public:
  TransportSimplex(const double *C, i64 ldc, int n, int m, const double *a, const double *b)
      : C_(C), ldc_(ldc), n_(n), m_(m), R_(n + m), N_(n + m + 1) {
    supply_.resize(N_ - 1);
    for (int i = 0; i < n; ++i) supply_[i] = a[i];
    for (int j = 0; j < m; ++j) supply_[n + j] = -b[j];
    double cmax = 0.0;
    for (int i = 0; i < n; ++i) {
      const double *row = C_ + i * ldc_;
      for (int j = 0; j < m; ++j) cmax = std::max(cmax, std::fabs(row[j]));
    }
    // Entering arcs need rc < -tol: small enough for a ~1e-13 relative optimality certificate, large enough
    // that rounding in the potentials never makes a tree arc (rc = 0) look improving.
    tol_ = 1e-13 * cmax;
    const i64 arcs = i64(n) * m;
    block_ = int(std::max<i64>(64, std::min<i64>(arcs, i64(std::sqrt(double(arcs))))));
  }

  // Runs the simplex; returns 0 (optimal) or 1 (max_iter pivots done). `warm`: a basis to start from (the parent
  // of every node but R, compacted indices, R for a component root), e.g. the final tree of a solve of the same
  // marginals with another cost; used when it is a feasible, strongly feasible tree, else the greedy basis is.
  int solve(i64 max_iter, const int *warm = nullptr) {
    warm_ = warm != nullptr && init_tree_from(warm);
    // Warm solves price the dense matrix only: shortlists (a pass over C to build) did not pay there (GW
    // conditional-gradient steps, n = m = 2000: 0.77 s of simplex without them, 0.78-0.83 s with them, built
    // at the start or after 1000 or 4000 pivots).
    if (!warm_) {
      build_shortlists();
      init_tree(greedy_basis());
    }
    const i64 refresh = std::max<i64>(1000, N_);  // re-derive potentials from the tree every `refresh` pivots
    while (true) {
      if (max_iter > 0 && iter_ >= max_iter) return 1;
      int i, j;
      if (!find_entering(i, j)) return 0;
      const double rc = cost(i, j) + pi_[i] - pi_[n_ + j];
      pivot(i, n_ + j);
      gain_[dense_mode_ ? 1 : 0] += -rc * last_delta_;
      if (++iter_ % refresh == 0) compute_potentials();
    }
  }

  i64 iterations() const { return iter_; }
  bool warm_started() const { return warm_; }
  // The basis (parent of every node but R), to warm-start the next solve.
  void basis(int *par) const { std::copy(parent_.begin(), parent_.begin() + R_, par); }

  // Pricing strategy: search the shortlists until they hold no improving arc, then the dense matrix; after
  // kBackToShortlist dense pivots, try the shortlists again. Optimality is only declared by a dense pass.
  bool find_entering(int &in_i, int &in_j) {
    if (k_ > 0) {
      if (dense_mode_ && ++dense_count_ >= kBackToShortlist) {
        end_phase();
        dense_mode_ = false;
      }
      if (!dense_mode_ && k_ > 0) {
        if (find_entering_short(in_i, in_j)) return true;
        end_phase();
        dense_mode_ = true;
        dense_count_ = 0;
      }
    }
    return find_entering_dense(in_i, in_j);
  }

  // Shortlists pay when the optimal partners of a row are among its cheapest columns (nearby clouds: 2.4x
  // fewer seconds at n = 4000); on "spreading" problems (a narrow cloud to a wide one) their pivots are many and
  // small: 10x more pivots and seconds than dense pricing. So each mode's objective decrease per unit of work
  // (arcs priced, plus tree nodes visited by pivots) is tracked, decayed over phases, and the shortlists are
  // dropped for good once they fall behind dense pricing. Work is counted, not timed: runs are reproducible.
  void end_phase() {
    const int mode = dense_mode_ ? 1 : 0;  // the phase that ends
    rate_gain_[mode] = 0.5 * rate_gain_[mode] + gain_[mode];
    rate_work_[mode] = 0.5 * rate_work_[mode] + work_[mode];
    gain_[mode] = work_[mode] = 0.0;
    if (++phases_ >= kMinPhases && rate_work_[0] > 0.0 && rate_work_[1] > 0.0 &&
        rate_gain_[0] * rate_work_[1] < rate_gain_[1] * rate_work_[0])
      k_ = 0;
  }

  // Builds the shortlists (k cheapest columns per row) with a bounded max-heap per row.
  void build_shortlists();

  // Block search over the shortlists (blocks of whole rows), resuming where the last search stopped.
  bool find_entering_short(int &in_i, int &in_j) {
    const double *pd = pi_.data() + n_;
    double best = -tol_;
    bool found = false;
    int i = sl_next_, in_block = 0, rows = 0;
    for (int r = 0; r < n_; ++r) {
      ++rows;
      const double *sc = sl_cost_.data() + size_t(i) * k_;
      const int *sj = sl_col_.data() + size_t(i) * k_;
      const double pii = pi_[i];
      for (int t = 0; t < k_; ++t) {
        const double rc = sc[t] + pii - pd[sj[t]];
        if (rc < best) best = rc, in_i = i, in_j = sj[t], found = true;
      }
      if (++i == n_) i = 0;
      if (++in_block == sl_block_rows_) {
        if (found) break;
        in_block = 0;
      }
    }
    sl_next_ = i;
    work_[0] += double(rows) * k_;
    return found;
  }

  // Final tree solves: potentials from the tree arcs, flows from the supplies (children before parents).
  // Then f_i = -pi[i], g_j = pi[n+j]; the plan is appended as (row, col, flow) with flow > 0.
  void extract(double *f, double *g, std::vector<i64> &rows, std::vector<i64> &cols,
               std::vector<double> &vals) {
    compute_potentials();
    for (int i = 0; i < n_; ++i) f[i] = -pi_[i];
    for (int j = 0; j < m_; ++j) g[j] = pi_[n_ + j];
    std::vector<double> excess(supply_);
    excess.push_back(0.0);
    std::vector<double> flow(N_, 0.0);
    for (int u = rev_thread_[R_]; u != R_; u = rev_thread_[u]) {
      flow[u] = is_up(u) ? excess[u] : -excess[u];
      excess[parent_[u]] += excess[u];
    }
    for (int u = 0; u < R_; ++u) {
      const int p = parent_[u];
      if (p == R_ || !(flow[u] > 0.0)) continue;
      rows.push_back(u < n_ ? u : p);
      cols.push_back((u < n_ ? p : u) - n_);
      vals.push_back(flow[u]);
    }
  }

 private:
  struct Alloc {
    int i, j;
    double x;
  };

  const double *row(int i) const { return C_ + i * ldc_; }
  double cost(int i, int j) const { return C_[i * ldc_ + j]; }
  // Is the pred arc of u directed from u to its parent? (Real arcs go supply -> demand; artificial arcs
  // go R -> v.)
  bool is_up(int u) const { return u < n_ && parent_[u] != R_; }

  // ---- initial basis ------------------------------------------------------------------------------------
  // Row-minimum rule: row i ships to its cheapest open column until the row is closed. Every allocation
  // closes exactly one line (a row, or a column), except the very last one which closes both, so there are
  // n + m - 1 allocations forming a spanning tree. Only the strictly positive ones are returned.
  std::vector<Alloc> greedy_basis() const;

  // Builds the tree: the forest of `arcs` (all with positive flow), each component hung from R by a
  // zero-flow artificial arc; thread = DFS preorder.
  void init_tree(const std::vector<Alloc> &arcs);

  // Thread, reverse thread, subtree sizes, last successors and potentials from a preorder of the tree in which
  // every subtree is contiguous (what a stack DFS gives: whatever is pushed after a node is popped, with its own
  // subtree, before anything pushed earlier).
  void finish_tree(const std::vector<int> &order) {
    thread_from_preorder(order);
    compute_potentials();
  }

  // The tree of parents `par` (see solve). False, leaving the state to be rebuilt by init_tree, unless it is a
  // spanning tree rooted at R whose arcs join a supply to a demand node, its flows (the unique ones meeting the
  // supplies) are >= 0 and 0 on the artificial arcs, and its zero-flow real arcs point towards R (strongly
  // feasible in the sense of the leaving-arc rule: positive flow can be sent from every node up to R, so the rule
  // cannot cycle; the final tree of every solve is so). Flows within 1e-13 of the mass of 0 are rounding (below).
  bool init_tree_from(const int *par);

  // pi[R] = 0 and rc = 0 on every tree arc (artificial arcs cost 0), in thread order (parents first).
  void compute_potentials() {
    pi_[R_] = 0.0;
    for (int u = thread_[R_]; u != R_; u = thread_[u]) {
      const int p = parent_[u];
      if (p == R_)
        pi_[u] = 0.0;
      else if (u < n_)
        pi_[u] = pi_[p] - cost(u, p - n_);  // u -> p:  c + pi[u] - pi[p] = 0
      else
        pi_[u] = pi_[p] + cost(p, u - n_);  // p -> u:  c + pi[p] - pi[u] = 0
    }
  }

  // ---- pricing ---------------------------------------------------------------------------------------
  // Block search: scans arcs row by row from where the previous search stopped, keeps the most negative
  // reduced cost, and stops at the end of the first block that contains an improving arc. Within a row,
  // rc_ij = (C_ij - pi[n+j]) + pi[i], so the scan is a vectorised min of C_ij - pi[n+j].
  bool find_entering_dense(int &in_i, int &in_j) {
    const double *pd = pi_.data() + n_;
    const i64 total = i64(n_) * m_;
    double best = -tol_;
    bool found = false;
    i64 scanned = 0;
    int in_block = 0;
    int i = next_i_, j = next_j_;
    while (scanned < total) {
      const int len = std::min(m_ - j, block_ - in_block);
      const double *c = row(i) + j;
      const double mn = seg_min(c, pd + j, len);
      if (mn + pi_[i] < best) {
        best = mn + pi_[i];
        in_i = i;
        in_j = j + seg_find(c, pd + j, len, mn);
        found = true;
      }
      scanned += len;
      in_block += len;
      j += len;
      if (j == m_) {
        j = 0;
        if (++i == n_) i = 0;
      }
      if (in_block == block_) {
        if (found) break;
        in_block = 0;
      }
    }
    next_i_ = i;
    next_j_ = j;
    work_[1] += double(scanned);
    return found;
  }

  // ---- one pivot ---------------------------------------------------------------------------------------
  // Entering arc u -> v (u supply, v demand node).
  void pivot(int u, int v) {
    // Join node: the lowest common ancestor of u and v.
    i64 steps = 0;
    const int join = join_node(u, v, steps);
    // Leaving arc: flow is pushed u -> v, then v up to join, then join down to u. Blocking arcs are those
    // traversed against their direction. Ties go to the last blocking arc met from the join node along
    // the cycle orientation, which keeps the tree strongly feasible.
    double delta = kInf;
    int u_out = -1;
    bool out_on_u_side = false;
    for (int w = u; w != join; w = parent_[w])  // traversed parent -> w
      if (is_up(w) && flow_[w] < delta) delta = flow_[w], u_out = w, out_on_u_side = true;
    for (int w = v; w != join; w = parent_[w])  // traversed w -> parent
      if (!is_up(w) && flow_[w] <= delta) delta = flow_[w], u_out = w, out_on_u_side = false;
    last_delta_ = delta;
    // Push delta around the cycle.
    if (delta > 0.0) {
      for (int w = u; w != join; w = parent_[w]) flow_[w] += is_up(w) ? -delta : delta;
      for (int w = v; w != join; w = parent_[w]) flow_[w] += is_up(w) ? delta : -delta;
    }
    // The endpoint of the entering arc on the side of the leaving arc gets re-hung below the other one.
    const int u_in = out_on_u_side ? u : v;
    const int v_in = out_on_u_side ? v : u;
    update_tree(u_in, v_in, u_out, join, [this](int w, int p) { flow_[w] = flow_[p]; });
    flow_[u_in] = delta;  // the entering arc carries delta
    update_potentials(u_in, v_in);
    work_[dense_mode_ ? 1 : 0] += kTreeStep * double(3 * steps + succ_[u_in]) + 64.0;
  }

  // Makes rc(entering arc) = 0 by shifting the potentials of u_in's subtree, or (equivalently, up to a
  // constant) those of the rest of the tree, whichever is smaller.
  void update_potentials(int u_in, int v_in) {
    const double c = u_in < n_ ? cost(u_in, v_in - n_) : cost(v_in, u_in - n_);
    const double sigma = u_in < n_ ? pi_[v_in] - c - pi_[u_in] : pi_[v_in] + c - pi_[u_in];
    shift_potentials(u_in, sigma, N_, pi_.data());
  }

  // ---- data ----------------------------------------------------------------------------------------------
  const double *C_;
  i64 ldc_;
  int n_, m_, R_, N_;
  std::vector<double> supply_;  // a_i for supply nodes, -b_j for demand nodes
  double tol_ = 0.0;
  int block_ = 64;
  int next_i_ = 0, next_j_ = 0;
  i64 iter_ = 0;
  bool warm_ = false;
  // Shortlists: the k_ cheapest columns of every row (column index and cost), priced before the dense scan.
  static constexpr int kShortlist = 48;        // measured: 32..64 similar, 48 best on 4000^2 geometric costs
  static constexpr int kBackToShortlist = 50;  // dense pivots before the shortlists are tried again
  int k_ = 0, sl_block_rows_ = 1, sl_next_ = 0, dense_count_ = 0;
  // Shortlist-vs-dense accounting (index 0: shortlist phases, 1: dense phases); see end_phase().
  double last_delta_ = 0.0, gain_[2] = {0.0, 0.0}, work_[2] = {0.0, 0.0};
  double rate_gain_[2] = {0.0, 0.0}, rate_work_[2] = {0.0, 0.0};
  int phases_ = 0;
  static constexpr int kMinPhases = 6;       // phases of both kinds seen before shortlists may be dropped
  static constexpr double kTreeStep = 8.0;   // a tree node visited costs ~8 arcs priced (random access)
  bool dense_mode_ = true;
  std::vector<int> sl_col_;
  std::vector<double> sl_cost_;
  std::vector<double> flow_, pi_;
};

}  // namespace monge::ns

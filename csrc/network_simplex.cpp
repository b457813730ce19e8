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
// Pivots. The leaving arc is the last blocking arc of the cycle met from the join node (strongly-feasible rule); the tree update
// follows the thread/reverse-thread scheme of Barr-Glover-Klingman / Kovacs ("Minimum-cost flow
// algorithms: an experimental evaluation", 2015); potentials are shifted on the smaller side of the cut.
// At the end flows and potentials are recomputed from the final tree (exact tree solves), which removes
// accumulated rounding, and zero-mass nodes get their duals by c-transforms.
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

namespace nb = nanobind;

namespace {

using i64 = std::int64_t;
constexpr double kInf = std::numeric_limits<double>::infinity();

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

class TransportSimplex {
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
  void build_shortlists() {
    const int k = kShortlist;
    // Below ~16 k columns dense pricing is faster (uniform clouds, CPU time of a whole solve, shortlists vs
    // dense: n = 128: 0.70 vs 0.25 ms, 256: 2.4 vs 1.1 ms, 512: 7.4 vs 5.2 ms, 768: equal, 1000: 18 vs 23 ms).
    if (16 * k > m_) return;
    k_ = k;
    sl_col_.resize(size_t(n_) * k);
    sl_cost_.resize(size_t(n_) * k);
    // Per row: a threshold from a strided sample of the row (its rank chosen so that ~1.5k costs fall below
    // it), one pass collecting the columns at or below it, then the k cheapest of those (nth_element). Rows
    // where fewer than k columns pass are padded by repeating their cheapest column (harmless duplicates).
    const int S = std::min(m_, 512), stride = m_ / S;
    const int rank = std::min(S - 1, int(std::ceil(1.5 * k * double(S) / m_)));
    std::vector<double> sample(S);
    std::vector<std::pair<double, int>> buf;
    auto by_cost = [](const std::pair<double, int> &x, const std::pair<double, int> &y) {
      return x.first < y.first || (x.first == y.first && x.second < y.second);
    };
    for (int i = 0; i < n_; ++i) {
      const double *c = row(i);
      for (int t = 0; t < S; ++t) sample[t] = c[size_t(t) * stride];
      std::nth_element(sample.begin(), sample.begin() + rank, sample.end());
      const double thr = sample[rank];
      buf.clear();
      for (int j = 0; j < m_; ++j)
        if (c[j] <= thr) buf.push_back({c[j], j});
      const int got = std::min<int>(k, int(buf.size()));  // >= 1: the sampled threshold itself passes
      if (int(buf.size()) > k) std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(), by_cost);
      buf.resize(got);
      std::sort(buf.begin(), buf.end(), [](auto &x, auto &y) { return x.second < y.second; });
      for (int t = 0; t < k; ++t) {
        const auto &e = buf[t < got ? t : 0];
        sl_col_[size_t(i) * k + t] = e.second;
        sl_cost_[size_t(i) * k + t] = e.first;
      }
    }
    sl_block_rows_ = std::max(1, int(std::sqrt(double(n_) * k) / k));
    dense_mode_ = false;
  }

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
  std::vector<Alloc> greedy_basis() const {
    std::vector<double> left_b(m_);
    for (int j = 0; j < m_; ++j) left_b[j] = -supply_[n_ + j];
    std::vector<double> closed(m_, 0.0);  // +inf once the column is closed
    int open_cols = m_;
    std::vector<Alloc> out;
    out.reserve(n_ + m_);
    for (int i = 0; i < n_ && open_cols > 0; ++i) {
      double left_a = supply_[i];
      const bool last_row = i == n_ - 1;
      if (last_row) {  // the last row takes every open column, in any order: no search needed
        for (int j = 0; j < m_; ++j) {
          if (closed[j] != 0.0) continue;
          const double x = std::min(left_a, left_b[j]);
          if (x > 0.0) out.push_back({i, j, x});
          left_a -= x;
        }
        break;
      }
      while (true) {
        const double *c = row(i);
        const double best = seg_min(c, closed.data(), m_);
        const int j = seg_find(c, closed.data(), m_, best);
        const double x = std::min(left_a, left_b[j]);
        if (x > 0.0) out.push_back({i, j, x});
        if (!last_row && (left_a <= left_b[j] || open_cols == 1)) {  // close the row
          left_b[j] -= x;
          break;
        }
        left_a -= x;  // close the column
        closed[j] = -kInf;  // c - (-inf) = +inf: never the minimum again
        if (--open_cols == 0) break;
      }
    }
    return out;
  }

  // Builds the tree: the forest of `arcs` (all with positive flow), each component hung from R by a
  // zero-flow artificial arc; thread = DFS preorder.
  void init_tree(const std::vector<Alloc> &arcs) {
    parent_.assign(N_, -1);
    thread_.assign(N_, R_);
    rev_thread_.assign(N_, R_);
    succ_num_.assign(N_, 1);
    last_succ_.assign(N_, R_);
    flow_.assign(N_, 0.0);
    pi_.assign(N_, 0.0);
    // Undirected adjacency of the forest (CSR).
    std::vector<int> deg(N_ + 1, 0), adj(2 * arcs.size());
    std::vector<double> adj_x(2 * arcs.size());
    for (const auto &e : arcs) ++deg[e.i + 1], ++deg[n_ + e.j + 1];
    for (int u = 0; u < N_; ++u) deg[u + 1] += deg[u];
    std::vector<int> pos(deg.begin(), deg.end() - 1);
    for (const auto &e : arcs) {
      adj[pos[e.i]] = n_ + e.j, adj_x[pos[e.i]++] = e.x;
      adj[pos[n_ + e.j]] = e.i, adj_x[pos[n_ + e.j]++] = e.x;
    }
    // Iterative DFS from R; the roots of the components are visited in node order.
    std::vector<int> order;
    order.reserve(N_);
    order.push_back(R_);
    std::vector<char> seen(N_, 0);
    seen[R_] = 1;
    std::vector<int> stack;
    for (int s = 0; s < R_; ++s) {
      if (seen[s]) continue;
      seen[s] = 1;
      parent_[s] = R_;
      flow_[s] = 0.0;
      stack.push_back(s);
      while (!stack.empty()) {
        const int u = stack.back();
        stack.pop_back();
        order.push_back(u);
        for (int k = deg[u]; k < deg[u + 1]; ++k) {
          const int v = adj[k];
          if (seen[v]) continue;
          seen[v] = 1;
          parent_[v] = u;
          flow_[v] = adj_x[k];
          stack.push_back(v);
        }
      }
    }
    finish_tree(order);
  }

  // Thread, reverse thread, subtree sizes, last successors and potentials from a preorder of the tree in which
  // every subtree is contiguous (what a stack DFS gives: whatever is pushed after a node is popped, with its own
  // subtree, before anything pushed earlier).
  void finish_tree(const std::vector<int> &order) {
    for (int k = 0; k < N_; ++k) {
      const int u = order[k], v = order[(k + 1) % N_];
      thread_[u] = v;
      rev_thread_[v] = u;
    }
    for (int k = N_ - 1; k > 0; --k) succ_num_[parent_[order[k]]] += succ_num_[order[k]];
    std::vector<int> at(N_);
    for (int k = 0; k < N_; ++k) at[order[k]] = k;
    for (int u = 0; u < N_; ++u) last_succ_[u] = order[at[u] + succ_num_[u] - 1];
    compute_potentials();
  }

  // The tree of parents `par` (see solve). False, leaving the state to be rebuilt by init_tree, unless it is a
  // spanning tree rooted at R whose arcs join a supply to a demand node, its flows (the unique ones meeting the
  // supplies) are >= 0 and 0 on the artificial arcs, and its zero-flow real arcs point towards R (strongly
  // feasible in the sense of the leaving-arc rule: positive flow can be sent from every node up to R, so the rule
  // cannot cycle; the final tree of every solve is so). Flows within 1e-13 of the mass of 0 are rounding (below).
  bool init_tree_from(const int *par) {
    parent_.assign(N_, -1);
    std::vector<int> head(N_ + 1, 0), kids(N_ - 1);
    for (int u = 0; u < R_; ++u) {
      const int p = par[u];
      if (p < 0 || p > R_ || p == u || (p != R_ && (u < n_) == (p < n_))) return false;
      parent_[u] = p;
      ++head[p + 1];
    }
    for (int u = 0; u < N_; ++u) head[u + 1] += head[u];
    std::vector<int> pos(head.begin(), head.end() - 1);
    for (int u = 0; u < R_; ++u) kids[pos[parent_[u]]++] = u;
    std::vector<int> order, stack{R_};
    order.reserve(N_);
    while (!stack.empty()) {
      const int u = stack.back();
      stack.pop_back();
      order.push_back(u);
      for (int k = head[u]; k < head[u + 1]; ++k) stack.push_back(kids[k]);
    }
    if (int(order.size()) != N_) return false;  // a cycle: some nodes are not below R
    double mass = 0.0;
    for (int i = 0; i < n_; ++i) mass += supply_[i];
    const double tol = 1e-13 * mass;
    std::vector<double> excess(supply_);
    excess.push_back(0.0);
    flow_.assign(N_, 0.0);
    for (int k = N_ - 1; k > 0; --k) {
      const int u = order[k], p = parent_[u];
      if (p == R_) {
        if (!(std::fabs(excess[u]) <= tol)) return false;  // an unbalanced component
        continue;
      }
      const double x = is_up(u) ? excess[u] : -excess[u];
      if (!(x >= -tol)) return false;  // infeasible (or NaN)
      // A flow that is 0 up to rounding: 0 on an arc towards R; on an arc away from R (where the previous solve had
      // a rounding-level positive flow) the least positive double, which keeps the tree strongly feasible as the
      // solver sees it (a perturbation far below the certificate; the final flows are recomputed from the tree).
      flow_[u] = x > tol ? x : is_up(u) ? std::max(x, 0.0) : std::max(x, std::numeric_limits<double>::min());
      excess[p] += excess[u];
    }
    thread_.assign(N_, R_);
    rev_thread_.assign(N_, R_);
    succ_num_.assign(N_, 1);
    last_succ_.assign(N_, R_);
    pi_.assign(N_, 0.0);
    finish_tree(order);
    return true;
  }

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
    // Join node: the lowest common ancestor of u and v (climb from the smaller subtree).
    int a = u, b = v;
    i64 steps = 0;
    while (a != b) {
      ++steps;
      if (succ_num_[a] < succ_num_[b])
        a = parent_[a];
      else
        b = parent_[b];
    }
    const int join = a;
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
    update_tree(u_in, v_in, u_out, join, delta);
    update_potentials(u_in, v_in);
    work_[dense_mode_ ? 1 : 0] += kTreeStep * double(3 * steps + succ_num_[u_in]) + 64.0;
  }

  void link(int x, int y) {  // y follows x in the thread
    thread_[x] = y;
    rev_thread_[y] = x;
  }

  // Replaces the pred arc of u_out by the entering arc (u_in, v_in): the path u_in .. u_out (the "stem")
  // is reversed, and the subtree of u_out is re-hung below v_in. Updates parent, thread, rev_thread,
  // succ_num, last_succ and the per-node flows.
  void update_tree(int u_in, int v_in, int u_out, int join, double delta) {
    const int v_out = parent_[u_out];
    const int old_rev = rev_thread_[u_out];
    const int old_num = succ_num_[u_out];
    const int old_last = last_succ_[u_out];

    if (u_in == u_out) {
      // Only u_in changes parent: move its thread block to right after v_in.
      parent_[u_in] = v_in;
      flow_[u_in] = delta;
      if (thread_[v_in] != u_out) {
        const int after_block = thread_[old_last];
        link(old_rev, after_block);
        const int after_v = thread_[v_in];
        link(v_in, u_out);
        link(old_last, after_v);
      }
    } else {
      reverse_stem(u_in, v_in, u_out, old_rev, old_last);
      // Walk the stem down from u_out (parents now point down the stem): each node takes the pred arc
      // (and flow) of its old child on the stem, and new subtree sizes are accumulated.
      int acc = 0;
      const int ls = last_succ_[u_out];
      for (int w = u_out, p = parent_[w]; w != u_in; w = p, p = parent_[w]) {
        flow_[w] = flow_[p];
        acc += succ_num_[w] - succ_num_[p];
        succ_num_[w] = acc;
        last_succ_[p] = ls;
      }
      flow_[u_in] = delta;
      succ_num_[u_in] = old_num;
    }

    // last_succ of the ancestors of v_in and of v_out.
    const int up_limit = last_succ_[join] == v_in ? join : -1;
    const int new_last = last_succ_[u_out];
    for (int w = v_in; w != -1 && last_succ_[w] == v_in; w = parent_[w]) last_succ_[w] = new_last;
    if (join != old_rev && v_in != old_rev) {
      for (int w = v_out; w != up_limit && last_succ_[w] == old_last; w = parent_[w]) last_succ_[w] = old_rev;
    } else if (new_last != old_last) {
      for (int w = v_out; w != up_limit && last_succ_[w] == old_last; w = parent_[w]) last_succ_[w] = new_last;
    }
    // Subtree sizes between the cut and the join node.
    for (int w = v_in; w != join; w = parent_[w]) succ_num_[w] += old_num;
    for (int w = v_out; w != join; w = parent_[w]) succ_num_[w] -= old_num;
  }

  // Thread and parent update for the stem reversal (u_in != u_out). Each stem node, with its subtree
  // minus the next stem node's, is cut out of the thread and appended after the previous stem node's block.
  void reverse_stem(int u_in, int v_in, int u_out, int old_rev, int old_last) {
    const int thread_continue = old_rev == v_in ? thread_[old_last] : thread_[v_in];
    int stem = u_in, par_stem = v_in;
    int last = last_succ_[u_in];
    int after = thread_[last];
    dirty_.clear();
    thread_[v_in] = u_in;
    dirty_.push_back(v_in);
    while (stem != u_out) {
      const int next_stem = parent_[stem];
      thread_[last] = next_stem;
      dirty_.push_back(last);
      const int before = rev_thread_[stem];
      link(before, after);
      parent_[stem] = par_stem;
      par_stem = stem;
      stem = next_stem;
      last = last_succ_[stem] == last_succ_[par_stem] ? rev_thread_[par_stem] : last_succ_[stem];
      after = thread_[last];
    }
    parent_[u_out] = par_stem;
    link(last, thread_continue);
    last_succ_[u_out] = last;
    if (old_rev != v_in) link(old_rev, after);
    for (int w : dirty_) rev_thread_[thread_[w]] = w;
  }

  // Makes rc(entering arc) = 0 by shifting the potentials of u_in's subtree, or (equivalently, up to a
  // constant) those of the rest of the tree, whichever is smaller.
  void update_potentials(int u_in, int v_in) {
    const double c = u_in < n_ ? cost(u_in, v_in - n_) : cost(v_in, u_in - n_);
    const double sigma = u_in < n_ ? pi_[v_in] - c - pi_[u_in] : pi_[v_in] + c - pi_[u_in];
    const int end = thread_[last_succ_[u_in]];
    if (2 * succ_num_[u_in] <= N_) {
      for (int w = u_in; w != end; w = thread_[w]) pi_[w] += sigma;
    } else {
      for (int w = end; w != u_in; w = thread_[w]) pi_[w] -= sigma;
    }
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
  std::vector<int> parent_, thread_, rev_thread_, succ_num_, last_succ_, dirty_;
  std::vector<double> flow_, pi_;
};

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

template <typename T>
nb::ndarray<nb::numpy, T, nb::ndim<1>> to_numpy(std::vector<T> &&v) {
  auto *heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void *p) noexcept { delete static_cast<std::vector<T> *>(p); });
  return nb::ndarray<nb::numpy, T, nb::ndim<1>>(heap->data(), {heap->size()}, owner);
}

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

// Exact uncapacitated min-cost flow by the primal network simplex on an explicit (sparse) arc list.
//
//     min_{x >= 0} sum_a c_a x_a   s.t.   sum_{a out of v} x_a - sum_{a into v} x_a = s_v   (sum_v s_v = 0)
//   = max_{u} sum_v s_v u_v        s.t.   u_src(a) - u_dst(a) <= c_a
//
// This serves W1 on graphs (the transshipment / Beckmann problem: s = a - b, an undirected edge is two arcs)
// and transport problems on a sparse arc set (supply nodes -> demand nodes; only listed arcs exist).
//
// Graph. Nodes 0..n-1, an extra root R = n, and one artificial arc per node joining it to R (index m + v).
// Node potentials pi with reduced costs rc_a = c_a + pi_src - pi_dst (zero on tree arcs, pi_R = 0), so the
// Kantorovich potential is u = -pi. Artificial arcs are never priced: once they leave the tree they are gone.
//
// Basis. A spanning tree rooted at R, stored per node in flat arrays: the arc to the parent (pred) and its
// direction (up: node -> parent) here, and the tree itself (parent, thread, reverse thread, subtree size, last
// successor) with its pivot update in flow_tree.hpp, the Barr-Glover-Klingman layout shared with the dense
// transport simplex (network_simplex_solver.hpp). A pivot cuts the leaving arc, reverses the stem between it and
// the entering arc, re-threads the moved subtree, and shifts the potentials of the smaller side of the cut along
// the thread: O(cycle + depth + min(subtree, rest)). (Child lists are used only while the first basis is built.)
// The tree is kept strongly feasible (every zero-flow arc points away from the root; leaving arc = the last
// blocking arc of the cycle met from the join node), which rules out cycling on degenerate pivots.
//
// Initial bases (both strongly feasible):
//  * greedy (init = 0): arcs sorted by reduced cost for the given potentials pi0 (a warm start; plain costs
//    without one); each arc ships min(remaining supply of its tail, remaining demand of its head). Every
//    shipment closes one of its ends, so the shipments form a forest with at most one open node per tree,
//    which hangs from R by an artificial arc carrying the leftover (big-M cost) or nothing (cost irrelevant:
//    a zero-flow artificial arc pointing down can never gain flow).
//  * spanning tree (init = 1, arcs a and a + m/2 are reverses of each other, undirected graphs): a BFS tree
//    from a central node carrying the subtree imbalances, each edge used in the direction of its flow.
//    init = 2 builds the tree by Kruskal from the edges of largest given priority first (the support of a
//    prolonged coarse optimum: the coarse-to-fine warm start of graph.py cuts pivots on grids ~7x), then
//    completes it with BFS-tree edges.
//  * cost scaling (init = 3, undirected graphs): Goldberg's push-relabel refine with global price updates gives
//    an eps-optimal flow and prices (eps = 1e-4 of the largest cost); its support, completed by the edges of
//    smallest reduced cost, is the first tree. The simplex then repairs the rest (random graph 10^5 nodes /
//    10^6 edges: ~10^6 pivots of ~2 x 10^4 potential updates each from init 2, a few thousand from init 3).
//
// Pricing: block search (the most negative reduced cost in blocks of ~sqrt(#arcs) arcs, cyclically; 64 arcs
// for the undirected graph bases init = 1, 2, see small_blocks).
// At the end flows and potentials are recomputed from the final tree (exact tree solves).
//
// Files: this header holds the solver's pricing and pivots (the hot loop, inlined); min_cost_flow_init.cpp its
// bases from given flows, from a given basis and the greedy one (and the tree building they share);
// min_cost_flow_graph_init.cpp the bases of undirected graphs (BFS / priority trees, cost scaling);
// min_cost_flow.cpp the end of a solve (rebased potentials, exact tree solves) and the Python bindings.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "flow_tree.hpp"

namespace monge::mcf {

using i64 = std::int64_t;
inline constexpr double kInf = std::numeric_limits<double>::infinity();

// Disjoint sets of nodes (union-find with path halving): the Kruskal-like forests of the initial bases.
struct DisjointSets {
  explicit DisjointSets(int n) : up(n) { std::iota(up.begin(), up.end(), 0); }
  int find(int v) {
    while (up[v] != v) v = up[v] = up[up[v]];
    return v;
  }
  std::vector<int> up;
};

class FlowSimplex : private monge::flow::FlowTree {
 public:
  // status codes returned by solve()
  enum { kOptimal = 0, kMaxIter = 1, kInfeasible = 2, kUnbounded = 3 };

  FlowSimplex(int n, i64 m, const i64 *src, const i64 *dst, const double *cost, const double *supply)
      : n_(n), m_(m), R_(n) {
    src_.resize(m + n);
    dst_.resize(m + n);
    cost_.resize(m + n);
    flow_.assign(m + n, 0.0);
    in_tree_.assign(m + n, 0);
    for (i64 a = 0; a < m; ++a) {
      src_[a] = int(src[a]);
      dst_[a] = int(dst[a]);
      cost_[a] = cost[a];
      cmax_ = std::max(cmax_, std::fabs(cost[a]));
    }
    supply_.assign(supply, supply + n);
    smax_ = 0.0;
    for (double s : supply_) smax_ = std::max(smax_, std::fabs(s));
    parent_.assign(n + 1, -1);
    pred_.assign(n + 1, -1);
    up_.assign(n + 1, 0);
    succ_.assign(n + 1, 1);
    thread_.assign(n + 1, n);
    rev_thread_.assign(n + 1, n);
    last_succ_.assign(n + 1, n);
    fchild_.assign(n + 1, -1);
    nsib_.assign(n + 1, -1);
    pi_.assign(n + 1, 0.0);
    block_ = std::max<i64>(64, i64(std::sqrt(double(std::max<i64>(m, 1)))));  // small_blocks() for graphs
  }

  // ---- initial bases (min_cost_flow_init.cpp) ----------------------------------------------------------------
  // A basis from given flows meeting the supplies (a previous optimum on a subset of these arcs, or a flow
  // prolonged from a coarser problem): cycles of its support are cancelled first (make_basic, never raising the
  // cost), then the positive arcs (a forest) hang from R by zero-flow artificial arcs. False (nothing set) if the
  // flows do not meet the supplies. pi0 (n,) or null: potentials that set each component's level (see
  // offset_components).
  bool init_from_flows(const double *flow0_in, const double *pi0 = nullptr);

  // A basis given as the tree arc of every node (e.g. the final basis of a solve on a subset of these arcs, same
  // supplies: basis_out): an arc index < m (its other end is the node's parent), or -1 / -2: the node hangs from R
  // by its artificial arc pointing down / up. Its flows are the tree solve of the supplies; false (nothing set)
  // unless it is a spanning tree whose real arcs carry flow >= 0 and artificial arcs none (up to rounding). The
  // artificial arcs are hung pointing down (R -> v) whichever way they pointed: at zero flow that way round every
  // cycle through R is blocked, so they never carry flow. pi0 (or null) sets the level of the potentials below each
  // artificial arc (offset_components).
  bool init_from_basis(const i64 *basis, const double *pi0);

  // The basis in init_from_basis's form.
  void basis_out(i64 *out) const {
    for (int v = 0; v < n_; ++v) out[v] = pred_[v] < m_ ? pred_[v] : (up_[v] ? -2 : -1);
  }

  // Each tree component hangs from R by a zero-flow artificial arc, whose cost only sets the component's level of
  // potentials: choose it so that the component's potentials match pi0 on average (e.g. potentials prolonged from
  // a coarser problem), instead of 0 at every component root, which would make arcs between components look
  // improving for no reason.
  void offset_components(const double *pi0);

  // init = 0: arcs by increasing reduced cost for pi0 (or null), each shipping what its ends still allow; the
  // leftover hangs from R by artificial arcs of cost art_cost (> 0), or big-M (0).
  void init_greedy(const double *pi0, double art_cost);

  // ---- initial bases of undirected graphs (min_cost_flow_graph_init.cpp) -------------------------------------
  // init = 3 (undirected graphs, arcs a and a + m/2 reverse each other): an eps-optimal flow and prices by cost
  // scaling (Goldberg's push-relabel refine, eps /= alpha per phase down to eps_final) select the first basis:
  // Kruskal over the edges carrying flow, then the edges by increasing reduced cost (tight first). The network
  // simplex then only repairs what the eps-optimality left open, so the result keeps its exact certificate.
  // eps_final is relative to the largest cost.
  void init_cost_scaling(double alpha, double eps_final);

  // prio (E,) or null: a spanning forest of the edges with prio > 0 taken by decreasing prio first (e.g. the
  // support of a prolonged coarse flow), completed by the BFS trees of the whole graph.
  void init_spanning_tree(const double *prio = nullptr);

  // Short pricing blocks (64 arcs): on graph W1 (grids, random graphs) the entering arcs then stay local and
  // the pivots get both fewer and cheaper (512^2 grid: 212k pivots in 18.6 s with sqrt(m) = 1024-arc blocks,
  // 168k in 5.6 s with 64).
  void small_blocks() { block_ = 64; }

  int solve(i64 max_iter) {
    tol_ = 1e-13 * std::max(cmax_, 1e-300) + 2e-15 * std::fabs(art_);
    const i64 refresh = std::max<i64>(1000, n_);
    while (true) {
      if (max_iter > 0 && iter_ >= max_iter) return kMaxIter;
      i64 e;
      if (!find_entering(e)) break;
      if (!pivot(e)) return kUnbounded;
      if (++iter_ % refresh == 0) compute_potentials();
    }
    return kOptimal;
  }

  // ---- the end of a solve (min_cost_flow.cpp) ----------------------------------------------------------------
  // After a big-M start (init 0) the potentials carry the artificial cost art_ (~ n max|c|) and lose ~log10(n)
  // digits. Rebase: each subtree of the root gets potentials relative to its top node, then offsets that keep
  // every arc between subtrees feasible (Bellman-Ford, at most 64 rounds), the artificial arcs' costs follow, and
  // the pricing tolerance drops to 1e-13 max|c|. False (nothing changed) if an artificial arc carries flow (beyond
  // rounding dust) or the offsets do not settle. The caller resumes the simplex: it finishes what the coarse
  // tolerance left.
  bool rebase_potentials();

  // Exact tree solves: flows from subtree imbalances, potentials from the root. Returns the artificial flow.
  double finalize(double *flow_out, double *u_out);

  i64 iterations() const { return iter_; }
  double tolerance() const { return tol_; }

 private:
  // ---- tree building (min_cost_flow_init.cpp) ----------------------------------------------------------------
  // c becomes the first child of p
  void link(int c, int p);
  void set_parent(int x, int p, i64 arc, bool up, double f);
  // artificial arc joining v to the root, carrying the net supply r of v's tree (r > 0: up, v -> R)
  void hang(int v, double r);
  void build_forest(const std::vector<i64> &tree, const std::vector<double> &rem, std::vector<int> &roots);
  // The child lists of the initial forest give the preorder thread, subtree sizes and last successors; from
  // here on the tree lives in parent / pred / up / thread / rev_thread / succ / last_succ only.
  void finish_init();
  // preorder of the whole tree from R (by the child lists)
  void preorder(std::vector<int> &order);
  // The tolerance on flows that must meet the supplies: 1e-12 of the largest supply or of the whole mass.
  double supply_tol() const;

  // ---- cost scaling and the graph trees (min_cost_flow_graph_init.cpp) ---------------------------------------
  // Returns false (flow left partial) when an excess cannot drain or the work exceeds ~100 relabels per node
  // and phase (the simplex then starts from the price-ordered tree alone).
  bool cost_scaling(std::vector<double> &F, std::vector<double> &p, std::vector<double> &ex, double alpha,
                    double eps_final);

  // Kruskal: the edges with prio > 0 by decreasing prio, then the BFS-tree edges of the graph (adjacency off/adj)
  std::vector<i64> prio_tree(const double *prio, const std::vector<i64> &off, const std::vector<i64> &adj);

  // ---- pricing and pivots (the hot loop) ---------------------------------------------------------------------
  void compute_potentials() {  // thread order: parents first
    pi_[R_] = 0.0;
    for (int c = thread_[R_]; c != R_; c = thread_[c]) {
      const i64 a = pred_[c];
      const int x = parent_[c];
      pi_[c] = up_[c] ? pi_[x] - cost_[a] : pi_[x] + cost_[a];  // rc = c + pi_src - pi_dst = 0
    }
  }

  bool find_entering(i64 &e) {
    double best = -tol_;
    i64 best_a = -1, count = 0;
    for (i64 k = 0; k < m_; ++k) {
      const i64 a = next_;
      if (++next_ == m_) next_ = 0;
      const double rc = cost_[a] + pi_[src_[a]] - pi_[dst_[a]];
      if (rc < best && !in_tree_[a]) best = rc, best_a = a;  // rounding can make a tree arc look improving
      if (++count == block_) {
        if (best_a >= 0) break;
        count = 0;
      }
    }
    e = best_a;
    return best_a >= 0;
  }

  bool pivot(i64 e) {
    const int first = src_[e], second = dst_[e];
    i64 steps = 0;
    const int join = join_node(first, second, steps);
    int u;
    double delta = kInf;
    int u_out = -1;
    bool out_first = false;
    for (u = first; u != join; u = parent_[u])
      if (up_[u] && flow_[pred_[u]] < delta) delta = flow_[pred_[u]], u_out = u, out_first = true;
    for (u = second; u != join; u = parent_[u])
      if (!up_[u] && flow_[pred_[u]] <= delta) delta = flow_[pred_[u]], u_out = u, out_first = false;
    if (u_out < 0) return false;  // a negative cycle of unbounded capacity
    if (delta > 0.0) {
      flow_[e] += delta;
      for (u = first; u != join; u = parent_[u]) flow_[pred_[u]] += up_[u] ? -delta : delta;
      for (u = second; u != join; u = parent_[u]) flow_[pred_[u]] += up_[u] ? delta : -delta;
    }
    flow_[pred_[u_out]] = 0.0;
    in_tree_[pred_[u_out]] = 0;
    in_tree_[e] = 1;
    const int u_in = out_first ? first : second, v_in = out_first ? second : first;
    update_tree(u_in, v_in, u_out, join, [this](int w, int p) {  // w takes the arc of p, reversed
      pred_[w] = pred_[p];
      up_[w] = !up_[p];
    });
    pred_[u_in] = e;
    up_[u_in] = src_[e] == u_in;
    update_potentials(e, u_in, v_in);
    return true;
  }

  // rc(e) = 0 by shifting the potentials of u_in's subtree, or of the rest of the tree when that is smaller
  void update_potentials(i64 e, int u_in, int v_in) {
    const double target = src_[e] == u_in ? pi_[v_in] - cost_[e] : pi_[v_in] + cost_[e];
    shift_potentials(u_in, target - pi_[u_in], n_ + 1, pi_.data());
  }

  // ---- data ----------------------------------------------------------------------------------------------------
  int n_;
  i64 m_;
  int R_;
  double cmax_ = 0.0, smax_ = 0.0, art_ = 0.0, tol_ = 0.0;
  i64 block_ = 64, next_ = 0, iter_ = 0, relabels_ = 0;
  std::vector<int> src_, dst_;
  std::vector<double> cost_, flow_, supply_, pi_;
  std::vector<int> fchild_, nsib_, stack_;  // child lists (first child, next sibling): while the first basis is built
  std::vector<i64> pred_;
  std::vector<char> up_, in_tree_;
};

}  // namespace monge::mcf

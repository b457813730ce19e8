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
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <functional>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <thread>
#include <stdexcept>
#include <vector>

#include "flow_tree.hpp"
#include "network_simplex_basic_flow.hpp"

namespace nb = nanobind;

namespace {

using i64 = std::int64_t;
constexpr double kInf = std::numeric_limits<double>::infinity();

class FlowSimplex : private monge::flow::FlowTree {
 public:
  struct Slot {  // an edge seen from one end (cost scaling)
    int w, fwd;  // the other end; 1 if this end is the edge's src
    i64 e;
    double l;
  };

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
    psib_.assign(n + 1, -1);
    pi_.assign(n + 1, 0.0);
    block_ = std::max<i64>(64, i64(std::sqrt(double(std::max<i64>(m, 1)))));  // small_blocks() for graphs
  }

  // A basis from given flows meeting the supplies (a previous optimum on a subset of these arcs, or a flow
  // prolonged from a coarser problem): cycles of its support are cancelled first (make_basic, never raising the
  // cost), then the positive arcs (a forest) hang from R by zero-flow artificial arcs. False (nothing set) if the
  // flows do not meet the supplies. pi0 (n,) or null: potentials that set each component's level (see
  // offset_components).
  bool init_from_flows(const double *flow0_in, const double *pi0 = nullptr) {
    std::vector<double> basic(flow0_in, flow0_in + m_);
    monge::flow::make_basic(n_, m_, src_.data(), dst_.data(), cost_.data(), basic.data());
    const double *flow0 = basic.data();
    std::vector<int> uf(n_);
    std::iota(uf.begin(), uf.end(), 0);
    auto find = [&](int v) {
      while (uf[v] != v) v = uf[v] = uf[uf[v]];
      return v;
    };
    std::vector<double> rem(supply_);
    std::vector<i64> tree;
    for (i64 a = 0; a < m_; ++a) {
      if (!(flow0[a] > 0.0)) continue;
      const int ru = find(src_[a]), rv = find(dst_[a]);
      if (ru == rv) continue;
      uf[ru] = rv;
      flow_[a] = flow0[a];
      rem[src_[a]] -= flow0[a];
      rem[dst_[a]] += flow0[a];
      tree.push_back(a);
    }
    double mass = 0.0;  // the flows may miss the supplies by rounding over the whole mass (e.g. a prolonged plan)
    for (double s : supply_) mass += s > 0.0 ? s : 0.0;
    for (double r : rem)
      if (!(std::fabs(r) <= 1e-12 * std::max(smax_, mass))) {
        for (i64 a : tree) flow_[a] = 0.0;
        return false;
      }
    art_ = 0.0;
    std::fill(rem.begin(), rem.end(), 0.0);
    std::vector<int> roots;
    build_forest(tree, rem, roots);
    for (int r : roots) hang(r, 0.0);
    finish_init();
    if (pi0) offset_components(pi0);
    return true;
  }

  // A basis given as the tree arc of every node (e.g. the final basis of a solve on a subset of these arcs, same
  // supplies: basis_out): an arc index < m (its other end is the node's parent), or -1 / -2: the node hangs from R
  // by its artificial arc pointing down / up. Its flows are the tree solve of the supplies; false (nothing set)
  // unless it is a spanning tree whose real arcs carry flow >= 0 and artificial arcs none (up to rounding). pi0
  // (or null) sets the level of the potentials below each artificial arc (offset_components).
  bool init_from_basis(const i64 *basis, const double *pi0) {
    std::vector<int> par(n_ + 1, -1), head(n_ + 2, 0), kids(n_);
    for (int v = 0; v < n_; ++v) {
      const i64 b = basis[v];
      if (b >= 0 && b < m_ && (src_[b] == v) != (dst_[b] == v)) par[v] = src_[b] == v ? dst_[b] : src_[b];
      else if (b == -1 || b == -2) par[v] = R_;
      else return false;
      ++head[par[v] + 1];
    }
    for (int v = 0; v <= n_; ++v) head[v + 1] += head[v];
    std::vector<int> pos(head.begin(), head.end() - 1), order, stack{R_};
    for (int v = 0; v < n_; ++v) kids[pos[par[v]]++] = v;
    order.reserve(n_ + 1);
    while (!stack.empty()) {
      const int x = stack.back();
      stack.pop_back();
      order.push_back(x);
      for (int k = head[x]; k < head[x + 1]; ++k) stack.push_back(kids[k]);
    }
    if (int(order.size()) != n_ + 1) return false;  // a cycle: some nodes are not below R
    double mass = 0.0;
    for (double s : supply_) mass += s > 0.0 ? s : 0.0;
    const double tol = 1e-12 * std::max(smax_, mass);
    std::vector<double> sub(supply_), x(n_, 0.0);
    sub.push_back(0.0);
    for (size_t k = order.size(); k-- > 1;) {  // children first: net flow of v's subtree to its parent
      const int v = order[k];
      const i64 b = basis[v];
      x[v] = b >= 0 ? (src_[b] == v ? sub[v] : -sub[v]) : sub[v];
      if (b >= 0 ? !(x[v] >= -tol) : !(std::fabs(x[v]) <= tol)) return false;
      sub[par[v]] += sub[v];
    }
    art_ = 0.0;
    for (size_t k = 1; k < order.size(); ++k) {
      const int v = order[k];
      const i64 b = basis[v];
      if (b >= 0) {
        set_parent(v, par[v], b, src_[b] == v, std::max(x[v], 0.0));
      } else {
        const i64 a = m_ + v;
        cost_[a] = 0.0;
        if (b == -2) src_[a] = v, dst_[a] = R_;
        else src_[a] = R_, dst_[a] = v;
        set_parent(v, R_, a, b == -2, 0.0);
      }
    }
    finish_init();
    if (pi0) offset_components(pi0);
    return true;
  }

  // The basis in init_from_basis's form.
  void basis_out(i64 *out) const {
    for (int v = 0; v < n_; ++v) out[v] = pred_[v] < m_ ? pred_[v] : (up_[v] ? -2 : -1);
  }

  // Each tree component hangs from R by a zero-flow artificial arc, whose cost only sets the component's level of
  // potentials: choose it so that the component's potentials match pi0 on average (e.g. potentials prolonged from
  // a coarser problem), instead of 0 at every component root, which would make arcs between components look
  // improving for no reason.
  void offset_components(const double *pi0) {
    int root = -1;
    double sum = 0.0;
    i64 count = 0;
    auto close = [&]() {
      if (root >= 0 && count > 0) cost_[pred_[root]] = (up_[root] ? -1.0 : 1.0) * (sum / double(count));
    };
    for (int c = thread_[R_]; c != R_; c = thread_[c]) {  // preorder: a component follows its root
      if (parent_[c] == R_) close(), root = c, sum = 0.0, count = 0;
      sum += pi0[c] - pi_[c];  // pi_ so far: 0 at every component root
      ++count;
    }
    close();
    compute_potentials();
  }

  void init_greedy(const double *pi0, double art_cost) {
    std::vector<i64> order;
    order.reserve(m_);
    for (i64 a = 0; a < m_; ++a)
      if (supply_[src_[a]] > 0.0 && supply_[dst_[a]] < 0.0) order.push_back(a);
    std::vector<double> key(m_);
    for (i64 a : order) key[a] = cost_[a] + (pi0 ? pi0[src_[a]] - pi0[dst_[a]] : 0.0);
    std::sort(order.begin(), order.end(), [&](i64 p, i64 q) { return key[p] < key[q] || (key[p] == key[q] && p < q); });
    std::vector<double> rem(supply_);
    const double tiny = 1e-14 * smax_;
    std::vector<i64> tree;
    for (i64 a : order) {
      const int u = src_[a], v = dst_[a];
      if (rem[u] <= tiny || rem[v] >= -tiny) continue;
      double x;
      if (rem[u] <= -rem[v]) {
        x = rem[u];
        rem[u] = 0.0;
        rem[v] += x;
        if (rem[v] >= -tiny) rem[v] = 0.0;
      } else {
        x = -rem[v];
        rem[v] = 0.0;
        rem[u] -= x;
        if (rem[u] <= tiny) rem[u] = 0.0;
      }
      flow_[a] = x;
      tree.push_back(a);
    }
    bool leftover = false;
    for (double r : rem) leftover |= (r != 0.0);
    art_ = art_cost > 0.0 ? art_cost : (leftover ? (double(n_) + 1.0) * std::max(cmax_, 1e-300) + 1.0 : 0.0);
    std::vector<int> roots;  // per forest component: its open node if any
    build_forest(tree, rem, roots);
    for (int r : roots) hang(r, rem[r]);
    finish_init();
  }

  // init = 3 (undirected graphs, arcs a and a + m/2 reverse each other): an eps-optimal flow and prices by cost
  // scaling (Goldberg's push-relabel refine, eps /= alpha per phase down to eps_final) select the first basis:
  // Kruskal over the edges carrying flow, then the edges by increasing reduced cost (tight first). The network
  // simplex then only repairs what the eps-optimality left open, so the result keeps its exact certificate.
  // eps_final is relative to the largest cost.
  void init_cost_scaling(double alpha, double eps_final) {
    const i64 E = m_ / 2;
    std::vector<double> F(E, 0.0), p(n_, 0.0), ex(supply_);
    if (!cost_scaling(F, p, ex, alpha, eps_final * cmax_)) std::fill(F.begin(), F.end(), 0.0);  // prices still order
    std::vector<double> prio(E);
    double fmax = 0.0;
    for (i64 e = 0; e < E; ++e) fmax = std::max(fmax, std::fabs(F[e]));
    const double scale = 2.0 * std::max(cmax_, 1e-300);
    for (i64 e = 0; e < E; ++e) {
      const double slack = cost_[e] - std::fabs(p[src_[e]] - p[dst_[e]]);
      prio[e] = F[e] != 0.0 ? 3.0 + std::fabs(F[e]) / fmax : 1.5 - slack / scale;
    }
    init_spanning_tree(prio.data());
  }

  // Returns false (flow left partial) when an excess cannot drain or the work exceeds ~100 relabels per node
  // and phase (the simplex then starts from the price-ordered tree alone).
  bool cost_scaling(std::vector<double> &F, std::vector<double> &p, std::vector<double> &ex, double alpha,
                    double eps_final) {
    const i64 E = m_ / 2;
    std::vector<i64> off(n_ + 1, 0);
    std::vector<Slot> adj(2 * E);  // per node its edges, contiguous: other end, edge, direction, length
    for (i64 e = 0; e < E; ++e) ++off[src_[e] + 1], ++off[dst_[e] + 1];
    for (int v = 0; v < n_; ++v) off[v + 1] += off[v];
    {
      std::vector<i64> pos(off.begin(), off.end() - 1);
      for (i64 e = 0; e < E; ++e) {
        adj[pos[src_[e]]++] = Slot{dst_[e], 1, e, cost_[e]};
        adj[pos[dst_[e]]++] = Slot{src_[e], 0, e, cost_[e]};
      }
    }
    std::vector<i64> cur(n_);
    std::vector<int> queue;
    std::vector<char> inq(n_, 0);
    // excess below tiny is rounding dust (the supplies sum to zero only up to rounding): left for the simplex
    const double tiny = 1e-11 * smax_;
    double eps = cmax_;
    while (eps > eps_final) {
      eps = std::max(eps / alpha, eps_final);
      lipschitz_projection(p, off, adj, eps);
      for (i64 e = 0; e < E; ++e) {  // flow-carrying edges must stay eps-tight: cancel the others
        if (F[e] == 0.0) continue;
        const int i = F[e] > 0.0 ? src_[e] : dst_[e], j = F[e] > 0.0 ? dst_[e] : src_[e];
        if (-cost_[e] + p[j] - p[i] < -eps) ex[i] += std::fabs(F[e]), ex[j] -= std::fabs(F[e]), F[e] = 0.0;
      }
      if (!global_update(F, p, ex, off, adj, eps, tiny)) return false;
      i64 next_update = relabels_ + n_;
      const i64 budget = relabels_ + 100 * i64(n_);
      queue.clear();
      for (int v = 0; v < n_; ++v) {
        cur[v] = off[v];
        inq[v] = ex[v] > tiny;
        if (inq[v]) queue.push_back(v);
      }
      for (size_t h = 0; h < queue.size(); ++h) {
        const int v = queue[h];
        inq[v] = 0;
        discharge(v, F, p, ex, off, adj, cur, eps, tiny, queue, inq);
        if (relabels_ > next_update) {
          if (relabels_ > budget || !global_update(F, p, ex, off, adj, eps, tiny)) return false;
          for (int w = 0; w < n_; ++w) cur[w] = off[w];
          next_update = relabels_ + n_;
        }
        if (h > size_t(1) << 20 && 2 * h > queue.size()) queue.erase(queue.begin(), queue.begin() + h + 1), h = size_t(-1);
      }
    }
    return true;
  }

  void discharge(int v, std::vector<double> &F, std::vector<double> &p, std::vector<double> &ex,
                 const std::vector<i64> &off, const std::vector<Slot> &adj, std::vector<i64> &cur, double eps,
                 double tiny, std::vector<int> &queue, std::vector<char> &inq) {
    if (off[v] == off[v + 1]) return;  // an isolated node cannot pass its excess on (the global update reports it)
    while (ex[v] > tiny) {
      i64 k = cur[v];
      for (; k < off[v + 1]; ++k) {
        const Slot &sl = adj[k];
        const i64 e = sl.e;
        const bool fwd = sl.fwd;
        const int w = sl.w;
        const double fvw = fwd ? F[e] : -F[e];  // flow v -> w (negative: w -> v, cancellable)
        const double l = sl.l;
        double d = 0.0;
        if (fvw < 0.0 && -l + p[v] - p[w] < 0.0) {
          d = std::min(ex[v], -fvw);
          F[e] = (d == -fvw) ? 0.0 : F[e] + (fwd ? d : -d);
        } else if (l + p[v] - p[w] < 0.0) {
          d = ex[v];
          F[e] += fwd ? d : -d;
        } else {
          continue;
        }
        ex[v] = d == ex[v] ? 0.0 : ex[v] - d;
        ex[w] += d;
        if (ex[w] > tiny && !inq[w]) inq[w] = 1, queue.push_back(w);
        if (!(ex[v] > tiny)) break;
        --k;  // the same edge may admit more (a cancel followed by a forward push)
      }
      if (k < off[v + 1]) {
        cur[v] = k;
        return;
      }
      double best = -kInf;  // relabel: the largest price that keeps every residual arc eps-optimal, minus eps
      for (k = off[v]; k < off[v + 1]; ++k) {
        const Slot &sl = adj[k];
        const double fvw = sl.fwd ? F[sl.e] : -F[sl.e];
        best = std::max(best, p[sl.w] + (fvw < 0.0 ? sl.l : -sl.l));
      }
      p[v] = best - eps;
      cur[v] = off[v];
      ++relabels_;
    }
  }

  // Global price update (as in Goldberg's CS2): the rank R(v) of a node is the fewest eps-units to a node with a
  // deficit along residual arcs, arc length floor((rc + eps) / eps) >= 0 (eps-optimality), found by Dial's
  // buckets and stopped once every excess is ranked (the others get the next rank). p(v) -= R(v) eps keeps every
  // residual arc eps-optimal and makes the shortest-path arcs admissible, so each excess has an admissible path
  // to a deficit. False when some excess cannot reach a deficit (a component whose supplies do not balance).
  bool global_update(const std::vector<double> &F, std::vector<double> &p, const std::vector<double> &ex,
                     const std::vector<i64> &off, const std::vector<Slot> &adj, double eps, double tiny) {
    const i64 cap = 4 * i64(n_) + 16;
    std::vector<i64> R(n_, cap);
    std::vector<std::vector<int>> buckets(1);
    i64 todo = 0;
    for (int v = 0; v < n_; ++v) {
      todo += ex[v] > tiny;
      if (ex[v] < -tiny) R[v] = 0, buckets[0].push_back(v);
    }
    if (todo == 0) return true;  // no excess left: nothing to rank
    if (buckets[0].empty()) return false;
    i64 r = 0;
    for (; r < i64(buckets.size()) && todo > 0; ++r) {
      for (size_t q = 0; q < buckets[r].size() && todo > 0; ++q) {
        const int w = buckets[r][q];
        if (R[w] != r) continue;
        todo -= ex[w] > tiny;
        for (i64 k = off[w]; k < off[w + 1]; ++k) {  // residual arcs v -> w
          const Slot &sl = adj[k];
          const int v = sl.w;
          const double fwv = sl.fwd ? F[sl.e] : -F[sl.e];  // flow w -> v > 0: the cancel arc v -> w (cost -l)
          const double rc = (fwv > 0.0 ? -sl.l : sl.l) + p[v] - p[w];
          const double len = std::floor(std::max(0.0, rc + eps) / eps);
          if (!(len < double(cap))) continue;
          const i64 nr = r + i64(len);
          if (nr < R[v]) {
            R[v] = nr;
            if (nr >= i64(buckets.size())) buckets.resize(nr + 1);
            buckets[nr].push_back(v);
          }
        }
      }
      std::vector<int>().swap(buckets[r]);
    }
    if (todo > 0) return false;
    for (int v = 0; v < n_; ++v) p[v] -= double(std::min(R[v], r)) * eps;
    return true;
  }

  // p_j <- min(p_j, min_i p_i + l_ij + eps): the largest prices below p that are (l + eps)-Lipschitz along every
  // edge (multi-source Dijkstra), so every forward residual arc has reduced cost >= -eps
  void lipschitz_projection(std::vector<double> &p, const std::vector<i64> &off, const std::vector<Slot> &adj,
                            double eps) {
    using QE = std::pair<double, int>;
    std::vector<QE> heap;
    heap.reserve(n_);
    for (int v = 0; v < n_; ++v) heap.emplace_back(p[v], v);
    std::make_heap(heap.begin(), heap.end(), std::greater<QE>());
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<QE>());
      const auto [d, v] = heap.back();
      heap.pop_back();
      if (d > p[v]) continue;
      for (i64 k = off[v]; k < off[v + 1]; ++k) {
        const int w = adj[k].w;
        const double nd = d + adj[k].l + eps;
        if (nd < p[w]) p[w] = nd, heap.emplace_back(nd, w), std::push_heap(heap.begin(), heap.end(), std::greater<QE>());
      }
    }
  }

  // prio (E,) or null: a spanning forest of the edges with prio > 0 taken by decreasing prio first (e.g. the
  // support of a prolonged coarse flow), completed by the BFS trees of the whole graph.
  void init_spanning_tree(const double *prio = nullptr) {
    // arcs a and a + m/2 are reverses; adjacency over edges e < m/2
    const i64 E = m_ / 2;
    std::vector<i64> off(n_ + 1, 0), adj(2 * E);
    auto build_adj = [&](const std::vector<i64> &edges) {
      std::fill(off.begin(), off.end(), 0);
      for (i64 e : edges) ++off[src_[e] + 1], ++off[dst_[e] + 1];
      for (int v = 0; v < n_; ++v) off[v + 1] += off[v];
      std::vector<i64> pos(off.begin(), off.end() - 1);
      for (i64 e : edges) adj[pos[src_[e]]++] = e, adj[pos[dst_[e]]++] = e;
    };
    std::vector<i64> all(E);
    std::iota(all.begin(), all.end(), i64(0));
    build_adj(all);
    if (prio) build_adj(prio_tree(prio, off, adj));
    std::vector<int> comp(n_, -1), order, par(n_, -1), dist(n_, -1);
    std::vector<i64> pedge(n_, -1);
    std::vector<char> done(n_, 0);
    std::vector<double> acc(n_, 0.0);
    order.reserve(n_);
    auto bfs = [&](int s, int label) {  // BFS tree from s appended to `order`; returns the farthest node
      size_t head = order.size();
      order.push_back(s);
      comp[s] = label;
      dist[s] = 0;
      par[s] = -1;
      pedge[s] = -1;
      int last = s;
      while (head < order.size()) {
        const int x = order[head++];
        last = x;
        for (i64 k = off[x]; k < off[x + 1]; ++k) {
          const i64 e = adj[k];
          const int y = src_[e] == x ? dst_[e] : src_[e];
          if (comp[y] == label) continue;
          comp[y] = label;
          dist[y] = dist[x] + 1;
          par[y] = x;
          pedge[y] = e;
          order.push_back(y);
        }
      }
      return last;
    };
    art_ = 0.0;
    int label = 0;
    for (int s = 0; s < n_; ++s) {
      if (done[s]) continue;
      // a central node: the midpoint of a long BFS path (farthest from s, then farthest from that)
      const size_t start = order.size();
      const int far1 = bfs(s, label++);
      order.resize(start);
      const int far2 = bfs(far1, label++);
      int mid = far2;
      for (int k = dist[far2] / 2; k > 0; --k) mid = par[mid];
      order.resize(start);
      bfs(mid, label++);
      for (size_t k = start; k < order.size(); ++k) done[order[k]] = 1, acc[order[k]] = supply_[order[k]];
      for (size_t k = order.size(); k-- > start + 1;) acc[par[order[k]]] += acc[order[k]];  // subtree sums
      for (size_t k = start + 1; k < order.size(); ++k) {
        const int x = order[k];
        const i64 e = pedge[x];
        const double f = acc[x];  // net flow x -> parent
        const bool child_is_src = src_[e] == x;  // arc e: src -> dst; arc e + E: dst -> src
        if (f > 0.0) set_parent(x, par[x], child_is_src ? e : e + E, true, f);
        else set_parent(x, par[x], child_is_src ? e + E : e, false, -f);
      }
      hang(mid, acc[mid]);
    }
    finish_init();
  }

  // Kruskal: the edges with prio > 0 by decreasing prio, then the BFS-tree edges of the graph (adjacency off/adj)
  std::vector<i64> prio_tree(const double *prio, const std::vector<i64> &off, const std::vector<i64> &adj) {
    const i64 E = m_ / 2;
    std::vector<i64> order;
    for (i64 e = 0; e < E; ++e)
      if (prio[e] > 0.0) order.push_back(e);
    std::sort(order.begin(), order.end(), [&](i64 p, i64 q) { return prio[p] > prio[q] || (prio[p] == prio[q] && p < q); });
    std::vector<char> seen(n_, 0);
    std::vector<int> queue;
    queue.reserve(n_);
    for (int s = 0; s < n_; ++s) {  // BFS trees, appended after the prioritised edges
      if (seen[s]) continue;
      seen[s] = 1;
      queue.assign(1, s);
      for (size_t h = 0; h < queue.size(); ++h) {
        const int x = queue[h];
        for (i64 k = off[x]; k < off[x + 1]; ++k) {
          const i64 e = adj[k];
          const int y = src_[e] == x ? dst_[e] : src_[e];
          if (!seen[y]) seen[y] = 1, queue.push_back(y), order.push_back(e);
        }
      }
    }
    std::vector<int> uf(n_);
    std::iota(uf.begin(), uf.end(), 0);
    auto find = [&](int v) {
      while (uf[v] != v) v = uf[v] = uf[uf[v]];
      return v;
    };
    std::vector<i64> tree;
    tree.reserve(n_);
    for (i64 e : order) {
      const int ru = find(src_[e]), rv = find(dst_[e]);
      if (ru != rv) uf[ru] = rv, tree.push_back(e);
    }
    return tree;
  }

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

  // After a big-M start (init 0) the potentials carry the artificial cost art_ (~ n max|c|) and lose ~log10(n)
  // digits. Rebase: each subtree of the root gets potentials relative to its top node, then offsets that keep
  // every arc between subtrees feasible (Bellman-Ford, at most 64 rounds), the artificial arcs' costs follow, and
  // the pricing tolerance drops to 1e-13 max|c|. False (nothing changed) if an artificial arc carries flow (beyond rounding dust) or the
  // offsets do not settle. The caller resumes the simplex: it finishes what the coarse tolerance left.
  bool rebase_potentials() {
    if (art_ == 0.0) return false;
    for (int c = thread_[R_]; c != R_; c = thread_[c])
      if (pred_[c] >= m_ && flow_[pred_[c]] > 1e-10 * smax_) return false;  // beyond rounding dust
    std::vector<double> local(n_ + 1, 0.0);
    std::vector<int> comp(n_ + 1, -1);
    int K = 0;
    for (int c = thread_[R_]; c != R_; c = thread_[c]) {
      if (parent_[c] == R_) {
        comp[c] = K++;
        continue;
      }
      comp[c] = comp[parent_[c]];
      local[c] = up_[c] ? local[parent_[c]] - cost_[pred_[c]] : local[parent_[c]] + cost_[pred_[c]];
    }
    std::vector<double> off(K, 0.0);
    const double slack = 1e-15 * std::max(cmax_, 1e-300);
    bool settled = K == 1;
    for (int round = 0; round < 64 && !settled; ++round) {
      settled = true;
      for (i64 a = 0; a < m_; ++a) {  // u_src - u_dst <= c, with pi = -u: pi_dst - pi_src <= c
        const int i = src_[a], j = dst_[a], ci = comp[i], cj = comp[j];
        if (ci == cj) continue;
        const double bound = cost_[a] + local[i] + off[ci] - local[j];
        if (off[cj] > bound + slack) off[cj] = bound, settled = false;
      }
    }
    if (!settled) return false;
    for (int v = 0; v < n_; ++v) pi_[v] = local[v] + off[comp[v]];
    for (int c = thread_[R_]; c != R_; c = thread_[c])
      if (parent_[c] == R_) cost_[pred_[c]] = up_[c] ? -pi_[c] : pi_[c];
    art_ = 0.0;
    tol_ = 1e-13 * std::max(cmax_, 1e-300);
    return true;
  }

  // Exact tree solves: flows from subtree imbalances, potentials from the root. Returns the artificial flow.
  double finalize(double *flow_out, double *u_out) {
    std::vector<int> order;
    order.reserve(n_ + 1);
    order.push_back(R_);
    for (int x = thread_[R_]; x != R_; x = thread_[x]) order.push_back(x);
    std::vector<double> sub(n_ + 1, 0.0);
    for (int v = 0; v < n_; ++v) sub[v] = supply_[v];
    std::fill(flow_.begin(), flow_.end(), 0.0);
    double art_flow = 0.0;
    for (size_t k = order.size(); k-- > 1;) {
      const int x = order[k];
      const double f = sub[x];  // net flow x -> parent
      flow_[pred_[x]] = up_[x] ? f : -f;
      sub[parent_[x]] += f;
      if (pred_[x] >= m_) art_flow += std::fabs(f);
    }
    compute_potentials();
    for (i64 a = 0; a < m_; ++a) flow_out[a] = flow_[a];
    for (int v = 0; v < n_; ++v) u_out[v] = -pi_[v];
    return art_flow;
  }

  i64 iterations() const { return iter_; }
  double tolerance() const { return tol_; }

 private:
  void link(int c, int p) {
    parent_[c] = p;
    psib_[c] = -1;
    nsib_[c] = fchild_[p];
    if (fchild_[p] >= 0) psib_[fchild_[p]] = c;
    fchild_[p] = c;
  }
  void unlink(int c) {
    const int p = parent_[c];
    if (psib_[c] >= 0) nsib_[psib_[c]] = nsib_[c];
    else fchild_[p] = nsib_[c];
    if (nsib_[c] >= 0) psib_[nsib_[c]] = psib_[c];
    nsib_[c] = psib_[c] = -1;
  }
  void set_parent(int x, int p, i64 arc, bool up, double f) {
    in_tree_[arc] = 1;
    pred_[x] = arc;
    up_[x] = up;
    flow_[arc] = f;
    link(x, p);
  }
  // artificial arc joining v to the root, carrying the net supply r of v's tree (r > 0: up, v -> R)
  void hang(int v, double r) {
    const i64 a = m_ + v;
    cost_[a] = art_;
    if (r > 0.0) src_[a] = v, dst_[a] = R_, set_parent(v, R_, a, true, r);
    else src_[a] = R_, dst_[a] = v, set_parent(v, R_, a, false, -r);
  }

  void build_forest(const std::vector<i64> &tree, const std::vector<double> &rem, std::vector<int> &roots) {
    std::vector<i64> off(n_ + 1, 0), adj(2 * tree.size());
    for (i64 a : tree) ++off[src_[a] + 1], ++off[dst_[a] + 1];
    for (int v = 0; v < n_; ++v) off[v + 1] += off[v];
    std::vector<i64> pos(off.begin(), off.end() - 1);
    for (i64 a : tree) adj[pos[src_[a]]++] = a, adj[pos[dst_[a]]++] = a;
    std::vector<char> seen(n_, 0);
    std::vector<int> comp, stack;
    for (int s = 0; s < n_; ++s) {
      if (seen[s]) continue;
      comp.clear();
      stack.assign(1, s);
      seen[s] = 1;
      int root = s;
      while (!stack.empty()) {  // find the open node of this component
        const int x = stack.back();
        stack.pop_back();
        comp.push_back(x);
        if (rem[x] != 0.0) root = x;
        for (i64 k = off[x]; k < off[x + 1]; ++k) {
          const i64 a = adj[k];
          const int y = src_[a] == x ? dst_[a] : src_[a];
          if (!seen[y]) seen[y] = 1, stack.push_back(y);
        }
      }
      for (int x : comp) seen[x] = 2;
      roots.push_back(root);
      stack.assign(1, root);  // orient the component from its root
      seen[root] = 3;
      while (!stack.empty()) {
        const int x = stack.back();
        stack.pop_back();
        for (i64 k = off[x]; k < off[x + 1]; ++k) {
          const i64 a = adj[k];
          const int y = src_[a] == x ? dst_[a] : src_[a];
          if (seen[y] == 3) continue;
          seen[y] = 3;
          set_parent(y, x, a, src_[a] == y, flow_[a]);
          stack.push_back(y);
        }
      }
    }
  }

  // The child lists of the initial forest give the preorder thread, subtree sizes and last successors; from
  // here on the tree lives in parent / pred / up / thread / rev_thread / succ / last_succ only.
  void finish_init() {
    std::vector<int> order;
    preorder(order);
    thread_from_preorder(order);
    std::vector<int>().swap(fchild_);
    std::vector<int>().swap(nsib_);
    std::vector<int>().swap(psib_);
    compute_potentials();
  }

  // preorder of the whole tree from R (by the child lists)
  void preorder(std::vector<int> &order) {
    order.clear();
    order.reserve(n_ + 1);
    stack_.assign(1, R_);
    while (!stack_.empty()) {
      const int x = stack_.back();
      stack_.pop_back();
      order.push_back(x);
      for (int c = fchild_[x]; c >= 0; c = nsib_[c]) stack_.push_back(c);
    }
  }

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

  int n_;
  i64 m_;
  int R_;
  double cmax_ = 0.0, smax_ = 0.0, art_ = 0.0, tol_ = 0.0;
  i64 block_ = 64, next_ = 0, iter_ = 0, relabels_ = 0;
  std::vector<int> src_, dst_;
  std::vector<double> cost_, flow_, supply_, pi_;
  std::vector<int> fchild_, nsib_, psib_, stack_;  // child lists: only while the first basis is built
  std::vector<i64> pred_;
  std::vector<char> up_, in_tree_;
};

template <typename T>
nb::ndarray<nb::numpy, T, nb::ndim<1>> to_numpy(std::vector<T> &&v) {
  auto *heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void *p) noexcept { delete static_cast<std::vector<T> *>(p); });
  return nb::ndarray<nb::numpy, T, nb::ndim<1>>(heap->data(), {heap->size()}, owner);
}

using F1 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using I1 = nb::ndarray<const i64, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

void check_arcs(const I1 &src, const I1 &dst, const F1 &cost, size_t n) {
  const i64 m = i64(src.shape(0));
  if (i64(dst.shape(0)) != m || i64(cost.shape(0)) != m)
    throw std::invalid_argument("min_cost_flow: expected src (m,), dst (m,), cost (m,)");
  if (n == 0 || n >= size_t(std::numeric_limits<int>::max() - 1))
    throw std::invalid_argument("min_cost_flow: need 1 <= n < 2^31 - 1 nodes");
  const i64 *ps = src.data(), *pd = dst.data();
  for (i64 a = 0; a < m; ++a)
    if (ps[a] < 0 || pd[a] < 0 || ps[a] >= i64(n) || pd[a] >= i64(n))
      throw std::invalid_argument("min_cost_flow: arc endpoint out of range [0, n)");
}

nb::tuple min_cost_flow(I1 src, I1 dst, F1 cost, F1 supply, F1 pi0, int init, double art_cost, i64 max_iter,
                        F1 flow0) {
  const i64 m = i64(src.shape(0));
  const size_t n = supply.shape(0);
  check_arcs(src, dst, cost, n);
  if (init == 2 ? i64(pi0.shape(0)) != m / 2 : pi0.shape(0) != 0 && pi0.shape(0) != n)
    throw std::invalid_argument("min_cost_flow: pi0 must be (n,) or (0,), or the edge priorities (m/2,) for init=2");
  if (flow0.shape(0) != 0 && i64(flow0.shape(0)) != m)
    throw std::invalid_argument("min_cost_flow: flow0 must be (m,) or (0,)");
  if (init >= 1 && m % 2 != 0) throw std::invalid_argument("min_cost_flow: init=1 needs arcs in reverse pairs");
  const i64 *ps = src.data(), *pd = dst.data();
  std::vector<double> flow(m), u(n);
  int status;
  i64 iters;
  double art_flow, tol;
  {
    nb::gil_scoped_release release;
    FlowSimplex fs(int(n), m, ps, pd, cost.data(), supply.data());
    if (init == 3) fs.init_cost_scaling(8.0, art_cost > 0.0 ? art_cost : 1e-4);
    else if (init >= 1) fs.init_spanning_tree(init == 2 ? pi0.data() : nullptr);
    if (init >= 1) fs.small_blocks();
    else if (!(flow0.shape(0) && fs.init_from_flows(flow0.data(), pi0.shape(0) ? pi0.data() : nullptr)))
      fs.init_greedy(pi0.shape(0) ? pi0.data() : nullptr, art_cost);
    status = fs.solve(max_iter);
    if (status == 0 && init == 0 && fs.rebase_potentials()) status = fs.solve(max_iter);  // full precision
    iters = fs.iterations();
    art_flow = fs.finalize(flow.data(), u.data());
    tol = fs.tolerance();
  }
  return nb::make_tuple(to_numpy(std::move(flow)), to_numpy(std::move(u)), status, iters, art_flow, tol);
}

// min_cost_flow's greedy / flow0 start (init 0) with a basis first: see FlowSimplex::init_from_basis. Returns also
// the final basis (n,) and whether the given basis was used.
nb::tuple min_cost_flow_warm(I1 src, I1 dst, F1 cost, F1 supply, F1 pi0, I1 basis, double art_cost, i64 max_iter,
                             F1 flow0) {
  const i64 m = i64(src.shape(0));
  const size_t n = supply.shape(0);
  check_arcs(src, dst, cost, n);
  if (pi0.shape(0) != 0 && pi0.shape(0) != n) throw std::invalid_argument("min_cost_flow_warm: pi0 must be (n,) or (0,)");
  if (basis.shape(0) != 0 && basis.shape(0) != n)
    throw std::invalid_argument("min_cost_flow_warm: basis must be (n,) or (0,)");
  if (flow0.shape(0) != 0 && i64(flow0.shape(0)) != m)
    throw std::invalid_argument("min_cost_flow_warm: flow0 must be (m,) or (0,)");
  std::vector<double> flow(m), u(n);
  std::vector<i64> bout(n);
  int status;
  i64 iters;
  double art_flow, tol;
  bool warm;
  {
    nb::gil_scoped_release release;
    FlowSimplex fs(int(n), m, src.data(), dst.data(), cost.data(), supply.data());
    const double *p0 = pi0.shape(0) ? pi0.data() : nullptr;
    warm = basis.shape(0) && fs.init_from_basis(basis.data(), p0);
    const bool from_flows = !warm && flow0.shape(0) && fs.init_from_flows(flow0.data(), p0);
    if (!warm && !from_flows) fs.init_greedy(p0, art_cost);
    status = fs.solve(max_iter);
    if (status == 0 && fs.rebase_potentials()) status = fs.solve(max_iter);  // full precision after a big-M start
    iters = fs.iterations();
    fs.basis_out(bout.data());
    art_flow = fs.finalize(flow.data(), u.data());
    tol = fs.tolerance();
  }
  return nb::make_tuple(to_numpy(std::move(flow)), to_numpy(std::move(u)), status, iters, art_flow, tol,
                        to_numpy(std::move(bout)), warm);
}

}  // namespace

void register_min_cost_flow(nb::module_ &m) {
  m.def("min_cost_flow", &min_cost_flow, nb::arg("src"), nb::arg("dst"), nb::arg("cost"), nb::arg("supply"),
        nb::arg("pi0"), nb::arg("init"), nb::arg("art_cost"), nb::arg("max_iter"), nb::arg("flow0"),
        "Uncapacitated min-cost flow by the network simplex: (flow (m,), u (n,), status, n_iter, artificial_flow, "
        "tol) with tol the reduced-cost tolerance of the pricing (entering arcs have rc < -tol). "
        "u is the dual potential (u_src - u_dst <= cost). status 0 = optimal, 1 = max_iter, 3 = unbounded. "
        "init 0 = greedy basis by reduced cost for potentials pi0 (= -u0; empty: none), 1 = BFS spanning tree "
        "(arcs a and a + m/2 reverse each other), 2 = that tree preferring the edges of largest priority pi0 (m/2,), 3 = the tree of a cost-scaling eps-optimal flow (same arcs; eps_final = art_cost * max cost, default 1e-4). flow0 (m,): a warm start from a feasible basis' flows (empty: none).");
  m.def("min_cost_flow_warm", &min_cost_flow_warm, nb::arg("src"), nb::arg("dst"), nb::arg("cost"), nb::arg("supply"),
        nb::arg("pi0"), nb::arg("basis"), nb::arg("art_cost"), nb::arg("max_iter"), nb::arg("flow0"),
        "min_cost_flow (init 0) started from a basis: (flow, u, status, n_iter, artificial_flow, tol, basis, warm). "
        "basis (n,) int64: the tree arc of every node (an arc index; -1 / -2: the node hangs from the root by its "
        "artificial arc pointing down / up), e.g. the basis returned by a solve on a subset of these arcs (remapped to "
        "their new indices) with the same supplies; empty or not a feasible spanning tree: flow0, then the greedy start. "
        "pi0 (n,) = -u0 (or empty) sets the potentials' level below each artificial arc. Returns the final basis in the "
        "same form and warm = whether the given basis was used.");
}

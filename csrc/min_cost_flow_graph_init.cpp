// The initial bases of the min-cost flow simplex (min_cost_flow_solver.hpp) on undirected graphs (arcs a and
// a + m/2 reverse each other): the BFS tree from a central node (init 1), completed from the edges of largest
// priority first (init 2, Kruskal), and the tree of an eps-optimal flow found by cost scaling (init 3).
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <utility>
#include <vector>

#include "min_cost_flow_solver.hpp"

namespace monge::mcf {

namespace {

// An edge seen from one end (cost scaling).
struct Slot {
  int w, fwd;  // the other end; 1 if this end is the edge's src
  i64 e;
  double l;
};

// Discharges v: pushes its excess along admissible residual arcs from its current arc on, relabelling v when none
// is left, until the excess is below tiny; nodes that gain an excess join the queue.
void discharge(int v, std::vector<double> &F, std::vector<double> &p, std::vector<double> &ex,
               const std::vector<i64> &off, const std::vector<Slot> &adj, std::vector<i64> &cur, double eps,
               double tiny, std::vector<int> &queue, std::vector<char> &inq, i64 &relabels) {
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
    ++relabels;
  }
}

// Global price update (as in Goldberg's CS2): the rank R(v) of a node is the fewest eps-units to a node with a
// deficit along residual arcs, arc length floor((rc + eps) / eps) >= 0 (eps-optimality), found by Dial's
// buckets and stopped once every excess is ranked (the others get the next rank). p(v) -= R(v) eps keeps every
// residual arc eps-optimal and makes the shortest-path arcs admissible, so each excess has an admissible path
// to a deficit. False when some excess cannot reach a deficit (a component whose supplies do not balance).
bool global_update(int n, const std::vector<double> &F, std::vector<double> &p, const std::vector<double> &ex,
                   const std::vector<i64> &off, const std::vector<Slot> &adj, double eps, double tiny) {
  const i64 cap = 4 * i64(n) + 16;
  std::vector<i64> R(n, cap);
  std::vector<std::vector<int>> buckets(1);
  i64 todo = 0;
  for (int v = 0; v < n; ++v) {
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
  for (int v = 0; v < n; ++v) p[v] -= double(std::min(R[v], r)) * eps;
  return true;
}

// p_j <- min(p_j, min_i p_i + l_ij + eps): the largest prices below p that are (l + eps)-Lipschitz along every
// edge (multi-source Dijkstra), so every forward residual arc has reduced cost >= -eps
void lipschitz_projection(int n, std::vector<double> &p, const std::vector<i64> &off, const std::vector<Slot> &adj,
                          double eps) {
  using QE = std::pair<double, int>;
  std::vector<QE> heap;
  heap.reserve(n);
  for (int v = 0; v < n; ++v) heap.emplace_back(p[v], v);
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

}  // namespace

void FlowSimplex::init_cost_scaling(double alpha, double eps_final) {
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

bool FlowSimplex::cost_scaling(std::vector<double> &F, std::vector<double> &p, std::vector<double> &ex, double alpha,
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
    lipschitz_projection(n_, p, off, adj, eps);
    for (i64 e = 0; e < E; ++e) {  // flow-carrying edges must stay eps-tight: cancel the others
      if (F[e] == 0.0) continue;
      const int i = F[e] > 0.0 ? src_[e] : dst_[e], j = F[e] > 0.0 ? dst_[e] : src_[e];
      if (-cost_[e] + p[j] - p[i] < -eps) ex[i] += std::fabs(F[e]), ex[j] -= std::fabs(F[e]), F[e] = 0.0;
    }
    if (!global_update(n_, F, p, ex, off, adj, eps, tiny)) return false;
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
      discharge(v, F, p, ex, off, adj, cur, eps, tiny, queue, inq, relabels_);
      if (relabels_ > next_update) {
        if (relabels_ > budget || !global_update(n_, F, p, ex, off, adj, eps, tiny)) return false;
        for (int w = 0; w < n_; ++w) cur[w] = off[w];
        next_update = relabels_ + n_;
      }
      if (h > size_t(1) << 20 && 2 * h > queue.size()) queue.erase(queue.begin(), queue.begin() + h + 1), h = size_t(-1);
    }
  }
  return true;
}

void FlowSimplex::init_spanning_tree(const double *prio) {
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

std::vector<i64> FlowSimplex::prio_tree(const double *prio, const std::vector<i64> &off, const std::vector<i64> &adj) {
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
  DisjointSets sets(n_);
  std::vector<i64> tree;
  tree.reserve(n_);
  for (i64 e : order) {
    const int ru = sets.find(src_[e]), rv = sets.find(dst_[e]);
    if (ru != rv) sets.up[ru] = rv, tree.push_back(e);
  }
  return tree;
}

}  // namespace monge::mcf

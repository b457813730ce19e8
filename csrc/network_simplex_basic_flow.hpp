// A feasible flow made basic: its support reduced to a forest by cycle cancelling, never raising its cost.
//
// A warm start for the network simplex must be a spanning tree, i.e. a flow whose positive arcs form a forest. A
// flow prolonged from a coarser problem (grid_flow.py: a coarse optimum split over the children of its cells) is
// feasible but its support has cycles. The arcs are inserted one by one into a rooted forest (parent pointers);
// an arc whose ends are already joined closes a cycle, and flow is pushed around that cycle in the direction that
// does not raise the cost (c_a + sum of agreeing arcs - sum of opposing arcs > 0: against the new arc) until an
// arc of the cycle empties; that arc leaves, and the forest stays a forest. Supplies are untouched (a cycle
// carries no net flow), so the result is feasible; O(arcs x depth) work. Flows stay >= 0 exactly: an arc loses
// at most its own flow (x - delta >= 0 when delta <= x, in IEEE arithmetic).
#pragma once

#include <cstdint>
#include <vector>

namespace monge::flow {

// src, dst, cost: the m arcs over n nodes; x (m,): a flow >= 0, changed in place. Arcs with x <= 0 are ignored.
inline void make_basic(int n, std::int64_t m, const int *src, const int *dst, const double *cost, double *x) {
  using i64 = std::int64_t;
  std::vector<int> par(n, -1);
  std::vector<i64> parc(n, -1), mark(n, -1);  // mark[v] = a: v is an ancestor of src[a]
  auto depth_to_root = [&](int v) {
    int d = 0;
    for (; par[v] >= 0; v = par[v]) ++d;
    return d;
  };
  auto evert = [&](int v) {  // v becomes the root of its tree: the parent pointers along v .. root reverse
    int prev = -1;
    i64 prev_arc = -1;
    while (v >= 0) {
      const int next = par[v];
      const i64 next_arc = parc[v];
      par[v] = prev, parc[v] = prev_arc;
      prev = v, prev_arc = next_arc, v = next;
    }
  };
  auto link = [&](i64 a) {  // the ends of a lie in different trees: hang the shallower end below the other
    const int s = src[a], t = dst[a];
    if (depth_to_root(s) <= depth_to_root(t)) {
      evert(s);
      par[s] = t, parc[s] = a;
    } else {
      evert(t);
      par[t] = s, parc[t] = a;
    }
  };
  for (i64 a = 0; a < m; ++a) {
    if (!(x[a] > 0.0)) continue;
    const int s = src[a], t = dst[a];
    if (s == t) {  // a loop carries nothing from one node to another: drop it (its cost is >= its worth)
      x[a] = 0.0;
      continue;
    }
    for (int w = s; w >= 0; w = par[w]) mark[w] = a;
    int lca = -1;
    for (int w = t; w >= 0 && lca < 0; w = par[w])
      if (mark[w] == a) lca = w;
    if (lca < 0) {
      link(a);
      continue;
    }
    // The cycle, oriented along a (s -> t): t up to lca, then lca down to s. A tree arc agrees when it is
    // traversed from its src to its dst: on t's side (upwards, w -> par[w]) when src == w; on s's side
    // (downwards, par[w] -> w) when dst == w.
    double cyc = cost[a], min_agree = x[a], min_oppose = -1.0;
    int cut_agree = -1, cut_oppose = -1;  // -1 with min_agree: the new arc itself
    auto scan = [&](int from, bool t_side) {
      for (int w = from; w != lca; w = par[w]) {
        const i64 e = parc[w];
        const bool agree = t_side ? src[e] == w : dst[e] == w;
        cyc += agree ? cost[e] : -cost[e];
        if (agree && x[e] < min_agree) min_agree = x[e], cut_agree = w;
        if (!agree && (min_oppose < 0.0 || x[e] < min_oppose)) min_oppose = x[e], cut_oppose = w;
      }
    };
    scan(t, true);
    scan(s, false);
    // Against a (delta = min_agree) unless pushing along a is cheaper and blocked by an opposing arc.
    const bool along = cyc < 0.0 && min_oppose >= 0.0;
    const double delta = along ? min_oppose : min_agree;
    const int cut = along ? cut_oppose : cut_agree;
    auto push = [&](int from, bool t_side) {
      for (int w = from; w != lca; w = par[w]) {
        const i64 e = parc[w];
        const bool agree = t_side ? src[e] == w : dst[e] == w;
        x[e] = (agree == along) ? x[e] + delta : (w == cut ? 0.0 : x[e] - delta);
      }
    };
    push(t, true);
    push(s, false);
    if (cut < 0) {  // the new arc empties: it never enters the forest
      x[a] = 0.0;
      continue;
    }
    x[a] = along ? x[a] + delta : x[a] - delta;
    par[cut] = -1, parc[cut] = -1;  // the emptied tree arc leaves; s and t now lie in different trees
    link(a);
  }
}

}  // namespace monge::flow

// The initial bases of the min-cost flow simplex (min_cost_flow_solver.hpp) on any arc list: from given flows, from
// a given basis, the greedy one by reduced cost; and the tree building they share with the bases of undirected
// graphs (min_cost_flow_graph_init.cpp): parent links, a forest hung from the root, the thread.
#include <algorithm>
#include <cmath>
#include <vector>

#include "min_cost_flow_solver.hpp"
#include "network_simplex_basic_flow.hpp"

namespace monge::mcf {

bool FlowSimplex::init_from_flows(const double *flow0_in, const double *pi0) {
  std::vector<double> basic(flow0_in, flow0_in + m_);
  monge::flow::make_basic(n_, m_, src_.data(), dst_.data(), cost_.data(), basic.data());
  const double *flow0 = basic.data();
  DisjointSets sets(n_);
  std::vector<double> rem(supply_);
  std::vector<i64> tree;
  for (i64 a = 0; a < m_; ++a) {
    if (!(flow0[a] > 0.0)) continue;
    const int ru = sets.find(src_[a]), rv = sets.find(dst_[a]);
    if (ru == rv) continue;
    sets.up[ru] = rv;
    flow_[a] = flow0[a];
    rem[src_[a]] -= flow0[a];
    rem[dst_[a]] += flow0[a];
    tree.push_back(a);
  }
  const double tol = supply_tol();  // the flows may miss the supplies by rounding (e.g. a prolonged plan)
  for (double r : rem)
    if (!(std::fabs(r) <= tol)) {
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

bool FlowSimplex::init_from_basis(const i64 *basis, const double *pi0) {
  std::vector<int> par(n_ + 1, -1), order;
  for (int v = 0; v < n_; ++v) {
    const i64 b = basis[v];
    if (b >= 0 && b < m_ && (src_[b] == v) != (dst_[b] == v)) par[v] = src_[b] == v ? dst_[b] : src_[b];
    else if (b == -1 || b == -2) par[v] = R_;
    else return false;
  }
  if (!monge::flow::preorder_from_parents(par.data(), n_ + 1, order)) return false;
  const double tol = supply_tol();
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
    } else {  // R -> v whichever way the arc pointed: a zero-flow arc pointing up (v -> R) would let a later cycle
              // route flow through R, from one component to another, at the artificial arcs' arbitrary costs
      const i64 a = m_ + v;
      cost_[a] = 0.0;
      src_[a] = R_, dst_[a] = v;
      set_parent(v, R_, a, false, 0.0);
    }
  }
  finish_init();
  if (pi0) offset_components(pi0);
  return true;
}

void FlowSimplex::offset_components(const double *pi0) {
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

void FlowSimplex::init_greedy(const double *pi0, double art_cost) {
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

void FlowSimplex::link(int c, int p) {
  parent_[c] = p;
  nsib_[c] = fchild_[p];
  fchild_[p] = c;
}

void FlowSimplex::set_parent(int x, int p, i64 arc, bool up, double f) {
  in_tree_[arc] = 1;
  pred_[x] = arc;
  up_[x] = up;
  flow_[arc] = f;
  link(x, p);
}

void FlowSimplex::hang(int v, double r) {
  const i64 a = m_ + v;
  cost_[a] = art_;
  if (r > 0.0) src_[a] = v, dst_[a] = R_, set_parent(v, R_, a, true, r);
  else src_[a] = R_, dst_[a] = v, set_parent(v, R_, a, false, -r);
}

void FlowSimplex::build_forest(const std::vector<i64> &tree, const std::vector<double> &rem, std::vector<int> &roots) {
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

double FlowSimplex::supply_tol() const {
  double mass = 0.0;
  for (double s : supply_) mass += s > 0.0 ? s : 0.0;
  return 1e-12 * std::max(smax_, mass);
}

void FlowSimplex::finish_init() {
  std::vector<int> order;
  preorder(order);
  thread_from_preorder(order);
  std::vector<int>().swap(fchild_);
  std::vector<int>().swap(nsib_);
  compute_potentials();
}

void FlowSimplex::preorder(std::vector<int> &order) {
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

}  // namespace monge::mcf

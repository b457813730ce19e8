// The initial bases of the dense transport simplex (network_simplex_solver.hpp): the cost shortlists, the greedy
// row-minimum basis, the tree of a forest, and the warm start from a given spanning tree.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "network_simplex_solver.hpp"

namespace monge::ns {

void TransportSimplex::build_shortlists() {
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

std::vector<TransportSimplex::Alloc> TransportSimplex::greedy_basis() const {
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

void TransportSimplex::init_tree(const std::vector<Alloc> &arcs) {
  parent_.assign(N_, -1);
  thread_.assign(N_, R_);
  rev_thread_.assign(N_, R_);
  succ_.assign(N_, 1);
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

bool TransportSimplex::init_tree_from(const int *par) {
  parent_.assign(N_, -1);
  for (int u = 0; u < R_; ++u) {
    const int p = par[u];
    if (p < 0 || p > R_ || p == u || (p != R_ && (u < n_) == (p < n_))) return false;
    parent_[u] = p;
  }
  std::vector<int> order;
  if (!monge::flow::preorder_from_parents(parent_.data(), N_, order)) return false;  // some nodes not below R
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
  succ_.assign(N_, 1);
  last_succ_.assign(N_, R_);
  pi_.assign(N_, 0.0);
  finish_tree(order);
  return true;
}

}  // namespace monge::ns

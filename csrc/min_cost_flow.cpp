// Exact uncapacitated min-cost flow by the primal network simplex on an explicit (sparse) arc list: the end of a
// solve (the potentials rebased after a big-M start, the exact tree solves) and the Python bindings. What it solves,
// its basis, pricing and pivots are described in min_cost_flow_solver.hpp; its initial bases are in
// min_cost_flow_init.cpp and min_cost_flow_graph_init.cpp.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "bind_util.hpp"
#include "min_cost_flow_solver.hpp"

namespace nb = nanobind;

namespace monge::mcf {

bool FlowSimplex::rebase_potentials() {
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

double FlowSimplex::finalize(double *flow_out, double *u_out) {
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

}  // namespace monge::mcf

namespace {

using monge::mcf::FlowSimplex;
using monge::mcf::i64;

using monge::to_numpy;

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

// The spanning tree of a primal network simplex and its pivot update: one implementation for the dense transport
// simplex (network_simplex_solver.hpp) and the min-cost flow on an arc list (min_cost_flow_solver.hpp); and the
// preorder of a tree given by its parents, with which both check a basis given to them.
//
// Layout (Barr-Glover-Klingman, as in Kovacs, "Minimum-cost flow algorithms: an experimental evaluation", 2015):
// per node its parent, the preorder thread and reverse thread, the subtree size (succ) and the last node of its
// subtree in thread order (last_succ). Nothing is stored per arc here: what the tree arc of a node is (an arc
// index, a direction, a flow) belongs to the solver, which hears of every move through a callback.
//
// A pivot replaces the tree arc of u_out (the leaving arc, between u_out and its parent) by the entering arc
// (u_in, v_in), u_in on u_out's side of the cut: the stem u_in .. u_out is reversed, the subtree of u_out is
// re-hung below v_in, and the thread is re-spliced: O(stem + depth). Potentials then shift on the smaller side
// of the cut, a contiguous walk along the thread: O(min(subtree, rest)).
#pragma once

#include <cstdint>
#include <vector>

namespace monge::flow {

class FlowTree {
 protected:
  // y follows x in the thread
  void tlink(int x, int y) {
    thread_[x] = y;
    rev_thread_[y] = x;
  }

  // The join node (lowest common ancestor) of u and v: climb from the smaller subtree (an ancestor's is strictly
  // larger). steps counts the climbs.
  int join_node(int u, int v, std::int64_t &steps) const {
    while (u != v) {
      ++steps;
      if (succ_[u] < succ_[v])
        u = parent_[u];
      else
        v = parent_[v];
    }
    return u;
  }

  // Thread, reverse thread, subtree sizes and last successors from a preorder of all nodes (the root first, every
  // subtree contiguous, as a stack DFS gives) and the parents.
  void thread_from_preorder(const std::vector<int> &order) {
    const int N = int(order.size());
    std::vector<int> at(N);
    for (int k = 0; k < N; ++k) {
      tlink(order[k], order[(k + 1) % N]);
      at[order[k]] = k;
      succ_[order[k]] = 1;
    }
    for (int k = N - 1; k > 0; --k) succ_[parent_[order[k]]] += succ_[order[k]];
    for (int x = 0; x < N; ++x) last_succ_[x] = order[at[x] + succ_[x] - 1];
  }

  // Replaces the tree arc of u_out by the entering arc (u_in, v_in) (join: their join node): the stem u_in ..
  // u_out is reversed and the subtree of u_out re-hung below v_in. Updates parent, thread, rev_thread, succ and
  // last_succ. move_pred(w, p) is called for every node w of the stem from u_out down to u_in (excluded), p being
  // w's old child on the stem and now its parent: w takes over p's old tree arc (w's arc to its new parent p).
  // The caller then gives u_in the entering arc.
  template <class MovePred>
  void update_tree(int u_in, int v_in, int u_out, int join, MovePred &&move_pred) {
    const int v_out = parent_[u_out];
    const int old_rev = rev_thread_[u_out];
    const int old_num = succ_[u_out];
    const int old_last = last_succ_[u_out];
    if (u_in == u_out) {
      // Only u_in changes parent: move its thread block to right after v_in.
      parent_[u_in] = v_in;
      if (thread_[v_in] != u_out) {
        const int after_block = thread_[old_last];
        tlink(old_rev, after_block);
        const int after_v = thread_[v_in];
        tlink(v_in, u_out);
        tlink(old_last, after_v);
      }
    } else {
      reverse_stem(u_in, v_in, u_out, old_rev, old_last);
      // Walk the stem down from u_out (parents now point down the stem): each node takes the tree arc of its old
      // child on the stem, and new subtree sizes are accumulated.
      int acc = 0;
      const int ls = last_succ_[u_out];
      for (int w = u_out, p = parent_[w]; w != u_in; w = p, p = parent_[w]) {
        move_pred(w, p);
        acc += succ_[w] - succ_[p];
        succ_[w] = acc;
        last_succ_[p] = ls;
      }
      succ_[u_in] = old_num;
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
    for (int w = v_in; w != join; w = parent_[w]) succ_[w] += old_num;
    for (int w = v_out; w != join; w = parent_[w]) succ_[w] -= old_num;
  }

  // pi += sigma on the subtree of u_in, or (equivalently, up to a constant) pi -= sigma on the rest of the tree,
  // whichever is smaller; total: the number of nodes (with the root).
  void shift_potentials(int u_in, double sigma, int total, double *pi) const {
    const int end = thread_[last_succ_[u_in]];
    if (2 * succ_[u_in] <= total) {
      for (int w = u_in; w != end; w = thread_[w]) pi[w] += sigma;
    } else {
      for (int w = end; w != u_in; w = thread_[w]) pi[w] -= sigma;
    }
  }

  std::vector<int> parent_, thread_, rev_thread_, succ_, last_succ_;

 private:
  // Thread and parent update for the stem reversal (u_in != u_out). Each stem node, with its subtree minus the
  // next stem node's, is cut out of the thread and appended after the previous stem node's block.
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
      tlink(rev_thread_[stem], after);
      parent_[stem] = par_stem;
      par_stem = stem;
      stem = next_stem;
      last = last_succ_[stem] == last_succ_[par_stem] ? rev_thread_[par_stem] : last_succ_[stem];
      after = thread_[last];
    }
    parent_[u_out] = par_stem;
    tlink(last, thread_continue);
    last_succ_[u_out] = last;
    if (old_rev != v_in) tlink(old_rev, after);
    for (int w : dirty_) rev_thread_[thread_[w]] = w;
  }

  std::vector<int> dirty_;
};

// The preorder (root first, every subtree contiguous: a stack DFS, children in node order) of the tree given by the
// parents par[v] in [0, N) of the nodes v < N - 1 below the root N - 1. False when some node is not below the root
// (par has a cycle); order is then partial.
inline bool preorder_from_parents(const int *par, int N, std::vector<int> &order) {
  const int root = N - 1;
  std::vector<int> head(N + 1, 0), kids(N - 1);
  for (int v = 0; v < root; ++v) ++head[par[v] + 1];
  for (int v = 0; v < N; ++v) head[v + 1] += head[v];
  std::vector<int> pos(head.begin(), head.end() - 1), stack{root};
  for (int v = 0; v < root; ++v) kids[pos[par[v]]++] = v;
  order.clear();
  order.reserve(N);
  while (!stack.empty()) {
    const int x = stack.back();
    stack.pop_back();
    order.push_back(x);
    for (int k = head[x]; k < head[x + 1]; ++k) stack.push_back(kids[k]);
  }
  return int(order.size()) == N;
}

}  // namespace monge::flow

r"""W1 on a graph as an exact min-cost flow (C++ core in ``csrc/min_cost_flow.cpp``).

.. math::
    W_1(a, b) = \min_{F} \sum_e \ell_e |F_e| \quad \text{s.t.} \quad \mathrm{div} F = a - b
    = \max_{|u_i - u_j| \le \ell_{ij}} \langle a - b, u\rangle

(Beckmann's problem / transshipment; the ground metric is the graph's shortest-path distance). The network
simplex works on the graph itself: an undirected edge is two opposite arcs, never the dense n x n problem. Its
first basis: coarse to fine on 4-neighbour grids; on other large undirected graphs the support of an eps-optimal
flow from cost scaling (push-relabel), so the simplex only finishes the job and certifies it.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

from ... import _core
from ...results import Convergence, GraphW1Result

__all__ = ["w1_graph", "grid_graph"]


def grid_graph(shape, stencil: int = 4, spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    r"""Edges and lengths of a regular grid, cells numbered in row-major (C) order.

    ``stencil=4`` joins the axis neighbours (2d neighbours in d dimensions): the shortest-path metric is the
    L1 distance, so :func:`w1_graph` on it is the exact W1 with the L1 ground cost. ``stencil=8`` (2-D only)
    adds the diagonals with length :math:`\sqrt 2` (a near-Euclidean metric).

    Returns:
        ``edges (E, 2)`` int64 and ``lengths (E,)`` float64.

    Example:
        >>> e, l = grid_graph((2, 3))
        >>> e.shape, float(l.sum())
        ((7, 2), 7.0)
    """
    shape = tuple(int(s) for s in (shape if hasattr(shape, "__len__") else (shape,)))
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"shape: expected a tuple of positive ints, got {shape!r}")
    if stencil not in (4, 8) or (stencil == 8 and len(shape) != 2):
        raise ValueError(f"stencil: expected 4 (axis neighbours) or 8 (2-D grids only), got {stencil!r} for "
                         f"a {len(shape)}-D grid")
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    parts, lens = [], []
    for ax in range(len(shape)):
        lo = idx[tuple(slice(0, -1) if k == ax else slice(None) for k in range(len(shape)))]
        hi = idx[tuple(slice(1, None) if k == ax else slice(None) for k in range(len(shape)))]
        parts.append(np.stack([lo.ravel(), hi.ravel()], 1))
        lens.append(np.full(lo.size, float(spacing)))
    if stencil == 8:
        for lo, hi in ((idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1])):
            parts.append(np.stack([lo.ravel(), hi.ravel()], 1))
            lens.append(np.full(lo.size, float(spacing) * np.sqrt(2.0)))
    return np.concatenate(parts).astype(np.int64), np.concatenate(lens)


def _edges_from(edges, lengths):
    """``(E, 2)`` int64 edges and ``(E,)`` float64 lengths from an edge list or a scipy sparse adjacency."""
    if hasattr(edges, "tocoo"):  # scipy sparse matrix: entry (i, j) = length of i -> j
        if lengths is not None:
            raise ValueError("lengths: must be None when edges is a sparse adjacency matrix (its entries are the "
                             "lengths)")
        coo = edges.tocoo()
        if coo.shape[0] != coo.shape[1]:
            raise ValueError(f"edges: expected a square (n, n) sparse adjacency matrix, got shape {coo.shape}")
        e = np.stack([coo.row, coo.col], 1).astype(np.int64)
        return e, np.asarray(coo.data, np.float64), coo.shape[0]
    if isinstance(edges, torch.Tensor):
        edges = edges.detach().cpu().numpy()
    e = np.asarray(edges)
    if e.ndim != 2 or e.shape[1] != 2 or not np.issubdtype(e.dtype, np.integer):
        raise ValueError(f"edges: expected an integer array (E, 2) of node pairs or a scipy sparse matrix, got "
                         f"{'dtype ' + str(e.dtype) + ' ' if e.ndim == 2 else ''}shape {e.shape}")
    if lengths is None:
        raise ValueError("lengths: expected (E,) nonnegative edge lengths, got None (pass np.ones(E) for hop "
                         "counts)")
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.detach().cpu().numpy()
    ln = np.asarray(lengths, np.float64)
    if ln.shape != (e.shape[0],):
        raise ValueError(f"lengths: expected shape (E,) = ({e.shape[0]},), got {ln.shape}")
    return e.astype(np.int64), ln, None


def _weights(a, b, n):
    like = a if isinstance(a, torch.Tensor) else b if isinstance(b, torch.Tensor) else None
    out = []
    for w, name in ((a, "a"), (b, "b")):
        w64 = np.asarray(w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else w, np.float64)
        if w64.ndim != 1 or (n is not None and w64.shape[0] != n):
            raise ValueError(f"{name}: expected node weights of shape (n,){f' = ({n},)' if n else ''}, got "
                             f"{w64.shape}")
        if not np.all(np.isfinite(w64)) or (w64 < 0).any():
            raise ValueError(f"{name}: expected finite nonnegative weights; got min {w64.min()}")
        out.append(w64)
    if out[0].shape != out[1].shape:
        raise ValueError(f"a, b: expected the same number of nodes, got {out[0].shape[0]} and {out[1].shape[0]}")
    sa, sb = out[0].sum(), out[1].sum()
    if not abs(sa - sb) <= 1e-8 * max(sa, sb):
        raise ValueError(f"a, b: W1 needs equal masses, got sum(a) = {sa:.6g}, sum(b) = {sb:.6g}; normalise both")
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
    device = like.device if like is not None else torch.device("cpu")
    return out[0], out[1] * (sa / sb if sb > 0 else 1.0), dtype, device


def w1_graph(edges, lengths=None, a=None, b=None, *, directed: bool = False, max_iter: int | None = None
             ) -> GraphW1Result:
    r"""Exact W1 between node weights on a graph, by the network simplex on the graph itself.

    .. math::
        \min_{F} \sum_e \ell_e |F_e| \ \text{s.t.}\ \mathrm{div} F = a - b
        \;=\; \max_{u_i - u_j \le \ell_{ij}} \langle a - b, u\rangle

    Args:
        edges: ``(E, 2)`` int node pairs, or a scipy sparse ``(n, n)`` matrix whose entry ``(i, j)`` is the
            length of the edge ``i -> j`` (then ``lengths=None``).
        lengths: ``(E,)`` nonnegative edge lengths (cost units).
        a, b: ``(n,)`` nonnegative node weights of equal mass (numpy or torch; results follow a's dtype/device).
        directed: False: every edge can carry flow both ways (:math:`|u_i - u_j| \le \ell_e`); True: only
            ``edges[e, 0] -> edges[e, 1]`` (a problem without a feasible flow reports status ``"infeasible"``).
        max_iter: cap on pivots (None: none; an exact solver must not stop early).

    Returns:
        :class:`~monge.results.GraphW1Result` (value, edge flows, potential, convergence with the duality gap).

    Example:
        >>> import numpy as np
        >>> e = np.array([[0, 1], [1, 2]]); l = np.array([1.0, 2.0])
        >>> res = w1_graph(e, l, np.array([1.0, 0, 0]), np.array([0, 0, 1.0]))
        >>> float(res.value), res.flow.tolist(), res.convergence.status
        (3.0, [1.0, 1.0], ('converged',))
    """
    e, ln, n_sparse = _edges_from(edges, lengths)
    if a is None or b is None:
        raise ValueError("a, b: expected node weights (n,), got None")
    a64, b64, dtype, device = _weights(a, b, n_sparse)
    n = a64.shape[0]
    if e.size and (e.min() < 0 or e.max() >= n):
        raise ValueError(f"edges: node ids must lie in [0, n) = [0, {n}), got range [{e.min()}, {e.max()}]")
    if not np.all(np.isfinite(ln)) or (ln < 0).any():
        raise ValueError("lengths: expected finite nonnegative lengths (a negative cycle would make W1 unbounded)")
    if max_iter is not None and (not isinstance(max_iter, int) or max_iter < 1):
        raise ValueError(f"max_iter: expected a positive int or None, got {max_iter!r}")
    s = a64 - b64
    shape = None if directed or max_iter else _grid_shape(e, ln, n)
    if shape is not None:  # a 4-neighbour grid: coarse-to-fine warm start (the result is the same optimum)
        fl, u, status, iters, art = _grid_solve(*shape, s, float(ln[0]))
        return _pack(fl, u, iters, art, e, ln, s, directed, dtype, device)
    if directed:
        src, dst, cost, init = e[:, 0].copy(), e[:, 1].copy(), ln, 0
    else:  # large graphs: the cost-scaling start (init 3); small ones: the shortest-path-tree start (init 2)
        src, dst = np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]]
        cost, init = np.r_[ln, ln], 3 if n >= _COST_SCALING_MIN else 2
    prio = _spt_prio(e, ln, n) if init == 2 else np.zeros(0)
    flow, u, status, iters, art, _ = _core.min_cost_flow(src, dst, cost, s, prio, init, 0.0, max_iter or 0,
                                                          np.zeros(0))
    E = e.shape[0]
    fl = flow if directed else flow[:E] - flow[E:]
    return _pack(fl, u, iters, art, e, ln, s, directed, dtype, device)


def _spt_prio(e, ln, n):
    """Edge priorities for the initial basis of a general undirected graph: 1 on a shortest-path tree from the
    node of largest degree (flows of W1 travel along shortest paths; halves the pivots on random graphs), 0
    elsewhere (the core completes the tree by BFS, e.g. for other components)."""
    E = e.shape[0]
    prio = np.zeros(E)
    keep = np.flatnonzero(e[:, 0] != e[:, 1])
    if keep.size == 0:
        return prio
    lo, hi = np.minimum(e[keep, 0], e[keep, 1]), np.maximum(e[keep, 0], e[keep, 1])
    order = np.lexsort((ln[keep], hi, lo))  # per node pair, the shortest parallel edge first
    key = lo[order] * n + hi[order]
    first = np.r_[True, key[1:] != key[:-1]]
    key, idx = key[first], keep[order[first]]
    w = np.maximum(ln[idx], 1e-300)  # scipy drops explicit zeros
    A = sp.csr_matrix((w, (e[idx].min(1), e[idx].max(1))), shape=(n, n))
    root = int(np.argmax(np.bincount(e[keep].ravel(), minlength=n)))
    _, pred = dijkstra(A, directed=False, indices=root, return_predecessors=True)
    v = np.flatnonzero(pred >= 0)
    kv = np.minimum(v, pred[v]) * n + np.maximum(v, pred[v])
    prio[idx[np.searchsorted(key, kv)]] = 1.0
    return prio


#: general undirected graphs from this many nodes start the simplex from a cost-scaling eps-optimal flow (init 3
#: of the core): random graph 10^4 nodes / 10^5 edges, 99k pivots (init 2) -> ~100 pivots after cost scaling;
#: 10^5 / 10^6 did not finish in 240 s from init 2.
_COST_SCALING_MIN = 2000

_COARSEST = 64 * 64  # grids up to this many cells are solved from the plain BFS basis


def _grid_shape(e, ln, n):
    """``(H, W)`` when ``e`` is exactly ``grid_graph((H, W))`` with equal lengths, else None."""
    E = e.shape[0]
    if n <= _COARSEST or E == 0 or ln.min() != ln.max():
        return None
    p = 2 * n - E  # = H + W, since E = (H - 1) W + H (W - 1) and H W = n
    disc = p * p - 4 * n
    if p <= 0 or disc < 0 or math.isqrt(disc) ** 2 != disc:
        return None
    for H in {(p + math.isqrt(disc)) // 2, (p - math.isqrt(disc)) // 2}:
        if H >= 2 and n % H == 0 and np.array_equal(e, grid_graph((H, n // H))[0]):
            return H, n // H
    return None


def _grid_solve(H, W, s, length):
    r"""Exact W1 on the (H, W) 4-neighbour grid, coarse to fine: the problem with 2x2 cells summed is solved
    first (recursively) and its optimal flow, prolonged to the fine edges that cross the coarse edges,
    selects the initial spanning tree (``init=2`` of the core), which cuts the pivots ~7x on smooth images.
    Only the starting basis changes: the fine solve is the same exact network simplex.
    Returns (edge flow (E,), u, status, pivots of all levels, artificial flow)."""
    e, _ = grid_graph((H, W))
    E = e.shape[0]
    prio, init, total = np.zeros(0), 1, 0
    if H % 2 == 0 and W % 2 == 0 and H * W > _COARSEST:
        h, w = H // 2, W // 2
        fc, _, _, it_c, _ = _grid_solve(h, w, s.reshape(h, 2, w, 2).sum((1, 3)).ravel(), length)
        F = np.abs(fc)
        pv, ph = np.full((H - 1, W), 1e-300), np.full((H, W - 1), 1e-300)  # block-internal edges: after those
        pv[1::2] = np.repeat(F[: (h - 1) * w].reshape(h - 1, w), 2, axis=1)  # crossing a coarse edge
        ph[:, 1::2] = np.repeat(F[(h - 1) * w:].reshape(h, w - 1), 2, axis=0)
        prio, init, total = np.r_[pv.ravel(), ph.ravel()], 2, it_c
    flow, u, status, iters, art, _ = _core.min_cost_flow(np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]],
                                                          np.full(2 * E, length), s, prio, init, 0.0, 0,
                                                          np.zeros(0))
    return flow[:E] - flow[E:], u, status, total + iters, art


def _pack(fl, u, iters, art, e, ln, s, directed, dtype, device) -> GraphW1Result:
    """Certificate measured on the returned flow and potential."""
    value = float(np.dot(ln, np.abs(fl)))
    u = u - u.min() if u.size else u  # the potential is defined up to a constant
    du = u[e[:, 0]] - u[e[:, 1]]
    viol = du - ln if directed else np.abs(du) - ln
    lip = float(max(0.0, viol.max())) if viol.size else 0.0
    gap = value - float(np.dot(s, u))
    n = s.shape[0]
    div = np.bincount(e[:, 0], fl, n) - np.bincount(e[:, 1], fl, n)
    div_err = float(np.abs(div - s).sum())
    scale = max(float(ln.max()) if ln.size else 1.0, 1e-300)
    mass = max(float(np.abs(s).sum()), 1e-300)
    t = lambda x, dt=dtype: torch.as_tensor(x, dtype=dt, device=device)  # noqa: E731
    # the certificate decides: a feasible flow and a potential within tol of 1-Lipschitz, tight on the flow
    conv = Convergence.build(t(lip), 1e-9 * scale, int(iters), criterion="lipschitz_violation", duality_gap=t(gap))
    if art > 1e-9 * mass:  # flow left on the artificial arcs: no feasible flow (directed graphs)
        conv = Convergence(converged=conv.converged & False, n_iters=conv.n_iters, status=("infeasible",),
                           error=conv.error, criterion=conv.criterion, duality_gap=conv.duality_gap)
    return GraphW1Result(value=t(value), flow=t(fl), potential=t(u), convergence=conv,
                         divergence_error=t(div_err))

r"""Exact OT on a sparse arc set, with a warm start from potentials (C++ core in ``csrc/min_cost_flow.cpp``).

.. math::
    \min_{P \ge 0,\ P 1 = a,\ P^\top 1 = b,\ P_{ij} = 0 \text{ off the listed arcs}} \sum_{(i,j)} P_{ij} C_{ij}
    = \max_{f_i + g_j \le C_{ij} \text{ on the listed arcs}} \langle a, f\rangle + \langle b, g\rangle

Only the listed entries of a sparse cost exist (an explicit zero is an arc of cost 0). The network simplex runs
on the bipartite arc list; a warm start ``init=(f, g)`` orders the greedy initial basis by the reduced costs
:math:`C_{ij} - f_i - g_j`, so near-optimal potentials give a near-optimal first basis.
"""

from __future__ import annotations

import numpy as np
import torch

from ... import _core
from ...results import Convergence, ExactResult

__all__ = ["solve_sparse", "sparse_arcs", "is_sparse_cost", "solve_arcs"]


def is_sparse_cost(C) -> bool:
    """True for a torch sparse tensor or a scipy sparse matrix."""
    return (isinstance(C, torch.Tensor) and C.layout != torch.strided) or hasattr(C, "tocoo")


def sparse_arcs(C):
    """``(rows, cols, costs, (n, m), like)`` of a 2-D torch sparse tensor or scipy sparse matrix."""
    if isinstance(C, torch.Tensor):
        if C.dim() != 2:
            raise ValueError(f"C: expected a sparse (n, m) cost matrix, got shape {tuple(C.shape)} (no batches)")
        coo = C.detach().to_sparse_coo().coalesce().cpu()
        idx = coo.indices().numpy()
        return (idx[0].astype(np.int64), idx[1].astype(np.int64), coo.values().double().numpy(), tuple(C.shape), C)
    coo = C.tocoo()
    coo.sum_duplicates()
    return (coo.row.astype(np.int64), coo.col.astype(np.int64), np.asarray(coo.data, np.float64), coo.shape, None)


def _weights(w, k, name, like):
    if w is None:
        return np.full(k, 1.0 / k)
    w = np.asarray(w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor) else w, np.float64)
    if w.shape != (k,) or not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError(f"{name}: expected finite nonnegative weights of shape ({k},), got shape {w.shape}")
    return w


def solve_sparse(C, a=None, b=None, *, init=None, max_iter: int | None = None) -> ExactResult:
    r"""Exact OT where only the listed arcs of a sparse cost exist; optional warm start from potentials.

    Args:
        C: ``(n, m)`` torch sparse tensor (COO/CSR) or scipy sparse matrix; its entries are the arcs.
        a, b: ``(n,)``, ``(m,)`` nonnegative weights of equal mass (``None``: uniform).
        init: ``(f, g)`` potentials ``(n,)``, ``(m,)`` (e.g. of a nearby problem or a coarser scale).
        max_iter: pivot cap (None: none).

    Returns:
        :class:`~monge.results.ExactResult` (plan as sparse triplets, potentials feasible on the listed arcs,
        duality gap). Marginals that the arcs cannot carry give status ``"infeasible"``.

    Example:
        >>> import torch
        >>> C = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).to_sparse()  # the zeros on the diagonal are not arcs
        >>> res = solve_sparse(C)
        >>> float(res.value), res.convergence.status
        (1.0, ('converged',))
    """
    rows, cols, costs, (n, m), like = sparse_arcs(C)
    if not np.all(np.isfinite(costs)):
        raise ValueError("C: expected finite costs on the listed arcs")
    a64, b64 = _weights(a, n, "a", like), _weights(b, m, "b", like)
    sa, sb = a64.sum(), b64.sum()
    if not abs(sa - sb) <= 1e-8 * max(sa, sb):
        raise ValueError(f"a, b: expected equal masses, got {sa:.6g} and {sb:.6g}; normalise both")
    b64 = b64 * (sa / sb) if sb > 0 else b64
    if max_iter is not None and (not isinstance(max_iter, int) or max_iter < 1):
        raise ValueError(f"max_iter: expected a positive int or None, got {max_iter!r}")
    f0 = g0 = None
    if init is not None:
        f0, g0 = (np.asarray(v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else v, np.float64)
                  for v in init)
        if f0.shape != (n,) or g0.shape != (m,):
            raise ValueError(f"init: expected potentials (f (n,), g (m,)) = (({n},), ({m},)), got {f0.shape}, "
                             f"{g0.shape}")
    out = solve_arcs(rows, cols, costs, a64, b64, f0, g0, max_iter)
    ref = like if like is not None and like.is_floating_point() else None
    return pack_sparse(out, a64, b64, (n, m), ref)


def solve_arcs(rows, cols, costs, a64, b64, f0=None, g0=None, max_iter=None, flow0=None, art_cost=0.0):
    """Core call: ``(P rows, P cols, P vals, f, g, value, status, pivots, artificial flow, pricing tol)``.

    Warm starts: ``f0, g0`` order the greedy basis by reduced costs; ``flow0`` (per arc) is a feasible plan on
    these arcs whose positive arcs become the first basis (falls back to the greedy one if infeasible).
    ``art_cost``: cost of the artificial arcs that carry what the greedy basis leaves (0: the safe big-M
    ~ n max|C|, which costs digits: the pricing tolerance grows with it; a smaller one may end with artificial
    flow on a feasible problem, which the caller sees in the artificial flow and can retry)."""
    n, m = a64.shape[0], b64.shape[0]
    pi0 = np.zeros(0) if f0 is None else np.r_[-f0, g0]
    flow, u, status, iters, art, tol = _core.min_cost_flow(rows, n + cols, costs, np.r_[a64, -b64], pi0, 0,
                                                           float(art_cost), max_iter or 0,
                                                           np.zeros(0) if flow0 is None else flow0)
    keep = flow > 0
    value = float(np.dot(flow[keep], costs[keep]))
    f, g = u[:n], -u[n:]
    shift = 0.5 * (np.dot(a64, f) / max(a64.sum(), 1e-300) - np.dot(b64, g) / max(b64.sum(), 1e-300))
    return rows[keep], cols[keep], flow[keep], f - shift, g + shift, value, status, iters, art, tol


def pack_sparse(out, a64, b64, shape, like=None, levels=()) -> ExactResult:
    """ExactResult with the certificate measured on the returned plan and potentials."""
    pr, pc, pv, f, g, value, status, iters, art = out[:9]
    n, m = shape
    merr = np.abs(np.bincount(pr, pv, n) - a64).sum() + np.abs(np.bincount(pc, pv, m) - b64).sum()
    gap = value - float(np.dot(a64, f)) - float(np.dot(b64, g))
    dtype = like.dtype if like is not None else torch.float64
    t = lambda x, dt=dtype: torch.as_tensor(np.asarray(x), dtype=dt)  # noqa: E731
    conv = Convergence.build(t(merr), 1e-9 * max(a64.sum(), 1e-300), int(iters), duality_gap=t(gap),
                             levels=levels)
    if art > 1e-9 * max(a64.sum(), 1e-300) or status != 0:
        conv = Convergence(converged=conv.converged & False, n_iters=conv.n_iters,
                           status=("infeasible" if art > 0 and status == 0 else "max_iter",), error=conv.error,
                           criterion=conv.criterion, duality_gap=conv.duality_gap, levels=conv.levels)
    # the plan's positive entries only (at most n + m - 1: a basic solution), no padding entries
    return ExactResult(value=t(value), f=t(f), g=t(g), convergence=conv, rows=t(pr.astype(np.int64), torch.int64),
                       cols=t(pc.astype(np.int64), torch.int64), vals=t(pv.astype(np.float64)), shape=(n, m))

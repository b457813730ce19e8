r"""Exact OT between point clouds, coarse to fine, without a dense cost (sparse network simplex + certificate).

.. math::
    \min_{P \in \Pi(a, b)} \sum_{ij} P_{ij} \|x_i - y_j\|^p

A hierarchy of dyadic cells (level k: the cells of side 2^-k of the joint bounding box) clusters both clouds.
The coarsest problem is solved on all its arcs; each finer level solves on the children of the previous level's
active arcs (a feasible arc set: the coarse plan splits proportionally over them), warm-started from the coarse
potentials. On the points themselves the loop adds back every arc whose reduced cost
:math:`C_{ij} - f_i - g_j` is negative, found by a scan (compiled, row-parallel) that never stores the cost, and re-solves until
there is none: then :math:`f_i + g_j \le C_{ij}` everywhere, the plan is feasible and the duality gap is zero,
i.e. the result is the exact optimum (a certificate, not an approximation). Memory O((n + m) k).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ... import _core

from ...results import Convergence, ExactResult
from .sparse import _weights, pack_sparse, solve_arcs

__all__ = ["multiscale_ot", "solve_points_multiscale", "solve_grid_exact"]


def _cells(z, k, lo, span):
    """Integer cell keys of the points ``z`` at level k (cells of side span / 2^k)."""
    q = np.minimum(((z - lo) / span * (1 << k)).astype(np.int64), (1 << k) - 1)
    key = np.zeros(len(z), np.int64)
    for c in range(z.shape[1]):
        key = (key << k) | q[:, c]
    return key


def _hierarchy(z, w, lo, span, levels):
    """Per level: (cluster id of every point, cluster masses, cluster centres)."""
    out = []
    for k in levels:
        keys, ids = np.unique(_cells(z, k, lo, span), return_inverse=True)
        mass = np.bincount(ids, w, len(keys))
        wc = np.bincount(ids, np.ones(len(z)), len(keys))  # unweighted centres: zero-mass cells have a place too
        ctr = np.stack([np.bincount(ids, z[:, c], len(keys)) for c in range(z.shape[1])], 1) / wc[:, None]
        out.append((ids, mass, ctr, keys))
    out.append((np.arange(len(z)), w, z, None))  # the points themselves
    return out


def _cost(x, y, rows, cols, p):
    d = np.sqrt(((x[rows] - y[cols]) ** 2).sum(-1)) if p != 2 else None
    return ((x[rows] - y[cols]) ** 2).sum(-1) if p == 2 else d**p


def _dilate(act_r, act_c, keys, k, d):
    """Active arcs (I, J) -> (I, J') for every existing cell J' adjacent to J (3^d neighbourhood, J included)."""
    mask = (1 << k) - 1
    q = np.stack([(keys[act_c] >> (k * (d - 1 - c))) & mask for c in range(d)], 1)
    rows, cols = [], []
    for off in np.array(np.meshgrid(*[[-1, 0, 1]] * d, indexing="ij")).reshape(d, -1).T:
        qn = q + off
        ok = ((qn >= 0) & (qn <= mask)).all(1)
        kn = np.zeros(len(qn), np.int64)
        for c in range(d):
            kn = (kn << k) | np.where(ok, qn[:, c], 0)
        pos = np.minimum(np.searchsorted(keys, kn), len(keys) - 1)
        ok &= keys[pos] == kn
        rows.append(act_r[ok])
        cols.append(pos[ok])
    pairs = np.unique(np.concatenate(rows) * len(keys) + np.concatenate(cols))
    return pairs // len(keys), pairs % len(keys)


def _children_arcs(parent_x, parent_y, act_r, act_c):
    """All pairs (i, j) whose parents form an active coarse arc (act_r[k], act_c[k])."""
    ox, oy = np.argsort(parent_x, kind="stable"), np.argsort(parent_y, kind="stable")
    sx = np.searchsorted(parent_x[ox], np.arange(parent_x.max() + 2))
    sy = np.searchsorted(parent_y[oy], np.arange(parent_y.max() + 2))
    nx, ny = sx[act_r + 1] - sx[act_r], sy[act_c + 1] - sy[act_c]
    cnt = nx * ny
    arc = np.repeat(np.arange(len(act_r)), cnt)
    k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    rows = ox[sx[act_r][arc] + k // ny[arc]]
    cols = oy[sy[act_c][arc] + k % ny[arc]]
    return rows, cols


def _violations(x, y, f, g, p, tol, per_row):
    """Scan of all reduced costs :math:`C_{ij} - f_i - g_j` in the compiled core (the cost is never stored): the
    ``per_row`` most negative arcs of each row and the most negative of each column below ``-tol``, rechecked
    with the same cost formula as the arcs'."""
    r, c, _, _ = _core.reduced_cost_scan(x, y, f, g, float(p), float(tol), int(per_row), os.cpu_count() or 1)
    exact = _cost(x, y, r, c, p) - f[r] - g[c] < -tol
    return r[exact], c[exact]


def multiscale_ot(x, y, a, b, *, p: float = 2, coarsest: int = 256, per_row: int = 8,
                  max_rounds: int = 100) -> ExactResult:
    r"""Exact OT between point clouds ``x (n, d)``, ``y (m, d)`` for the cost :math:`\|x - y\|^p`, coarse to fine.

    Args:
        x, y: points (torch or numpy); a, b: nonnegative weights of equal mass (None: uniform).
        p: cost power (2: squared Euclidean). coarsest: about how many cells the coarsest level has.
        per_row: violating arcs added back per row and round (plus the worst of each column).
        max_rounds: cap on add-back rounds at the finest level (a capped run reports ``converged=False``).

    Returns:
        :class:`~monge.results.ExactResult` (sparse plan, potentials, duality gap); ``convergence.levels`` holds
        one record per level; ``n_iters`` counts the pivots of the last sparse solve.

    Example:
        >>> import torch
        >>> x = torch.rand(300, 2, dtype=torch.float64); y = torch.rand(200, 2, dtype=torch.float64)
        >>> res = multiscale_ot(x, y, None, None)
        >>> dense = torch.cdist(x, y) ** 2
        >>> import monge
        >>> bool(abs(res.value - monge.solve(dense).value) < 1e-12), res.convergence.status
        (True, ('converged',))
    """
    like = x if isinstance(x, torch.Tensor) else None
    x, y = (np.ascontiguousarray(np.asarray(v.detach().cpu().double() if isinstance(v, torch.Tensor) else v,
                                            np.float64)) for v in (x, y))
    centre = 0.5 * (np.minimum(x.min(0), y.min(0)) + np.maximum(x.max(0), y.max(0)))
    x, y = x - centre, y - centre  # the cost is translation invariant; centring keeps |x|^2 small in the scan
    n, m = len(x), len(y)
    a64, b64 = _weights(a, n, "a", None), _weights(b, m, "b", None)
    if not abs(a64.sum() - b64.sum()) <= 1e-8 * max(a64.sum(), b64.sum()) or a64.sum() <= 0:
        raise ValueError(f"a, b: expected equal positive masses, got {a64.sum():.6g} and {b64.sum():.6g}")
    b64 = b64 * (a64.sum() / b64.sum())
    lo = np.minimum(x.min(0), y.min(0))
    span = max(float((np.maximum(x.max(0), y.max(0)) - lo).max()), 1e-300)
    d = x.shape[1]
    k0 = max(1, int(np.log2(coarsest) / d))
    kf = max(k0, int(np.ceil(np.log2(max(n, m)) / d)))
    levels = list(range(k0, kf + 1))
    hx, hy = _hierarchy(x, a64, lo, span, levels), _hierarchy(y, b64, lo, span, levels)
    records = []
    # coarsest level: every arc
    _, ma, ca, _ = hx[0]
    _, mb, cb, _ = hy[0]
    rows, cols = (v.ravel() for v in np.meshgrid(np.arange(len(ma)), np.arange(len(mb)), indexing="ij"))
    out = solve_arcs(rows, cols, _cost(ca, cb, rows, cols, p), ma, mb)
    records.append((f"level {levels[0]}", out))
    for lev in range(1, len(hx)):
        ids_x_prev, ids_y_prev = hx[lev - 1][0], hy[lev - 1][0]
        par_x = _parent(hx, lev, ids_x_prev)
        par_y = _parent(hy, lev, ids_y_prev)
        pr, pc = _dilate(out[0], out[1], hy[lev - 1][3], levels[lev - 1], d)
        rows, cols = _children_arcs(par_x, par_y, pr, pc)
        _, ma, ca, _ = hx[lev]
        _, mb, cb, _ = hy[lev]
        f0, g0 = out[3][par_x], out[4][par_y]
        out = solve_arcs(rows, cols, _cost(ca, cb, rows, cols, p), ma, mb, f0, g0)
        records.append((f"level {levels[lev]}" if lev < len(levels) else "points", out))
    return _certify(x, y, a64, b64, p, rows, cols, out, records, per_row, max_rounds, like)


def _parent(h, lev, ids_prev):
    """Parent (cluster at level lev - 1) of every cluster at level lev."""
    ids = h[lev][0]
    par = np.empty(ids.max() + 1, np.int64)
    par[ids] = ids_prev
    return par


def _certify(x, y, a64, b64, p, rows, cols, out, records, per_row, max_rounds, like):
    """Add back violating arcs until every reduced cost is nonnegative (the global optimality certificate)."""
    tol = 2 * out[9]  # the pricing tolerance of the last sparse solve (rounding of the recomputed potentials)
    rounds, clean = 0, False
    while rounds < max_rounds:
        vr, vc = _violations(x, y, out[3], out[4], p, tol, per_row)
        if len(vr) == 0:
            clean = True
            break
        keys = np.unique(np.r_[rows * len(y) + cols, vr * len(y) + vc])
        rows, cols = keys // len(y), keys % len(y)
        # warm start from the potentials (the last optimum's basis as flow0 was measured slower: its degenerate
        # potentials led to 2-4x more add-back rounds)
        out = solve_arcs(rows, cols, _cost(x, y, rows, cols, p), a64, b64, out[3], out[4])
        tol = 2 * out[9]
        rounds += 1
    levels = tuple((name, _level_conv(o)) for name, o in records)
    levels += (("certificate", Convergence.build(torch.tensor(0.0 if clean else 1.0), 0.5, rounds,
                                                 criterion="violating_arcs")),)
    res = pack_sparse(out, a64, b64, (len(x), len(y)), like if like is not None and like.is_floating_point()
                      else None, levels=levels)
    return res


def _level_conv(o):
    return Convergence.build(torch.tensor(float(o[8])), 1e-9, int(o[7]), criterion="artificial_flow")


def solve_points_multiscale(x, y, a=None, b=None, *, cost="sqeuclidean", p=None, eps=None, rho=None,
                            max_iter=None, **options) -> ExactResult:
    """``solve_points(..., method="multiscale")``: checks the options, then :func:`multiscale_ot`.

    ``cost``: ``"sqeuclidean"`` (p = 2) or ``"euclidean"`` with power ``p`` (default 1); ``options``: ``coarsest``,
    ``per_row``, ``max_rounds`` of :func:`multiscale_ot`.
    """
    if eps is not None or rho is not None:
        raise ValueError("method: 'multiscale' is an exact solver; drop eps/rho (or drop method for entropic OT)")
    if max_iter is not None:
        raise ValueError("max_iter: not an option of method='multiscale' (use max_rounds for the certificate loop)")
    if cost == "sqeuclidean" and p in (None, 2):
        power = 2.0
    elif cost == "euclidean":
        power = 1.0 if p is None else float(p)
        if not power > 0:
            raise ValueError(f"p: expected a positive power, got {p!r}")
    else:
        raise ValueError(f"cost: method='multiscale' supports 'sqeuclidean' and 'euclidean' (with p), got {cost!r} "
                         f"with p={p!r}")
    unknown = set(options) - {"coarsest", "per_row", "max_rounds"}
    if unknown:
        raise TypeError(f"{', '.join(sorted(unknown))}: not an option of method='multiscale' (coarsest, "
                        "per_row, max_rounds)")
    for name, z in (("x", x), ("y", y)):
        if getattr(z, "ndim", 0) != 2 or z.shape[0] < 1:
            raise ValueError(f"{name}: expected points (n, d) with n >= 1 (no batches with method='multiscale'), "
                             f"got shape {tuple(getattr(z, 'shape', ()))}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x, y: expected the same dimension d, got {x.shape[1]} and {y.shape[1]}")
    return multiscale_ot(x, y, a, b, p=power, **options)


def solve_grid_exact(a, b, *, spacing=None, p: float = 2, rho=None, **options) -> ExactResult:
    r"""Exact OT between two histograms on the same regular grid, cost :math:`\|x - y\|^2` between cell centres.

    ``solve_grid(a, b, eps=None)``: the multiscale solver on the cell coordinates (``spacing`` per axis; ``None``:
    ``1 / n_k``, the grid covers [0, 1)^d), so the N x N cost is never stored. The result is over flattened
    cells (row-major): ``f (N,)``, ``g (N,)``, plan ``(N, N)``. For the L1 cost (p = 1) use
    :func:`monge.solvers.exact.graph.w1_graph` on :func:`~monge.solvers.exact.graph.grid_graph`.

    Example:
        >>> import torch
        >>> a = torch.zeros(8, 8, dtype=torch.float64); a[2, 2] = 1
        >>> b = torch.zeros(8, 8, dtype=torch.float64); b[2, 6] = 1
        >>> float(solve_grid_exact(a, b).value)  # (4/8)^2
        0.25
    """
    if rho is not None:
        raise ValueError("rho: exact grid OT is balanced; drop rho or pass eps for unbalanced entropic OT")
    if p != 2:
        raise ValueError(f"p: exact grid OT supports p = 2 (squared Euclidean), got {p!r}; for p = 1 (L1) use "
                         "monge.solvers.exact.graph.w1_graph on grid_graph(shape)")
    at, bt = (torch.as_tensor(v) for v in (a, b))
    if at.shape != bt.shape or at.dim() < 1:
        raise ValueError(f"a, b: expected two histograms of the same grid shape (n_1, ..., n_d), got "
                         f"{tuple(at.shape)} and {tuple(bt.shape)}")
    shape = tuple(at.shape)
    sp_ = [1.0 / k for k in shape] if spacing is None else (
        [float(s) for s in spacing] if isinstance(spacing, (tuple, list)) else [float(spacing)] * len(shape))
    if len(sp_) != len(shape):
        raise ValueError(f"spacing: expected {len(shape)} cell sizes for a grid of shape {shape}, got {spacing!r}")
    idx = np.stack(np.unravel_index(np.arange(at.numel()), shape), 1).astype(np.float64) * np.asarray(sp_)
    return multiscale_ot(idx, idx, at.reshape(-1), bt.reshape(-1), p=2.0, **options)

r"""Exact OT between point clouds, coarse to fine, without a dense cost (sparse network simplex + certificate).

.. math::
    \min_{P \in \Pi(a, b)} \sum_{ij} P_{ij} \|x_i - y_j\|^p

A hierarchy of dyadic cells (level k: the cells of side 2^-k of the joint bounding box) clusters both clouds.
The coarsest problem is solved on all its arcs. Each finer level (the last one: the points) solves on the
children of the previous level's active arcs (a feasible arc set: the coarse plan splits over them) and, per
point on both sides, the few arcs of smallest reduced cost for the prolonged potentials (c-transforms of the
coarse ones), warm-started from those potentials. On the points the loop then adds back every arc whose reduced
cost :math:`C_{ij} - f_i - g_j` is below the solver's pricing tolerance, found by a blocked scan (compiled,
kd-trees, ``csrc/reduced_costs.cpp``) that prunes block pairs by a lower bound and never stores the cost, and
re-solves from the last optimum until there is none: then :math:`f_i + g_j \le C_{ij} + tol` on every one of
the n m arcs, the plan is feasible and the duality gap is zero, i.e. the result is the exact optimum (a global
certificate, not an approximation). Memory O((n + m) k), k ~ 10-60 arcs per point.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from ... import _core

from ...results import Convergence, ExactResult
from .sparse import _weights, pack_sparse

__all__ = ["multiscale_ot", "solve_points_multiscale", "solve_grid_exact", "prefer_multiscale", "dense_bytes",
           "multiscale_bytes", "DENSE_BUDGET"]


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
        keys, first, ids = np.unique(_cells(z, k, lo, span), return_index=True, return_inverse=True)
        rank = np.empty(len(keys), np.int64)  # clusters numbered in the (Z-)order of the points
        rank[np.argsort(first, kind="stable")] = np.arange(len(keys))
        ids = rank[ids]
        mass = np.bincount(ids, w, len(keys))
        wc = np.bincount(ids, np.ones(len(z)), len(keys))  # unweighted centres: zero-mass cells have a place too
        ctr = np.stack([np.bincount(ids, z[:, c], len(keys)) for c in range(z.shape[1])], 1) / wc[:, None]
        out.append((ids, mass, ctr, keys))
    out.append((np.arange(len(z)), w, z, None))  # the points themselves
    return out


def _zorder(z, lo, span):
    """The permutation that sorts points along a Z-order (Morton) curve of the joint bounding box."""
    d = z.shape[1]
    bits = max(1, min(20, 62 // d))
    q = np.minimum(((z - lo) / span * (1 << bits)).astype(np.int64), (1 << bits) - 1)
    key = np.zeros(len(z), np.int64)
    for b in range(bits - 1, -1, -1):
        for c in range(d):
            key = (key << 1) | ((q[:, c] >> b) & 1)
    return np.argsort(key, kind="stable")


def _cost(x, y, rows, cols, p):
    d = np.sqrt(((x[rows] - y[cols]) ** 2).sum(-1)) if p != 2 else None
    return ((x[rows] - y[cols]) ** 2).sum(-1) if p == 2 else d**p


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


def _scan(x, y, f, g, p, tol, per_row):
    """Blocked scan of the reduced costs :math:`C_{ij} - f_i - g_j` (compiled, kd-tree pruned, the cost never
    stored): the ``per_row`` smallest of each row and the smallest of each column among those ``< -tol``."""
    r, c, _, priced = _core.reduced_cost_scan(x, y, f, g, float(p), float(tol), int(per_row),
                                              torch.get_num_threads())
    return r, c, int(priced)


def _violations(x, y, f, g, p, tol, per_row):
    """Violating arcs (reduced cost below ``-tol``), rechecked with the same cost formula as the arcs'."""
    r, c, priced = _scan(x, y, f, g, p, tol, per_row)
    exact = _cost(x, y, r, c, p) - f[r] - g[c] < -tol
    return r[exact], c[exact], priced


def _shortlist(x, y, f, g, p, k, below=np.inf):
    """The k arcs of smallest reduced cost (below ``below``) of every row and of every column (both scans)."""
    r1, c1, _ = _scan(x, y, f, g, p, -below, k)
    c2, r2, _ = _scan(y, x, g, f, p, -below, k)
    return np.r_[r1, r2], np.r_[c1, c2]


def _union(m, *pairs):
    """The distinct arcs of several (rows, cols) lists, sorted by row * m + col. By one sort: numpy 2.4's
    hash-based np.unique took 4.5 s CPU on 3 x 10^6 keys here (the sort: 0.02 s)."""
    keys = np.sort(np.concatenate([r * m + c for r, c in pairs]))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys
    return keys // m, keys % m


def multiscale_ot(x, y, a, b, *, p: float = 2, coarsest: int = 256, per_row: int = 8, max_rounds: int = 100,
                  shortlist: int = 4, points_per_cell: float = 0.25) -> ExactResult:
    r"""Exact OT between point clouds ``x (n, d)``, ``y (m, d)`` for the cost :math:`\|x - y\|^p`, coarse to fine.

    Args:
        x, y: points (torch or numpy); a, b: nonnegative weights of equal mass (None: uniform).
        p: cost power (2: squared Euclidean). coarsest: about how many cells the coarsest level has.
        per_row: violating arcs added back per row and round (plus the worst of each column).
        max_rounds: cap on add-back rounds at the finest level (a capped run reports ``converged=False``).
        shortlist: arcs of smallest reduced cost (for the prolonged potentials) added per point on both sides.
        points_per_cell: the finest cell level's grid has about max(n, m) / points_per_cell cells (0.25: most
            of its nonempty cells hold one point, so the last solve starts close to the optimum).

    Returns:
        :class:`~monge.results.ExactResult` (sparse plan, potentials, duality gap); ``convergence.levels`` holds
        one record per level and the certificate (``n_iters``: add-back rounds; converged: no arc of the full
        problem has a reduced cost below the pricing tolerance); ``n_iters`` counts the pivots of the last solve.

    Example:
        >>> import torch
        >>> x = torch.rand(300, 2, dtype=torch.float64); y = torch.rand(200, 2, dtype=torch.float64)
        >>> res = multiscale_ot(x, y, None, None)
        >>> dense = torch.cdist(x, y) ** 2
        >>> import monge
        >>> bool(abs(res.value - monge.solve(dense).value) < 1e-12), res.convergence.status
        (True, ('converged',))
    """
    return _multiscale(x, y, a, b, p, coarsest, per_row, max_rounds, shortlist, points_per_cell)[0]


def _prepare(x, y, a, b):
    like = x if isinstance(x, torch.Tensor) else None
    x, y = (np.ascontiguousarray(np.asarray(v.detach().cpu().double() if isinstance(v, torch.Tensor) else v,
                                            np.float64)) for v in (x, y))
    centre = 0.5 * (np.minimum(x.min(0), y.min(0)) + np.maximum(x.max(0), y.max(0)))
    x, y = x - centre, y - centre  # the cost is translation invariant; centring keeps |x|^2 small in the scan
    a64, b64 = _weights(a, len(x), "a", None), _weights(b, len(y), "b", None)
    if not abs(a64.sum() - b64.sum()) <= 1e-8 * max(a64.sum(), b64.sum()) or a64.sum() <= 0:
        raise ValueError(f"a, b: expected equal positive masses, got {a64.sum():.6g} and {b64.sum():.6g}")
    return x, y, a64, b64 * (a64.sum() / b64.sum()), like


def _multiscale(x, y, a, b, p, coarsest, per_row, max_rounds, shortlist, points_per_cell):
    """``(result, stats)``: the solver; stats = arcs priced by the certificate scans, final arc count."""
    x, y, a64, b64, like = _prepare(x, y, a, b)
    n, m, d = len(x), len(y), x.shape[1]
    lo = np.minimum(x.min(0), y.min(0))
    span = max(float((np.maximum(x.max(0), y.max(0)) - lo).max()), 1e-300)
    # points in Z-order: the sparse solver's pricing blocks (runs of arcs) become spatially local (about half
    # the CPU per solve at 10^4 points); the result goes back to the input order
    px, py = _zorder(x, lo, span), _zorder(y, lo, span)
    res, st = _multiscale_sorted(x[px], y[py], a64[px], b64[py], like, lo, span, p, coarsest, per_row,
                                 max_rounds, shortlist, points_per_cell)
    f, g = np.empty(n), np.empty(m)
    f[px], g[py] = res.f.numpy(), res.g.numpy()
    t = lambda v, ref: torch.as_tensor(v, dtype=ref.dtype)  # noqa: E731
    return dataclasses.replace(res, f=t(f, res.f), g=t(g, res.g), rows=torch.as_tensor(px)[res.rows],
                               cols=torch.as_tensor(py)[res.cols]), st


def _multiscale_sorted(x, y, a64, b64, like, lo, span, p, coarsest, per_row, max_rounds, shortlist,
                       points_per_cell):
    n, m, d = len(x), len(y), x.shape[1]
    k0 = max(1, int(np.log2(coarsest) / d))
    kc = max(k0, int(np.log2(max(n, m) / points_per_cell) / d))
    levels = list(range(k0, kc + 1))
    hx, hy = _hierarchy(x, a64, lo, span, levels), _hierarchy(y, b64, lo, span, levels)
    _, ma, ca, _ = hx[0]
    _, mb, cb, _ = hy[0]
    rows, cols = (v.ravel() for v in np.meshgrid(np.arange(len(ma)), np.arange(len(mb)), indexing="ij"))
    out, basis = solve_arcs(rows, cols, _cost(ca, cb, rows, cols, p), ma, mb)  # coarsest level: every arc
    records = [(f"level {levels[0]}", out)]
    for lev in range(1, len(hx)):
        par_x, par_y = _parent(hx, lev, hx[lev - 1][0]), _parent(hy, lev, hy[lev - 1][0])
        _, ma, ca, _ = hx[lev]
        _, mb, cb, _ = hy[lev]
        f0, g0 = _prolong(ca, cb, hx[lev - 1][2], hy[lev - 1][2], out[3], out[4], p)
        # children of the active arcs (a feasible set: the coarse plan splits over them) and the short lists
        rows, cols = _union(len(mb), _children_arcs(par_x, par_y, out[0], out[1]),
                            _shortlist(ca, cb, f0, g0, p, shortlist))
        out, basis = solve_arcs(rows, cols, _cost(ca, cb, rows, cols, p), ma, mb, f0, g0)
        records.append((f"level {levels[lev]}" if lev < len(levels) else "points", out))
    res, priced, arcs = _certify(x, y, a64, b64, p, rows, cols, (out, basis), records, per_row, max_rounds, like)
    return res, {"priced": priced, "arcs": arcs}


def _prolong(x, y, cx, cy, fc, gc, p):
    """Potentials of the points from those of the cells by c-transforms: :math:`f(x) = \\min_J c(x, c_J) - g_J`,
    then :math:`g(y) = \\min_I c(c_I, y) - f_I` (smooth inside a cell, unlike the parent's constant)."""
    f = _core.reduced_cost_scan(x, cy, np.zeros(len(x)), gc, float(p), -np.inf, 1, torch.get_num_threads())
    g = _core.reduced_cost_scan(y, cx, np.zeros(len(y)), fc, float(p), -np.inf, 1, torch.get_num_threads())
    fx, gy = np.full(len(x), np.nan), np.full(len(y), np.nan)
    fx[f[0][: len(x)]] = f[2][: len(x)]
    gy[g[0][: len(y)]] = g[2][: len(y)]
    return fx, gy


def solve_arcs(rows, cols, costs, a64, b64, f0=None, g0=None, flow0=None, basis=None):
    """The sparse solve with artificial arcs of cost 8 max|C| (a big-M of ~n max|C| would cost the potentials
    ~log10(n) digits and widen the pricing tolerance); if they still carry flow at the end, again with the big-M.
    Returns sparse.solve_arcs's tuple and the final basis (the tree arc of every node, see
    ``_core.min_cost_flow_warm``), which warm-starts the next solve: ``basis`` (its arcs indexed into these)."""
    cmax = float(np.abs(costs).max()) if len(costs) else 0.0
    out = _solve_basis(rows, cols, costs, a64, b64, f0, g0, flow0, basis, 8 * cmax + 1e-300)
    if out[0][8] > 1e-12 * a64.sum() or out[0][6] != 0:
        out = _solve_basis(rows, cols, costs, a64, b64, f0, g0, flow0, basis, 0.0)
    return out


def _solve_basis(rows, cols, costs, a64, b64, f0, g0, flow0, basis, art_cost):
    n = len(a64)
    pi0 = np.zeros(0) if f0 is None else np.r_[-f0, g0]
    flow, u, status, iters, art, tol, basis, _ = _core.min_cost_flow_warm(
        rows, n + cols, costs, np.r_[a64, -b64], pi0, np.zeros(0, np.int64) if basis is None else basis,
        float(art_cost), 0, np.zeros(0) if flow0 is None else flow0)
    keep = flow > 0
    f, g = u[:n], -u[n:]
    shift = 0.5 * (np.dot(a64, f) / max(a64.sum(), 1e-300) - np.dot(b64, g) / max(b64.sum(), 1e-300))
    out = (rows[keep], cols[keep], flow[keep], f - shift, g + shift, float(np.dot(flow[keep], costs[keep])), status,
           iters, art, tol)
    return out, basis


def _remap(basis, old_keys, new_keys):
    """A basis over the arcs ``old_keys`` (row * m + col) re-indexed into the sorted superset ``new_keys``."""
    out = basis.copy()
    real = out >= 0
    out[real] = np.searchsorted(new_keys, old_keys[out[real]])
    return out


def _parent(h, lev, ids_prev):
    """Parent (cluster at level lev - 1) of every cluster at level lev."""
    ids = h[lev][0]
    par = np.empty(ids.max() + 1, np.int64)
    par[ids] = ids_prev
    return par


REFRESH, NEAR = 8, 2.0
"""Each add-back round also adds, per row and column, up to ``REFRESH`` arcs whose reduced cost is below
``NEAR`` times the worst violation's magnitude: the nearly tight arcs that the next optimum's potentials would
violate (10^5 points: 2 rounds instead of 15)."""


def _certify(x, y, a64, b64, p, rows, cols, out, records, per_row, max_rounds, like):
    """Add back violating arcs until every reduced cost is nonnegative (the global optimality certificate)."""
    m = len(y)
    out, basis = out
    tol = 2 * out[9]  # the pricing tolerance of the last sparse solve (rounding of the recomputed potentials)
    rounds, priced = 0, 0
    while rounds <= max_rounds:
        vr, vc, pr = _violations(x, y, out[3], out[4], p, tol, per_row)
        priced += pr
        if len(vr) == 0 or rounds == max_rounds:
            break
        worst = float(np.min(_cost(x, y, vr, vc, p) - out[3][vr] - out[4][vc]))
        near = _shortlist(x, y, out[3], out[4], p, REFRESH, below=-NEAR * worst)
        old_keys = rows * m + cols
        rows, cols = _union(m, (rows, cols), (vr, vc), near)
        keys = rows * m + cols
        # the last optimum's basis, zero-flow tree arcs included (its flows alone, hung from the root in pieces,
        # made each piece's potentials move as one: ~1.6x the pivots at 2 x 10^4 points); its flows if refused
        flow0 = np.zeros(len(rows))
        flow0[np.searchsorted(keys, out[0] * m + out[1])] = out[2]
        out, basis = solve_arcs(rows, cols, _cost(x, y, rows, cols, p), a64, b64, out[3], out[4], flow0=flow0,
                                basis=_remap(basis, old_keys, keys))
        tol = 2 * out[9]
        rounds += 1
    levels = tuple((name, _level_conv(o)) for name, o in records)
    # the certificate's error: violating arcs of the last scan over all n m arcs (0: certified optimal)
    levels += (("certificate", Convergence.build(torch.tensor(float(len(vr))), 0.5, rounds,
                                                 criterion="violating_arcs")),)
    return pack_sparse(out, a64, b64, (len(x), len(y)), like if like is not None and like.is_floating_point()
                       else None, levels=levels), priced, len(rows)


def _level_conv(o):
    return Convergence.build(torch.tensor(float(o[8])), 1e-9, int(o[7]), criterion="artificial_flow")


DENSE_BUDGET = 2**30
"""Bytes: ``solve_points(..., method="auto")`` (exact) leaves the dense network simplex for the multiscale solver
when the dense problem (:func:`dense_bytes`) would take more than this (1 GiB: about 8000 x 8000 points)."""


def dense_bytes(n: int, m: int) -> int:
    """Estimated memory of the dense exact solver: the float64 cost and the solver's copy of it."""
    return 16 * n * m


def multiscale_bytes(n: int, m: int, d: int) -> int:
    """Estimated peak memory of :func:`multiscale_ot` (an upper estimate): up to ~60 candidate arcs per point at
    ~40 bytes per arc in the solver and the arc lists, the points and their hierarchy (0.7 GB at 10^5 x 10^5,
    d = 2, where the measured peak RSS of the whole process, torch included, was 0.42 GB)."""
    return (n + m) * (2400 + 64 * d) + 200 * 2**20


def available_bytes() -> int:
    """MemAvailable of /proc/meminfo (physical memory where that cannot be read)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def prefer_multiscale(x, y, cost, p, backend, kwargs) -> bool:
    """``solve_points``'s automatic switch: True when an exact, unbatched sqeuclidean/euclidean problem's dense
    cost would not fit in :data:`DENSE_BUDGET`; raises (before allocating) when no exact solver would fit."""
    if kwargs.get("eps") is not None or kwargs.get("method", "auto") != "auto" or getattr(x, "ndim", 0) < 2:
        return False
    n, m = int(x.shape[-2]), int(getattr(y, "shape", (0, 0))[-2])
    if dense_bytes(n, m) <= DENSE_BUDGET:
        return False
    fits = getattr(x, "ndim", 0) == 2 and getattr(y, "ndim", 0) == 2 and backend == "auto" and (
        cost == "sqeuclidean" and p in (None, 2) or cost == "euclidean") and set(kwargs) <= {"method", "rho"} \
        and kwargs.get("rho") is None
    if fits:
        return True
    if dense_bytes(n, m) * int(np.prod(tuple(x.shape[:-2]))) > available_bytes():
        raise ValueError(f"x, y: an exact problem of {n} x {m} points needs a dense cost of about "
                         f"{dense_bytes(n, m) / 2**30:.1f} GiB per problem, more than the {available_bytes() / 2**30:.1f}"
                         " GiB available; the multiscale solver (unbatched, cost='sqeuclidean' or 'euclidean', no "
                         "max_iter) needs none, or pass eps=... for entropic OT with backend='lazy'")
    return False


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
    need, avail = multiscale_bytes(x.shape[0], y.shape[0], x.shape[1]), available_bytes()
    if need > avail:
        raise ValueError(f"x, y: the multiscale exact solver needs about {need / 2**30:.1f} GiB for {x.shape[0]} x "
                         f"{y.shape[0]} points in d = {x.shape[1]}, more than the {avail / 2**30:.1f} GiB available; "
                         "subsample the clouds or pass eps=... for entropic OT with backend='lazy'")
    return _envelope(multiscale_ot(x, y, a, b, p=power, **options), x, y, a, b, power)


def _envelope(res, x, y, a, b, p):
    """Envelope gradients of the value: d/dx, d/dy through the cost of the plan's entries, d/da = f, d/db = g."""
    ts = [v for v in (x, y, a, b) if isinstance(v, torch.Tensor) and v.requires_grad]
    if not ts:
        return res
    r, c, P = res.rows.to(x.device), res.cols.to(x.device), res.vals.to(x.device, x.dtype)
    cost = ((x[r] - y[c]) ** 2).sum(-1)
    expr = (P * (cost if p == 2 else cost.clamp_min(1e-300) ** (p / 2))).sum()
    for w, pot in ((a, res.f), (b, res.g)):
        if isinstance(w, torch.Tensor) and w.requires_grad:
            expr = expr + ((w - w.detach()) * pot.to(w.device, w.dtype)).sum()
    return dataclasses.replace(res, value=res.value.to(expr.device, expr.dtype) + (expr - expr.detach()))


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

r"""One-line entry points: each builds geometry -> problem -> solver -> result.

Conventions (see the README): the cost between points is :math:`\|x - y\|^p` (``p = 2`` is the squared Euclidean
cost, no factor 1/2); ``value`` is the optimal :math:`\langle P, C\rangle`; :func:`wasserstein` returns
:math:`W_p = \mathrm{value}^{1/p}` itself, not its p-th power; weights default to uniform.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import torch

from ._validation import as_tensor, check_p, check_positive
from .geometry import DenseCost, Geometry, Grid, PointCloud
from .geometry.spec import resolve_geometry
from .geometry.costs import Euclidean, SqEuclidean
from .problems import BarycenterProblem, LinearProblem
from .results import AssignmentResult, ExactResult, SinkhornResult
from .solvers.exact._batch import to_numpy64
from .solvers.exact.assignment import Assignment, solve_assignment_core
from .solvers.exact.network_simplex import NetworkSimplex, _broadcast, pack_exact
from .solvers.exact.one_d import normalising_scale
from .solvers.exact.sparse import is_sparse_cost, solve_sparse
from .solvers.barycenter import Barycenter, BarycenterResult
from .solvers.gromov import fused_gromov_wasserstein, gromov_wasserstein
from .solvers.semidiscrete import semidiscrete
from .solvers.sinkhorn import Sinkhorn

__all__ = [
    "solve", "solve_points", "solve_grid", "wasserstein", "emd", "assignment", "safe_root", "barycenter",
    "interpolate_histograms", "support_geometry", "gromov_wasserstein", "fused_gromov_wasserstein",
    "semidiscrete",
]

_METHODS = ("auto", "network_simplex", "assignment")
#: The keyword options of :class:`~monge.solvers.sinkhorn.Sinkhorn` that :func:`solve` passes through.
_SINKHORN_KW = frozenset(f.name for f in dataclasses.fields(Sinkhorn)) - {"eps", "max_iter"}


def _split_rho(rho):
    """``rho`` -> ``(rho_a, rho_b)``: a number for both sides, or a pair (``None`` keeps that side balanced)."""
    if isinstance(rho, (tuple, list)):
        if len(rho) != 2:
            raise ValueError(f"rho: expected a number, None or a pair (rho_a, rho_b), got {rho!r}")
        check_positive(rho[0], "rho[0]", allow_none=True)
        check_positive(rho[1], "rho[1]", allow_none=True)
        return rho[0], rho[1]
    check_positive(rho, "rho (rho_a = rho_b)", allow_none=True)  # named as passed (the problem says rho_a, rho_b)
    return rho, rho


def solve(C, a=None, b=None, *, eps: float | None = None, rho=None, max_iter: int | None = None,
          method: str = "auto", **sinkhorn_kw) -> ExactResult | SinkhornResult:
    r"""Optimal transport for a cost matrix (or any geometry): exact when ``eps`` is None, else entropic.

    .. math::
        \min_{P \ge 0,\ P 1 = a,\ P^\top 1 = b} \langle P, C\rangle
        \quad\text{or}\quad
        \min_{P \ge 0} \langle P, C\rangle + \varepsilon \mathrm{KL}(P | a \otimes b)
        + \rho_a \mathrm{KL}(P 1 | a) + \rho_b \mathrm{KL}(P^\top 1 | b)

    Args:
        C: costs ``(..., n, m)``, finite; leading dimensions are a batch of independent problems.
        a, b: weights ``(..., n)`` / ``(..., m)``, nonnegative (``None``: uniform). Total masses must agree to
            :data:`monge._validation.MASS_RTOL` (then ``b`` is rescaled to the mass of ``a``).
        max_iter: pivot cap (``None``: none; a capped, unfinished solve reports ``converged=False``).
        method: exact solver: ``"network_simplex"`` (any weights), ``"assignment"`` (uniform weights, n = m: the
            optimum is a permutation, found by the LAPJV solver), or ``"auto"`` (the network simplex, which is
            faster than the assignment solver even on uniform problems: 0.16 s vs 0.8 s at n = 4000).
        eps: entropic regularisation in cost units (``None``: exact OT). rho: KL marginal penalty, a number or a
            pair ``(rho_a, rho_b)`` (``None``: balanced; entropic only).
        **sinkhorn_kw: ``tol``, ``check_every``, ``schedule``, ``grad``, ``verbose`` of
            :class:`~monge.solvers.sinkhorn.Sinkhorn`.

    Returns:
        exact: :class:`~monge.results.ExactResult` with ``value``, ``plan``, ``f``, ``g`` and ``convergence``
        (status, duality gap, marginal error); ``value`` has envelope gradients w.r.t. ``C``, ``a``, ``b``.
        entropic: :class:`~monge.results.SinkhornResult` (``value`` is the regularised objective,
        ``transport_cost`` is :math:`\langle P, C\rangle`).

    Example:
        >>> import torch
        >>> C = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
        >>> res = solve(C, torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75]))
        >>> round(float(res.value), 6), res.plan.tolist()
        (0.5, [[0.25, 0.25], [0.0, 0.5]])
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    unknown = [k for k in sinkhorn_kw if k not in _SINKHORN_KW]
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: not an option of solve (eps, rho, max_iter, method, and for eps=...: "
                        f"{', '.join(sorted(_SINKHORN_KW))})")
    if is_sparse_cost(C) and eps is None and method == "auto" and rho is None and not sinkhorn_kw:
        return solve_sparse(C, a, b, max_iter=max_iter)  # only the listed arcs exist (exact, sparse network simplex)
    geom = C if isinstance(C, Geometry) else DenseCost(C)
    rho_a, rho_b = _split_rho(rho)
    if eps is not None:
        if method != "auto":
            raise ValueError(f"method: {method!r} chooses an exact solver and would be ignored with eps={eps!r}; drop "
                             "method for entropic OT, or drop eps for exact OT")
        if max_iter is not None:
            sinkhorn_kw["max_iter"] = max_iter
        return Sinkhorn(eps=eps, **sinkhorn_kw)(LinearProblem(geom, a, b, rho_a=rho_a, rho_b=rho_b))
    if rho_a is not None or rho_b is not None or sinkhorn_kw:
        extra = "rho" if rho is not None else ", ".join(sinkhorn_kw)
        raise ValueError(f"{extra}: only for entropic OT; pass eps=... (exact OT is balanced and has no such option)")
    n, m = geom.shape
    uniform = a is None and b is None and n == m
    if method == "assignment" and max_iter is not None:
        raise ValueError("max_iter: the assignment solver always finishes (n augmentations) and would ignore "
                         f"max_iter={max_iter!r}; drop max_iter or use method='network_simplex'")
    if method == "assignment" and not uniform:
        raise ValueError(
            "method='assignment' needs uniform weights (a=None, b=None) and n = m; got "
            f"n={n}, m={m}, a {'given' if a is not None else 'None'}, b {'given' if b is not None else 'None'}"
        )
    prob = LinearProblem(geom, a, b)
    solver = NetworkSimplex(max_iter=max_iter)  # validates max_iter whichever path runs
    if method == "assignment":
        return _solve_by_assignment(prob)
    return solver(prob)


def _solve_by_assignment(prob: LinearProblem) -> ExactResult:
    """Uniform weights, n = m: solve the assignment problem and express it as the OT plan P = perm / n."""
    C, a, b = _broadcast(prob.geom.cost(), prob.a, prob.b)
    n = C.shape[-1]
    out = []
    rows, vals = np.arange(n), np.full(n, 1.0 / n)
    for cols, u, v, cost in solve_assignment_core(C):
        out.append((rows, cols, vals, u, v, cost / n, 0, n))
    return dataclasses.replace(pack_exact(out, C, a, b, prob.batch_shape, to_numpy64(a), to_numpy64(b)), problem=prob)


def solve_points(x, y, a=None, b=None, *, cost="sqeuclidean", p: float | None = None, backend: str = "auto",
                 **kwargs) -> ExactResult | SinkhornResult:
    r"""OT between point clouds ``x (..., n, d)`` and ``y (..., m, d)`` for a ground cost (exact or entropic).

    ``cost``: ``"sqeuclidean"`` (default), ``"euclidean"`` (with power ``p``), ``"cosine"``, a
    :class:`~monge.geometry.Cost` or a callable. ``backend`` (entropic): ``"dense"``, ``"lazy"`` (O(n + m)
    memory) or ``"auto"``. Other keyword arguments (``eps``, ``rho``, ...) go to :func:`solve`. The value is
    differentiable w.r.t. the points (through the cost) and the weights. Exact OT (no ``eps``) between two
    unbatched clouds whose dense cost would exceed 1 GiB (``multiscale.DENSE_BUDGET``) runs the multiscale solver
    (``method="multiscale"``, also selectable explicitly); a problem that fits no exact solver raises before
    allocating, with the estimated memory.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0]]); y = torch.tensor([[3.0], [2.0]])
        >>> float(solve_points(x, y).value)  # ((2-0)^2 + (3-1)^2) / 2
        4.0
    """
    from .solvers.exact.multiscale import prefer_multiscale, solve_points_multiscale

    if kwargs.get("method") == "multiscale" or prefer_multiscale(x, y, cost, p, backend, kwargs):
        # exact, coarse to fine, never the dense cost (method="auto": when the dense one would exceed 1 GiB)
        return solve_points_multiscale(x, y, a, b, cost=cost, p=p, **{k: v for k, v in kwargs.items() if k != "method"})
    if backend in ("dense", "lazy", "multiscale") and kwargs.get("eps") is None:
        raise ValueError(f"backend: {backend!r} is an entropic (eps=...) option; the exact solver materialises the "
                         "cost matrix, so drop backend or pass eps")
    return solve(PointCloud(x, y, cost=cost, p=p, backend=backend), a, b, **kwargs)


def solve_grid(a, b, *, eps: float | None = None, rho=None, spacing=None, p: float = 2, **kwargs):
    r"""Entropic OT between two histograms on a regular grid (images, volumes, any dimension).

    The cost between cells is :math:`\sum_k |x_k - y_k|^p` (separable), applied by per-axis convolutions in the
    log domain: memory O(N), never the N x N cost.

    Args:
        a, b: histograms ``(..., n_1, ..., n_d)`` on the same grid (the last ``d`` dims); ``d`` is taken from
            ``spacing`` if it is a tuple, else ``a.dim()`` (so batch them by passing ``spacing=(s_1, ..., s_d)``).
        eps: temperature in cost units; ``None``: exact OT (p = 2), an ExactResult over flattened cells: the
            (d+1)-partite flow (:func:`monge.solvers.exact.grid_flow.solve_grid_flow`) up to N sum_k n_k = 2^21
            arcs, beyond that the multiscale solver on the cell centres
            (:func:`monge.solvers.exact.multiscale.solve_grid_exact`).
            rho: KL marginal penalty (``None``: balanced).
        spacing: cell sizes per axis: ``d`` floats, one float for every axis, or ``None`` (``1 / n_k``: the grid
            covers [0, 1)^d).
        **kwargs: passed to :class:`~monge.solvers.sinkhorn.Sinkhorn`.

    Example:
        >>> import torch
        >>> a = torch.zeros(16, 16, dtype=torch.float64); a[4, 4] = 1
        >>> b = torch.zeros(16, 16, dtype=torch.float64); b[4, 12] = 1
        >>> round(float(solve_grid(a, b, eps=1e-3).transport_cost), 3)  # (8/16)^2
        0.25
    """
    from ._validation import as_tensor
    from .geometry.grid import Grid

    if eps is None:  # exact OT, never the N x N cost
        shape = tuple(getattr(a, "shape", ()))
        if p == 2 and rho is None and not kwargs and shape and int(np.prod(shape)) * sum(shape) <= 2**21:
            from .solvers.exact.grid_flow import solve_grid_flow  # (d+1)-partite flow: <= 2M arcs (100 x 100)

            return solve_grid_flow(a, b, spacing=spacing)
        from .solvers.exact.multiscale import solve_grid_exact

        return solve_grid_exact(a, b, spacing=spacing, p=p, rho=rho, **kwargs)
    a = as_tensor(a, "a")
    if a.dim() == 0:
        raise ValueError("a: expected a histogram on a grid, shape (..., n_1, ..., n_d), got a scalar (shape ())")
    d = len(spacing) if isinstance(spacing, (tuple, list)) else a.dim()  # a number: every axis, unbatched
    geom = Grid(tuple(a.shape[a.dim() - d :]), spacing=spacing, p=p, dtype=a.dtype, device=a.device)
    return solve(geom, a, b, eps=eps, rho=rho, **kwargs)


def safe_root(v: torch.Tensor, p: float) -> torch.Tensor:
    """``v ** (1/p)`` for ``v >= 0`` with a zero (sub)gradient at ``v = 0`` instead of inf * 0 = NaN."""
    if p == 1.0:
        return v
    pos = v > 0
    zero = torch.where(torch.isnan(v), v, torch.zeros_like(v))  # a NaN stays NaN: never a silent 0
    return torch.where(pos, v.clamp_min(torch.finfo(v.dtype).tiny) ** (1.0 / p), zero)


def wasserstein(x, y, a=None, b=None, p: float = 2, **kwargs) -> torch.Tensor:
    r"""The Wasserstein distance :math:`W_p` between two weighted point clouds (not its p-th power).

    .. math::
        W_p(\alpha, \beta) = \Big(\min_{P \in \Pi(a, b)} \sum_{ij} P_{ij} \|x_i - y_j\|^p\Big)^{1/p}

    Args:
        x: ``(..., n, d)``, y: ``(..., m, d)``; a, b: weights (``None``: uniform); p >= 1.

    Returns:
        a tensor of the batch shape, differentiable w.r.t. ``x``, ``y``, ``a``, ``b``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        >>> round(float(wasserstein(x, x + torch.tensor([3.0, 4.0]), p=2)), 6)  # a translation by (3, 4)
        5.0
    """
    p = check_p(p)
    if "cost" in kwargs:
        raise TypeError("cost: wasserstein's cost is |x - y|^p, set by p; for another ground cost use "
                        "solve_points(x, y, cost=...).value")
    cost = SqEuclidean() if p == 2.0 else Euclidean(p)
    x, y = as_tensor(x, "x"), as_tensor(y, "y")
    s = normalising_scale(x, y, p, event_dims=2) if x.dim() >= 2 and x.numel() and y.dim() >= 2 and y.numel() else None
    if s is None:
        return safe_root(solve(PointCloud(x, y, cost=cost), a, b, **kwargs).value, p)
    # |x - y|^p overflows or underflows: W_p is 1-homogeneous, so solve for x / s, y / s (s a power of two per
    # problem, exact) and multiply back; eps and rho (cost units, one number for the batch) are divided by s^p, so
    # then s is one number too
    kw = kwargs
    if kw.get("eps") is not None or kw.get("rho") is not None:
        s = s.amax().reshape(1, 1)
        kw = {k: _rescaled(v, float(s), p, k) if k in ("eps", "rho") else v for k, v in kw.items()}
    return safe_root(solve(PointCloud(x / s, y / s, cost=cost), a, b, **kw).value, p) * s[..., 0, 0]


def _rescaled(v, s: float, p: float, name: str):
    """``v / s^p`` for a knob in cost units (``None`` kept), computed in logs; an error if it leaves the range."""
    if isinstance(v, (tuple, list)):  # rho = (rho_a, rho_b)
        return type(v)(_rescaled(u, s, p, name) for u in v)
    if v is None or not isinstance(v, numbers.Real) or not v > 0:
        return v  # the solver names the bad value
    out = float(np.exp2(np.log2(float(v)) - np.log2(s) * p))
    if not (0 < out < np.inf):
        raise ValueError(f"{name}: {v!r} in cost units is out of range once the points are normalised by {s:g} "
                         f"(|x - y|^p itself leaves the float range); rescale the points and {name} together")
    return out


def emd(a, b, C, **kwargs) -> ExactResult:
    """POT-style argument order for :func:`solve`: ``emd(a, b, C)`` (``a``/``b`` may be ``None``).

    Example:
        >>> import torch
        >>> float(emd(None, None, torch.eye(3)).value)
        0.0
    """
    return solve(C, a, b, **kwargs)


def assignment(C, *, n_threads: int | None = None, method: str = "lapjv", **options) -> AssignmentResult:
    r"""Optimal assignment of the rows of ``C (..., n, m)``, n <= m, to distinct columns.

    Returns an :class:`~monge.results.AssignmentResult` (``cols``, ``value``, duals ``f``, ``g``). See
    :class:`~monge.solvers.exact.assignment.Assignment` (``method="lapjv"``: compiled, float64 on the CPU) and
    :class:`~monge.solvers.exact.auction.Auction` (``method="auction"``: batched torch on the input's device;
    ``**options``: its ``eps``, ``tol``, ``max_iter``...).

    Example:
        >>> import torch
        >>> assignment(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).cols.tolist()
        [1, 0]
    """
    if method == "auction":
        from .solvers.exact.auction import Auction
        return Auction(**options)(C)
    if method != "lapjv" or options:
        raise ValueError(f"method: expected 'lapjv' or 'auction', got {method!r} with options {sorted(options)}; "
                         "options (eps, tol, ...) belong to method='auction'")
    return Assignment(n_threads=n_threads)(C)


def support_geometry(geom, hists: torch.Tensor, event_dims: int | None = None, extra: dict | None = None) -> Geometry:
    """The geometry given by ``geom=``: a Geometry, a cost matrix ``C (n, m)`` (a tensor is always a cost, never
    points: use ``monge.PointCloud(x)``), ``"grid"`` or a :class:`~monge.geometry.GridSpec` (see
    :mod:`monge.geometry.spec`); ``extra``: the caller's other keywords (an old ``C=``/``x=``/``grid=``/``spacing=``/``p=``
    gets an error with the new spelling)."""
    return resolve_geometry(geom, hists, event_dims, extra)


def barycenter(hists, weights=None, *, eps: float, geom=None, rho: float | None = None, debias: bool = False,
               **solver_kw) -> BarycenterResult:
    r"""The entropic Wasserstein barycenter of K histograms on one fixed support.

    .. math::
        \min_b \sum_{k=1}^K \lambda_k \mathrm{OT}_\varepsilon(a_k, b)

    Args:
        hists: ``(..., K, n)`` on the support of ``geom``; images/volumes ``(K, n_1, ..., n_d)`` with
            ``geom="grid"`` (``d = hists.dim() - 1``; batches: ``GridSpec(ndim=d)`` or ``GridSpec(spacing=(s_1, ..., s_d))``).
        weights: barycentric weights ``(..., K)`` in the simplex (``None``: uniform).
        eps: temperature in cost units. rho: KL marginal penalty (``None``: balanced). debias: Janati et al.'s
            debiased barycenter (square geometries).
        geom: the support and cost, one argument: a :class:`~monge.geometry.Geometry` (``monge.PointCloud(x)`` for
            ``(n, d)`` support points), a cost matrix ``C (n, m)`` (a tensor is always a cost), ``"grid"`` (a
            :class:`~monge.geometry.Grid` over the trailing dims, spacing ``1 / n_k``) or
            ``monge.GridSpec(spacing=..., p=..., ndim=...)`` (POT's ``linspace(0, 1, n)`` images:
            ``GridSpec(spacing=1 / (n - 1))``).
        **solver_kw: ``tol``, ``max_iter``, ``check_every``, ``grad``, ``verbose`` of
            :class:`~monge.solvers.barycenter.Barycenter`.

    Returns:
        :class:`~monge.solvers.barycenter.BarycenterResult` (``.barycenter``, potentials, convergence).

    Example:
        >>> import torch
        >>> imgs = torch.zeros(2, 16, 16, dtype=torch.float64)
        >>> imgs[0, 4, 4] = imgs[1, 4, 12] = 1
        >>> b = barycenter(imgs, eps=1e-3, geom="grid").barycenter
        >>> tuple(b.shape), divmod(int(b.argmax()), 16)   # the midpoint (4, 8)
        ((16, 16), (4, 8))
    """
    hists = as_tensor(hists, "hists")
    g = support_geometry(geom, hists, hists.dim() - 1, solver_kw)
    return Barycenter(eps=eps, debias=debias, **solver_kw)(BarycenterProblem(g, hists, weights, rho=rho))


def interpolate_histograms(a, b, t, *, eps: float, geom=None, rho: float | None = None, debias: bool = False,
                           **solver_kw) -> BarycenterResult:
    r"""Displacement interpolation between two histograms: the barycenters with weights ``(1 - t, t)``.

    .. math::
        \mu_t = \arg\min_\mu (1 - t)\, \mathrm{OT}_\varepsilon(a, \mu) + t\, \mathrm{OT}_\varepsilon(b, \mu),
        \qquad t \in [0, 1]

    All ``t`` are solved as one batch.

    Args:
        a, b: two histograms on the same support, ``(n,)`` or an image/volume ``(n_1, ..., n_d)``, equal masses.
        t: a float or a sequence of ``T`` floats in [0, 1].
        eps, geom, rho, debias, **solver_kw: as in :func:`barycenter` (``geom="grid"``: the grid is the whole shape of
            ``a``).

    Returns:
        :class:`~monge.solvers.barycenter.BarycenterResult` whose ``barycenter`` is ``(T, *support)``.

    Example:
        >>> import torch
        >>> a = torch.zeros(40, dtype=torch.float64); a[5] = 1
        >>> b = torch.zeros(40, dtype=torch.float64); b[25] = 1
        >>> mu = interpolate_histograms(a, b, [0.0, 0.25, 1.0], eps=1e-3, geom="grid").barycenter
        >>> mu.argmax(-1).tolist()
        [5, 10, 25]
    """
    a = as_tensor(a, "a")
    b = as_tensor(b, "b", dtype=a.dtype, device=a.device)
    if a.shape != b.shape:
        raise ValueError(f"a and b: expected histograms of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    try:
        ts = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"t: expected a float or a sequence of floats in [0, 1], got {t!r}") from None
    if ts.numel() == 0 or not bool(((ts >= 0) & (ts <= 1)).all()):
        raise ValueError(f"t: expected a float or a non-empty sequence of floats in [0, 1], got {t!r}")
    hists = torch.stack([a, b]).expand(ts.numel(), 2, *a.shape)
    weights = torch.stack([1 - ts, ts], -1)
    g = support_geometry(geom, a, a.dim(), solver_kw)
    return Barycenter(eps=eps, debias=debias, **solver_kw)(BarycenterProblem(g, hists, weights, rho=rho))

r"""One-line barycenters and displacement interpolation of histograms (the chain geometry -> problem -> solver).

.. math::
    b^\star = \arg\min_b \sum_k \lambda_k \mathrm{OT}_\varepsilon(a_k, b), \qquad
    \mu_t = \arg\min_b (1 - t)\,\mathrm{OT}_\varepsilon(a, b) + t\,\mathrm{OT}_\varepsilon(a', b)
"""

from __future__ import annotations

import numbers

import torch

from .._validation import as_tensor
from ..geometry.base import Geometry
from ..geometry.dense import DenseCost
from ..geometry.grid import Grid
from ..geometry.pointcloud import PointCloud
from ..problems.barycenter import BarycenterProblem
from .barycenter import Barycenter, BarycenterResult

__all__ = ["barycenter", "interpolate_histograms"]


def _geometry(hists: torch.Tensor, event_dims: int | None, geom, C, x, grid, spacing, p) -> Geometry:
    """The geometry named by exactly one of ``geom``, ``C``, ``x``, ``grid``/``spacing``."""
    use_grid = bool(grid) or spacing is not None
    given = [name for name, v in (("geom", geom), ("C", C), ("x", x)) if v is not None] + (["grid"] if use_grid else [])
    if len(given) != 1:
        raise ValueError(
            "geom, C, x, grid: expected exactly one way to give the support and cost (geom=a Geometry, C=an (n, m) "
            "cost matrix, x=(n, d) support points, or grid=True / spacing=... for images), got "
            f"{', '.join(given) if given else 'none'}"
        )
    if geom is not None:
        if not isinstance(geom, Geometry):
            raise TypeError(f"geom: expected a monge Geometry, got {type(geom).__name__}")
        return geom
    if C is not None:
        return DenseCost(as_tensor(C, "C", dtype=hists.dtype, device=hists.device))
    if x is not None:
        return PointCloud(as_tensor(x, "x", dtype=hists.dtype, device=hists.device))
    if isinstance(spacing, (tuple, list)):
        d = len(spacing)
    elif isinstance(grid, numbers.Integral) and not isinstance(grid, bool):
        d = int(grid)
    else:
        d = event_dims
    if d < 1 or d > hists.dim():
        raise ValueError(f"grid: expected 1 <= d <= {hists.dim()} grid dimensions, got d = {d} for histograms of "
                         f"shape {tuple(hists.shape)}; pass grid=d or spacing=(s_1, ..., s_d)")
    return Grid(tuple(hists.shape[hists.dim() - d:]), spacing=spacing, p=p, dtype=hists.dtype, device=hists.device)


def barycenter(hists, weights=None, *, eps: float, geom=None, C=None, x=None, grid=False, spacing=None,
               p: float = 2, rho: float | None = None, debias: bool = False, **solver_kw) -> BarycenterResult:
    r"""The entropic Wasserstein barycenter of K histograms on one fixed support.

    .. math::
        \min_b \sum_{k=1}^K \lambda_k \mathrm{OT}_\varepsilon(a_k, b)

    Args:
        hists: ``(..., K, n)`` on a support given by ``C``, ``x`` or ``geom``; images/volumes ``(K, n_1, ..., n_d)``
            with ``grid=True`` (``d = hists.dim() - 1``; batches: ``grid=d`` or ``spacing=(s_1, ..., s_d)``).
        weights: barycentric weights ``(..., K)`` in the simplex (``None``: uniform).
        eps: temperature in cost units. rho: KL marginal penalty (``None``: balanced). debias: Janati et al.'s
            debiased barycenter (square geometries).
        geom: any :class:`~monge.geometry.Geometry`; C: an ``(n, m)`` cost matrix; x: ``(n, d)`` support points
            (squared Euclidean cost); grid / spacing / p: a :class:`~monge.geometry.Grid` over the trailing dims
            (default spacing ``1 / n_k``; POT's ``linspace(0, 1, n)`` images: ``spacing=1 / (n - 1)``).
        **solver_kw: ``tol``, ``max_iter``, ``check_every``, ``grad``, ``verbose`` of
            :class:`~monge.solvers.barycenter.Barycenter`.

    Returns:
        :class:`~monge.solvers.barycenter.BarycenterResult` (``.barycenter``, potentials, convergence).

    Example:
        >>> import torch
        >>> imgs = torch.zeros(2, 16, 16, dtype=torch.float64)
        >>> imgs[0, 4, 4] = imgs[1, 4, 12] = 1
        >>> b = barycenter(imgs, eps=1e-3, grid=True).barycenter
        >>> tuple(b.shape), divmod(int(b.argmax()), 16)   # the midpoint (4, 8)
        ((16, 16), (4, 8))
    """
    hists = as_tensor(hists, "hists")
    g = _geometry(hists, hists.dim() - 1, geom, C, x, grid, spacing, p)
    return Barycenter(eps=eps, debias=debias, **solver_kw)(BarycenterProblem(g, hists, weights, rho=rho))


def interpolate_histograms(a, b, t, *, eps: float, geom=None, C=None, x=None, grid=False, spacing=None,
                           p: float = 2, rho: float | None = None, debias: bool = False,
                           **solver_kw) -> BarycenterResult:
    r"""Displacement interpolation between two histograms: the barycenters with weights ``(1 - t, t)``.

    .. math::
        \mu_t = \arg\min_\mu (1 - t)\, \mathrm{OT}_\varepsilon(a, \mu) + t\, \mathrm{OT}_\varepsilon(b, \mu),
        \qquad t \in [0, 1]

    All ``t`` are solved as one batch.

    Args:
        a, b: two histograms on the same support, ``(n,)`` or an image/volume ``(n_1, ..., n_d)``, equal masses.
        t: a float or a sequence of ``T`` floats in [0, 1].
        eps, geom, C, x, grid, spacing, p, rho, debias, **solver_kw: as in :func:`barycenter`.

    Returns:
        :class:`~monge.solvers.barycenter.BarycenterResult` whose ``barycenter`` is ``(T, *support)``.

    Example:
        >>> import torch
        >>> a = torch.zeros(40, dtype=torch.float64); a[5] = 1
        >>> b = torch.zeros(40, dtype=torch.float64); b[25] = 1
        >>> mu = interpolate_histograms(a, b, [0.0, 0.25, 1.0], eps=1e-3, grid=True).barycenter
        >>> mu.argmax(-1).tolist()
        [5, 10, 25]
    """
    a = as_tensor(a, "a")
    b = as_tensor(b, "b", dtype=a.dtype, device=a.device)
    if a.shape != b.shape:
        raise ValueError(f"a and b: expected histograms of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ts = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(-1)
    if ts.numel() == 0 or not bool(((ts >= 0) & (ts <= 1)).all()):
        raise ValueError(f"t: expected a float or a non-empty sequence of floats in [0, 1], got {t!r}")
    hists = torch.stack([a, b]).expand(ts.numel(), 2, *a.shape)
    weights = torch.stack([1 - ts, ts], -1)
    g = _geometry(a, a.dim(), geom, C, x, grid, spacing, p)
    return Barycenter(eps=eps, debias=debias, **solver_kw)(BarycenterProblem(g, hists, weights, rho=rho))

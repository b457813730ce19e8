r"""The fixed-support Wasserstein barycenter problem: K histograms on one support, barycentric weights.

.. math::
    \min_{b} \sum_{k=1}^K \lambda_k \, \mathrm{OT}(a_k, b)

All inputs and the barycenter live on the supports of one geometry: the inputs ``a_k`` on its source support
(size ``n``, or a grid shape), the barycenter ``b`` on its target support (size ``m``; the same support for a
square geometry, e.g. a :class:`~monge.geometry.Grid` or a point cloud against itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import (
    MASS_RTOL,
    WEIGHTS_ATOL,
    as_tensor,
    check_positive,
    check_simplex,
    check_weights,
)
from ..geometry.base import Geometry
from ..ops.broadcast import broadcast_shapes

__all__ = ["BarycenterProblem", "WEIGHTS_ATOL"]

#: :data:`monge._validation.WEIGHTS_ATOL`, re-exported: the tolerance on barycentric weights summing to 1.
WEIGHTS_ATOL = WEIGHTS_ATOL


def _supports(geom: Geometry) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(source support, target support) shapes: ``(n,), (m,)`` or the grid shape twice."""
    return tuple(geom.source_shape), tuple(geom.target_shape)


@dataclass(frozen=True, init=False)
class BarycenterProblem:
    r"""Data of a fixed-support barycenter problem, validated once (immutable).

    .. math::
        \min_{b} \sum_{k=1}^K \lambda_k \, \mathrm{OT}_\varepsilon(a_k, b), \qquad
        \mathrm{OT}_\varepsilon(a_k, b) = \min_{P 1 = a_k,\ P^\top 1 = b} \langle P, C\rangle
        + \varepsilon \mathrm{KL}(P \,|\, e^{-C/\varepsilon})

    (balanced, ``rho=None``); a finite ``rho`` replaces both marginal constraints of every coupling by the
    penalties :math:`\rho\,\mathrm{KL}(P 1 | a_k) + \rho\,\mathrm{KL}(P^\top 1 | b)` (unbalanced barycenter).

    Args:
        geom: the :class:`~monge.geometry.Geometry`: inputs on its source support, the barycenter on its target
            support (``geom.shape == (n, m)``; a grid: both are the grid, shape ``(n_1, ..., n_d)``).
        hists: the K input histograms ``(..., K, n)`` (grids: ``(..., K, n_1, ..., n_d)``), nonnegative, finite,
            positive mass; balanced: equal masses (within :data:`monge._validation.MASS_RTOL`, then each is
            rescaled to the mass of the first, a detached rounding correction).
        weights: barycentric weights ``(..., K)``: nonnegative, summing to 1 (within :data:`WEIGHTS_ATOL`);
            ``None``: uniform ``1/K``.
        rho: KL marginal penalty in cost units (``None``: balanced).

    Example:
        >>> import torch
        >>> from monge.geometry import Grid
        >>> hists = torch.rand(3, 8, 8, dtype=torch.float64)
        >>> prob = BarycenterProblem(Grid((8, 8), dtype=torch.float64), hists / hists.sum((-1, -2), keepdim=True))
        >>> prob.n_inputs, prob.support_shape, prob.weights.tolist()[0]
        (3, (8, 8), 0.3333333333333333)
    """

    geom: Geometry
    hists: torch.Tensor
    weights: torch.Tensor
    rho: float | None

    def __init__(self, geom: Geometry, hists, weights=None, rho=None):
        if not isinstance(geom, Geometry):
            raise TypeError(f"geom: expected a monge Geometry (DenseCost, PointCloud, Grid), got {type(geom).__name__}")
        src, _ = _supports(geom)
        k, like = len(src), geom.like()
        hists = as_tensor(hists, "hists", dtype=like.dtype, device=like.device)
        sym = ", ".join(f"n_{i + 1}" for i in range(k)) if k > 1 else "n"
        if hists.dim() < k + 1 or tuple(hists.shape[hists.dim() - k:]) != src:
            raise ValueError(
                f"hists: expected K histograms of shape (..., K, {sym}) with ({sym}) = {src} (the source support "
                f"of the geometry), got shape {tuple(hists.shape)}; stack the inputs along dim -{k + 1}"
            )
        hists = check_weights(hists, "hists", src, like, size_name=sym)
        K = hists.shape[-k - 1]
        check_positive(rho, "rho", allow_none=True)
        weights = check_simplex(weights, "weights", K, like)
        if rho is None:
            hists = _balance(hists, k)
        try:
            broadcast_shapes(hists.shape[: hists.dim() - k - 1], weights.shape[:-1], geom.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"hists, weights and geom: batch dimensions {tuple(hists.shape[: hists.dim() - k - 1])}, "
                f"{tuple(weights.shape[:-1])} and {tuple(geom.batch_shape)} do not broadcast"
            ) from None
        object.__setattr__(self, "geom", geom)
        object.__setattr__(self, "hists", hists)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "rho", None if rho is None else float(rho))

    @property
    def event_ndim(self) -> int:
        """Trailing dimensions of a histogram that index the support (1; a d-D grid: d)."""
        return len(_supports(self.geom)[0])

    @property
    def n_inputs(self) -> int:
        """K, the number of input histograms."""
        return self.hists.shape[self.hists.dim() - self.event_ndim - 1]

    @property
    def support_shape(self) -> tuple[int, ...]:
        """The shape of the barycenter's support: ``(m,)`` or the grid shape."""
        return _supports(self.geom)[1]

    @property
    def is_balanced(self) -> bool:
        return self.rho is None

    @property
    def batch_shape(self) -> torch.Size:
        k = self.event_ndim
        return broadcast_shapes(self.hists.shape[: self.hists.dim() - k - 1], self.weights.shape[:-1],
                                      self.geom.batch_shape)


def _balance(hists: torch.Tensor, k: int) -> torch.Tensor:
    """Equal masses (within MASS_RTOL) made exactly equal to the first histogram's (detached factor); else raise."""
    mass = hists.sum(tuple(range(-k, 0)))  # (..., K)
    ref = mass[..., :1]
    rel = (mass - ref).abs() / torch.maximum(mass, ref)
    tol = MASS_RTOL[hists.dtype]
    if bool((rel > tol).any()):
        raise ValueError(
            f"hists: a balanced barycenter needs input histograms of equal mass, got masses from "
            f"{float(mass.min()):.10g} to {float(mass.max()):.10g} (relative difference {float(rel.max()):.3g} > "
            f"{tol:g}); normalise each (hists / hists.sum(...)) or use the unbalanced barycenter (rho=...)"
        )
    scale = (ref / mass).detach()
    return hists * scale.reshape(*scale.shape, *([1] * k))

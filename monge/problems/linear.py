"""The linear (Kantorovich) OT problem: a geometry and two marginals."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import balance_masses, check_batch, check_positive, check_weights
from ..geometry.base import Geometry
from ..ops.broadcast import broadcast_shapes

__all__ = ["LinearProblem"]


@dataclass(frozen=True, init=False)
class LinearProblem:
    r"""Data of a linear OT problem, validated once.

    .. math::
        \min_{P \ge 0,\ P 1 = a,\ P^\top 1 = b} \langle P, C \rangle

    (balanced, ``rho_a = rho_b = None``); a finite ``rho`` replaces the corresponding marginal constraint by
    the penalty ``rho KL(P 1 | a)`` (unbalanced OT, entropic solvers only).

    Args:
        geom: the :class:`~monge.geometry.Geometry` (cost).
        a: source weights ``(..., n)``, nonnegative; ``None`` = uniform ``1/n``.
        b: target weights ``(..., m)``; ``None`` = uniform ``1/m``. For a balanced problem, masses that agree
            within :data:`monge._validation.MASS_RTOL` are equalised by rescaling ``b``; beyond it, an error.
        rho_a, rho_b: marginal penalties (``None`` = hard constraint), positive, in cost units.

    Example:
        >>> import torch
        >>> from monge.geometry import DenseCost
        >>> prob = LinearProblem(DenseCost(torch.rand(3, 4)))
        >>> prob.a.sum().item(), prob.b.shape
        (1.0, torch.Size([4]))
    """

    geom: Geometry
    a: torch.Tensor
    b: torch.Tensor
    rho_a: float | None
    rho_b: float | None

    def __init__(self, geom: Geometry, a=None, b=None, rho_a=None, rho_b=None):
        if not isinstance(geom, Geometry):
            raise TypeError(f"geom: expected a monge Geometry (DenseCost, PointCloud, ...), got {type(geom).__name__}")
        src, tgt = geom.source_shape, geom.target_shape  # (n,), (m,) or a grid's shape: weights carry it
        n, m = (src[0], tgt[0]) if len(src) == 1 and len(tgt) == 1 else (src, tgt)
        like = geom.like()
        k = len(src)
        same = (a is b) and n == m  # one measure against itself (e.g. the self terms of a divergence)
        a = check_weights(a, "a", n, like, size_name="n")
        b = a if same else check_weights(b, "b", m, like, size_name="m")
        check_positive(rho_a, "rho_a", allow_none=True)
        check_positive(rho_b, "rho_b", allow_none=True)
        check_batch(geom=geom.batch_shape, a=a.shape[: a.dim() - k], b=b.shape[: b.dim() - k])
        if rho_a is None and rho_b is None and not same:
            b = balance_masses(a, b, k=k)
        object.__setattr__(self, "geom", geom)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "rho_a", rho_a)
        object.__setattr__(self, "rho_b", rho_b)

    def self_term(self, geom: Geometry, side: int) -> "LinearProblem":
        """The problem of one side's measure against itself on ``geom`` (that side's support against itself, e.g.
        :meth:`~monge.geometry.PointCloud.self_cloud`), with that side's validated weights and penalty: the self
        terms of a Sinkhorn divergence, without checking the weights again (they were, for this problem).

        Example:
            >>> import torch
            >>> from monge.geometry import PointCloud
            >>> prob = LinearProblem(PointCloud(torch.rand(4, 2), torch.rand(3, 2)))
            >>> bb = prob.self_term(prob.geom.self_cloud(1), 1)
            >>> bb.a is bb.b is prob.b, bb.geom.shape
            (True, (3, 3))
        """
        w, rho = (self.b, self.rho_b) if side else (self.a, self.rho_a)
        n = w.shape[w.dim() - self.geom.event_ndim :]
        if tuple(geom.source_shape) != tuple(n) or tuple(geom.target_shape) != tuple(n):
            raise ValueError(f"geom: expected the support of side {side} against itself, of shape {tuple(n) * 2}, "
                             f"got source {tuple(geom.source_shape)} and target {tuple(geom.target_shape)}")
        check_batch(geom=geom.batch_shape, a=w.shape[: w.dim() - len(n)])
        prob = LinearProblem.__new__(LinearProblem)
        for k, v in (("geom", geom), ("a", w), ("b", w), ("rho_a", rho), ("rho_b", rho)):
            object.__setattr__(prob, k, v)
        return prob

    @property
    def is_balanced(self) -> bool:
        return self.rho_a is None and self.rho_b is None

    @property
    def batch_shape(self) -> torch.Size:
        k = self.geom.event_ndim
        return broadcast_shapes(self.geom.batch_shape, self.a.shape[: self.a.dim() - k],
                                      self.b.shape[: self.b.dim() - k])

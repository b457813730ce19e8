"""The result of partial optimal transport (:func:`monge.partial_wasserstein`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .convergence import Convergence

__all__ = ["PartialResult"]


@dataclass(frozen=True)
class PartialResult:
    r"""Partial OT between ``a`` and ``b`` moving the mass ``m``: the value, the plan and the dual certificate.

    The duals solve :math:`\max \langle a, f\rangle + \langle b, g\rangle + m\lambda` over :math:`f \le 0`,
    :math:`g \le 0` and :math:`f_i + g_j + \lambda \le C_{ij}` (exact), or its entropic counterpart; a source
    point with :math:`f_i < 0` sends all its mass, one with :math:`f_i = 0` may keep some back.

    Attributes:
        value: the optimal value, batch shape; envelope gradients: :math:`\partial/\partial C = P`,
            :math:`\partial/\partial a = f`, :math:`\partial/\partial b = g`, :math:`\partial/\partial m = \lambda`
            (exact; the entropic value's gradients follow from its dual in the same way).
        f, g: the dual potentials ``(..., n)`` / ``(..., m)``, both <= 0. lam: the multiplier of the mass
            constraint, batch shape. mass: the mass moved, batch shape. eps: ``None`` (exact) or the temperature.
        convergence: exact: the network simplex's record (duality gap) of the augmented problem; entropic: the
            KKT residual (l1, units of the weights) of the returned duals.
    """

    value: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    lam: torch.Tensor
    mass: torch.Tensor
    eps: float | None
    convergence: Convergence
    _plan: Callable[[], torch.Tensor] = field(repr=False, compare=False)

    @property
    def plan(self) -> torch.Tensor:
        """The transport plan ``(..., n, m)`` (dense; its total mass is ``mass``)."""
        return self._plan()

    @property
    def marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P 1, P^T 1)``: what each source point sends and each target point receives (<= a, <= b)."""
        P = self.plan
        return P.sum(-1), P.sum(-2)

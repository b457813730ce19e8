"""The result of a fixed-support entropic barycenter: :class:`BarycenterResult`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .convergence import Convergence

__all__ = ["BarycenterResult", "k_first", "k_back"]


def k_first(t: torch.Tensor, k: int) -> torch.Tensor:
    """``(..., K, *support)`` -> ``(K, ..., *support)``: K leads, so it broadcasts against a batched geometry."""
    return t.movedim(t.dim() - k - 1, 0)


def k_back(t: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`k_first`."""
    return t.movedim(0, t.dim() - k - 1)


@dataclass(frozen=True)
class BarycenterResult:
    r"""An entropic barycenter and the potentials of its K couplings.

    .. math::
        P_k = \exp\big((f_k \oplus g_k - C)/\varepsilon\big), \qquad P_k 1 \approx a_k, \quad P_k^\top 1 \approx b

    Attributes:
        barycenter: ``b``, ``(..., *support)`` (a grid: the grid shape), differentiable according to ``grad``.
        f, g: potentials of the K couplings, ``(..., K, *source support)`` and ``(..., K, *target support)``.
        eps: the temperature. problem: the :class:`~monge.problems.barycenter.BarycenterProblem` solved.
        convergence: ``error`` (criterion ``"marginal_l1"``), per batch element, measured on the returned
            potentials and barycenter: the max over k of :math:`\|P_k 1 - a_k\|_1 + \|P_k^\top 1 - b\|_1`
            (unbalanced: of the first-order conditions), plus, debiased, the residual
            :math:`\|d \odot K d - b\|_1` of the debiasing potential; ``errors``: its trace at check points.

    Example:
        >>> import torch
        >>> from monge.geometry import Grid
        >>> from monge.problems.barycenter import BarycenterProblem
        >>> from monge.solvers.barycenter import Barycenter
        >>> a = torch.zeros(2, 16, dtype=torch.float64); a[0, 2] = a[1, 10] = 1
        >>> res = Barycenter(eps=1e-2)(BarycenterProblem(Grid(16, dtype=torch.float64), a))
        >>> rows, cols = res.marginals
        >>> bool((rows - a).abs().sum(-1).max() + (cols - res.barycenter).abs().sum(-1).max() <= 1e-7)
        True
    """

    barycenter: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    eps: float
    problem: object
    convergence: Convergence

    @property
    def marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P_k 1, P_k^T 1)`` for all k: ``(..., K, *source)``, ``(..., K, *target)``, through the softmin."""
        geom, eps, k = self.problem.geom, self.eps, self.problem.event_ndim
        f, g = k_first(self.f, k), k_first(self.g, k)
        rows = torch.exp((f - geom.softmin(g, eps, 1)) / eps)
        cols = torch.exp((g - geom.softmin(f, eps, 0)) / eps)
        return k_back(rows, k), k_back(cols, k)

    @property
    def plans(self) -> torch.Tensor:
        """The dense couplings ``(..., K, n, m)`` (grids: flattened cells); small problems only."""
        k = self.problem.event_ndim
        f = self.f.reshape(*self.f.shape[: self.f.dim() - k], -1)
        g = self.g.reshape(*self.g.shape[: self.g.dim() - k], -1)
        C = self.problem.geom.cost()
        return torch.exp((f.unsqueeze(-1) + g.unsqueeze(-2) - C.unsqueeze(-3)) / self.eps)

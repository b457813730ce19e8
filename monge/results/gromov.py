"""The result of a (fused, unbalanced, entropic) Gromov-Wasserstein problem."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .convergence import Convergence

__all__ = ["GWResult"]


@dataclass(frozen=True)
class GWResult:
    r"""Solution of a (fused) Gromov-Wasserstein problem.

    Attributes:
        plan: the transport plan ``(n, m)`` (dense; an exact CG plan is a convex combination of few vertices).
        value: the objective at ``plan``, differentiable (envelope, see the solvers):
            :math:`(1 - \alpha)\,\text{linear\_term} + \alpha\,\text{quadratic\_term}` (``+ eps KL(P | a b^T)``
            for the entropic solver).
        linear_term: :math:`\langle M, P\rangle` (0 without a fused cost).
        quadratic_term: :math:`E(P) = \sum L(C^x_{ik}, C^y_{jl}) P_{ij} P_{kl} \ge 0` for the losses here, the GW
            transport term (never negative, also for the entropic solver).
        f, g: the dual potentials of the last linearised problem, at ``plan`` (gradients w.r.t. the weights).
        convergence: the outer loop's record, with the inner solves aggregated in ``convergence.levels``.
    """

    plan: torch.Tensor
    value: torch.Tensor
    linear_term: torch.Tensor
    quadratic_term: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    convergence: Convergence

    @property
    def marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.plan.sum(-1), self.plan.sum(-2)

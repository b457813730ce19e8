"""The result of a (fused, unbalanced, entropic) Gromov-Wasserstein problem."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .convergence import Convergence
from .linear import SparsePlan

__all__ = ["GWResult", "ExactGWResult"]


@dataclass(frozen=True)
class GWResult:
    r"""Solution of a (fused) Gromov-Wasserstein problem.

    Attributes:
        plan: the transport plan ``(n, m)`` (dense; an exact CG plan is a convex combination of few vertices).
        value: the objective at ``plan``, differentiable (envelope, exact at a stationary point; see the solvers;
            with ``EntropicGromovWasserstein(grad="implicit")`` the ``plan`` and both terms are differentiable too):
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


@dataclass(frozen=True)
class ExactGWResult(SparsePlan):
    r"""Solution of a (fused) Gromov-Wasserstein problem by the exact conditional-gradient solver: the plan is held
    sparse, as triplets (a vertex of the transport polytope has at most ``n + m - 1`` nonzeros; a plan the line
    search left between vertices has the union of their supports), like :class:`~monge.results.ExactResult`.

    Attributes:
        value, linear_term, quadratic_term, f, g, convergence: as in :class:`GWResult`.
        rows, cols, vals: the nonzeros of the plan, ``(K,)`` each; ``shape = (n, m)``. A batch of ``B`` problems
            (``monge.gromov_wasserstein`` on ``(B, n, d)`` inputs): ``(B, K)``, ``K`` the largest support of the
            batch, shorter supports padded with zeros at ``(0, 0)`` (as :class:`~monge.results.ExactResult`);
            ``value``, ``f``, ``g``, ``convergence`` get the leading ``B``.

    :attr:`plan` materialises the dense ``(n, m)`` plan on each access; :attr:`plan_sparse` is a coalesced
    ``torch.sparse_coo_tensor``; :attr:`marginals` never forms the dense plan.

    Example:
        >>> import torch, monge
        >>> x = torch.rand(8, 2, dtype=torch.float64)
        >>> res = monge.gromov_wasserstein(x, torch.rand(6, 3, dtype=torch.float64))
        >>> res.vals.numel() <= 8 + 6 - 1, res.plan_sparse.shape, bool(torch.allclose(res.marginals[0], res.plan.sum(1)))
        (True, torch.Size([8, 6]), True)
    """

    value: torch.Tensor
    linear_term: torch.Tensor
    quadratic_term: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    convergence: Convergence
    rows: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor
    shape: tuple[int, int]

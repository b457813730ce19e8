"""Results of the applications: flows, barycentric coordinates, unmixing and dictionaries, interpolations."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import as_tensor
from .convergence import Convergence

__all__ = [
    "CoordinatesResult",
    "DictionaryResult",
    "DisplacementInterpolation",
    "JKOResult",
    "ParticleFlowResult",
    "UnmixResult",
    "as_times",
]


@dataclass(frozen=True)
class ParticleFlowResult:
    """A particle flow.

    Attributes:
        snapshots: ``(n_steps + 1, ..., n, d)`` positions (detached), the initial cloud first.
        losses: ``(n_steps + 1, ...)`` the loss at every snapshot.
        convergence: ``converged`` (loss <= tol; all True without a tol), ``n_iters`` (steps taken), status,
            ``error`` the final loss (criterion ``"loss"``).
        lr: the step size.
    """

    snapshots: torch.Tensor
    losses: torch.Tensor
    convergence: Convergence
    lr: float

    @property
    def final(self) -> torch.Tensor:
        """The final positions ``(..., n, d)``."""
        return self.snapshots[-1]


@dataclass(frozen=True)
class JKOResult:
    r"""A discrete gradient flow :math:`\mu_0, \mu_1, \dots, \mu_T` on a grid.

    Attributes:
        snapshots: ``(n_steps + 1, ..., n_1, ..., n_d)``: :math:`\mu_0` and the measure after each step.
        energies: ``(n_steps + 1, ...)``: :math:`F(\mu_t)` of every snapshot (``inf`` where a constraint fails).
        convergence: per step and batch element (leading dimension ``n_steps``): ``converged``, ``n_iters`` (inner
            iterations), ``error`` (the l1 error on :math:`P 1 = \mu_t` at the end of the step), status.
        inner_errors: one trace ``(n_checks, ...)`` of the inner errors per step.
        tau, eps: the time step and the entropic temperature (cost units).
    """

    snapshots: torch.Tensor
    energies: torch.Tensor
    convergence: Convergence
    inner_errors: tuple[torch.Tensor, ...]
    tau: float
    eps: float

    @property
    def final(self) -> torch.Tensor:
        """The last snapshot :math:`\\mu_T`."""
        return self.snapshots[-1]


@dataclass(frozen=True)
class CoordinatesResult:
    """Barycentric coordinates ``weights (K,)`` in the simplex and their barycenter (the support's shape).

    Attributes:
        weights: ``(K,)``. barycenter: the fitted barycenter :math:`P_L(\\lambda)`.
        losses: the loss at each evaluation of the optimiser (line searches included).
        convergence: the optimiser's stop: ``error`` (criterion ``"loss_change"``: the relative loss change of the
            last step; L-BFGS: ``"min(grad_max, loss_change)"``, also the gradient's largest entry w.r.t. the
            logits at the returned weights), ``n_iters``
            (optimiser iterations), status (``"stalled"``: L-BFGS stopped making progress above ``tol``); the level
            ``"barycenter"`` records the final barycenter's own loop (a fixed count of ``bary_iter`` iterations:
            informative, it does not decide ``converged``).
    """

    weights: torch.Tensor
    barycenter: torch.Tensor
    losses: torch.Tensor
    convergence: Convergence

    @property
    def converged(self) -> bool:
        return self.convergence.all_converged

    @property
    def n_iters(self) -> int:
        return int(self.convergence.n_iters)


@dataclass(frozen=True)
class UnmixResult:
    """Unmixing weights ``weights (..., K)``, the mixture ``(..., *support)``, the objective and its trace.

    ``convergence.error`` holds the Frank-Wolfe gap (criterion ``"fw_gap"``, an upper bound of the suboptimality
    in loss units for a linear mixture; a stationarity measure for ``mixing="barycenter"``).
    """

    weights: torch.Tensor
    mixture: torch.Tensor
    value: torch.Tensor
    trace: torch.Tensor
    convergence: Convergence


@dataclass(frozen=True)
class DictionaryResult:
    """Learned ``atoms (K, *support)``, ``weights (N, K)``, their ``reconstruction (N, *support)``, the loss trace.

    ``convergence.error`` is the relative change of the mean loss over the last 20 steps (criterion
    ``"loss_change"``)."""

    atoms: torch.Tensor
    weights: torch.Tensor
    reconstruction: torch.Tensor
    trace: torch.Tensor
    convergence: Convergence


def as_times(t, like: torch.Tensor) -> torch.Tensor:
    """Times ``t`` (a number or ``(T,)``) in ``[0, 1]`` as a tensor of ``like``'s dtype and device."""
    tt = as_tensor(t, "t", dtype=like.dtype, device=like.device).to(like)
    if tt.dim() > 1:
        raise ValueError(f"t: expected a number or a 1-D sequence of times (T,), got shape {tuple(tt.shape)}")
    if not bool(((tt >= 0) & (tt <= 1)).all()):
        raise ValueError(f"t: expected times in [0, 1], got {tt.tolist()}")
    return tt


@dataclass(frozen=True)
class DisplacementInterpolation:
    r"""The measures :math:`\mu_t = \sum_k w_k \delta_{(1-t) s_k + t e_k}` along a transport plan.

    Attributes:
        start: ``s (..., K, d)``, end: ``e (..., K, d)``: atom ``k`` travels from ``s_k`` to ``e_k``.
        weights: ``w (..., K)`` (padding atoms of a batch have weight 0).
        method: ``"exact"`` (McCann interpolation, a W_2 geodesic) or ``"sinkhorn"`` (barycentric projection:
            atoms ``x_i`` move to :math:`T(x_i) = \sum_j P_{ij} y_j / a_i`; the end measure is *not*
            :math:`\mu_1` but a contraction of it, shrunk towards local means by about eps).

    Example:
        >>> import torch
        >>> s, e = torch.zeros(1, 2), torch.ones(1, 2)
        >>> DisplacementInterpolation(s, e, torch.ones(1), "exact").at(0.25).tolist()
        [[0.25, 0.25]]
    """

    start: torch.Tensor
    end: torch.Tensor
    weights: torch.Tensor
    method: str

    def at(self, t) -> torch.Tensor:
        """Atom positions at time(s) ``t``: ``(..., K, d)`` for a number, ``(T, ..., K, d)`` for ``t (T,)``."""
        tt = as_times(t, self.start)
        tt = tt.reshape(*tt.shape, *([1] * self.start.dim()))
        return (1 - tt) * self.start + tt * self.end

    def measure(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """``(points, weights)`` of :math:`\\mu_t`; the weights do not depend on ``t`` (mass moves, it is conserved)."""
        return self.at(t), self.weights

    @property
    def value(self) -> torch.Tensor:
        r""":math:`\sum_k w_k \|e_k - s_k\|^2`: :math:`W_2^2(\mu_0, \mu_1)` for the exact plan."""
        return (self.weights * ((self.end - self.start) ** 2).sum(-1)).sum(-1)

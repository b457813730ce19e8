"""Results of free-support problems: the free-support barycenter and the k-means quantisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .convergence import Convergence

__all__ = ["FreeSupportResult", "KMeansResult"]


@dataclass(frozen=True)
class FreeSupportResult:
    r"""A free-support barycenter :math:`\sum_i b_i \delta_{X_i}`.

    Attributes:
        support: ``X (k, d)``, the barycenter's points.
        weights: ``b (k,)``, its weights (summing to 1).
        value: :math:`\sum_{k'} \lambda_{k'} W_2^2` at the returned support (entropic: transport costs
            :math:`\langle P, C\rangle` of the Sinkhorn plans), a 0-d tensor.
        costs: ``(K,)`` the transport cost to each input at the returned support.
        objective: ``(n_iters,)`` the objective at the support of each iteration, before its move.
        convergence: ``converged`` (0-d), ``n_iters``, ``status``, ``error`` (criterion ``"relative_move"``: the
            last move of the support relative to the inputs' spread), ``errors`` (the moves), and the level
            ``"ot"``: the K inner transport solves at the returned support (shape ``(K,)``); the barycenter is
            converged only if they are (``convergence.level("ot")`` says which failed).
    """

    support: torch.Tensor
    weights: torch.Tensor
    value: torch.Tensor
    costs: torch.Tensor
    objective: torch.Tensor
    convergence: Convergence


@dataclass(frozen=True)
class KMeansResult:
    r"""A k-point quantisation :math:`\sum_j w_j \delta_{c_j}` of the data.

    Attributes:
        centers: ``(k, d)``. weights: ``(k,)`` the centres' masses (cell masses, or ``1/k`` for equal masses).
        labels: ``(n,)`` int64: the centre of each point (equal masses: the centre receiving most of its mass).
        plan: the transport plan as a sparse COO tensor ``(k, n)`` (free masses: ``a_i`` at ``(labels_i, i)``).
        inertia: :math:`W_2^2` between the quantisation and the data (weights normalised to 1), 0-d; ``inf`` (and
            a warning) where it overflows the dtype although the centres do not.
        inertia_trace: inertia along the iterations of the best restart.
        convergence: ``converged`` (0-d), ``n_iters``, ``status``, ``error`` (criterion ``"relative_move"``: the
            mass-weighted root-mean-square move of the centres over the data's standard deviation), ``errors``.
    """

    centers: torch.Tensor
    weights: torch.Tensor
    labels: torch.Tensor
    plan: torch.Tensor
    inertia: torch.Tensor
    inertia_trace: torch.Tensor
    convergence: Convergence

    @property
    def n_iters(self) -> int:
        """Lloyd (or equal-mass) iterations of the returned restart."""
        return int(self.convergence.n_iters)

    @property
    def converged(self) -> bool:
        return self.convergence.all_converged

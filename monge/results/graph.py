r"""Result of W1 (the transshipment / Beckmann problem) on a graph: edge flows, node potential, certificate."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .convergence import Convergence

__all__ = ["GraphW1Result"]


@dataclass(frozen=True)
class GraphW1Result:
    r"""Solution of :math:`\min \sum_e \ell_e |F_e|` subject to :math:`\mathrm{div} F = a - b` on a graph.

    Attributes:
        value: the optimal cost :math:`\sum_e \ell_e |F_e|` (= W1 for the graph's shortest-path metric).
        flow: ``(E,)`` edge flows in the input edge order. Undirected graphs: signed, positive along
            ``edges[e, 0] -> edges[e, 1]``; directed graphs: nonnegative along the arc.
        potential: ``(n,)`` the Kantorovich potential :math:`u` with :math:`u_i - u_j \le \ell_e` on every arc
            ``i -> j`` (undirected: :math:`|u_i - u_j| \le \ell_e`, 1-Lipschitz), tight where flow passes, and
            :math:`\langle a - b, u\rangle` = value at optimality.
        convergence: status, pivots, ``error`` = the largest violation of the Lipschitz constraints
            (``criterion="lipschitz_violation"``, cost units) and ``duality_gap`` = value - <a - b, u>.
        divergence_error: :math:`\|\mathrm{div} F - (a - b)\|_1` of the returned flow (units of the weights).
    """

    value: torch.Tensor
    flow: torch.Tensor
    potential: torch.Tensor
    convergence: Convergence
    divergence_error: torch.Tensor

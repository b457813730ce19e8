r"""Optimal quantisation by Lloyd's algorithm with Laguerre cells (blue-noise sampling of a density).

Minimise :math:`W_2^2(\mu, \sum_j b_j \delta_{y_j})` over the positions with the masses fixed: solve the
semi-discrete problem, then move each :math:`y_j` to the centroid of its Laguerre cell (the gradient step
:math:`y_j \leftarrow y_j - \nabla_{y_j} W_2^2 / (2 b_j)`). The value decreases at each step.

Example:
    >>> import torch
    >>> y0 = torch.tensor([[0.2, 0.2], [0.3, 0.9], [0.8, 0.6]], dtype=torch.float64)
    >>> r = laguerre_lloyd(y0, n_iter=5)
    >>> bool(r.trace[-1] < r.trace[0])
    True
"""

from __future__ import annotations

import torch

from ...results.semidiscrete import LloydResult
from .api import semidiscrete

__all__ = ["LloydResult", "laguerre_lloyd"]


def laguerre_lloyd(y0: torch.Tensor, b=None, density=None, *, n_iter: int = 20, box=None,
                   tol: float = 1e-9) -> LloydResult:
    """``n_iter`` Lloyd steps from ``y0 (m, 2)``: exact Newton solves (warm-started from the last weights),
    moves to the cells' centroids."""
    y, values = y0.detach().clone(), []
    r = semidiscrete(y, b, density, box=box, tol=tol)
    values.append(r.value.detach())
    for _ in range(n_iter):
        y = torch.where(torch.isfinite(r.centroids), r.centroids, y)
        warm = semidiscrete(y, b, density, box=box, tol=tol, psi0=r.psi)  # the weights move little
        r = warm if warm.convergence.all_converged else semidiscrete(y, b, density, box=box, tol=tol)
        values.append(r.value.detach())
    return LloydResult(y=y, ot=r, trace=torch.stack(values))

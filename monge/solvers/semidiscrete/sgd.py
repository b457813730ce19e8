r"""Averaged stochastic gradient ascent on the semi-dual, any dimension, :math:`\mu` known by samples.

.. math::
    \max_\psi\ \mathbb{E}_{x \sim \mu}\Big[\min_j\, c(x, y_j) - \psi_j\Big] + \sum_j \psi_j b_j,
    \qquad c(x, y) = |x - y|^2 \ \text{or}\ |x - y|

whose stochastic gradient at a sample is :math:`b - e_{j(x)}` (:math:`j(x)` the Laguerre cell of :math:`x`).
With ``eps > 0`` the min becomes a soft-min, :math:`-\varepsilon \log \sum_j b_j e^{(\psi_j - |x - y_j|^2) /
\varepsilon}`, and the gradient :math:`b - \pi(x)` with :math:`\pi(x) = \mathrm{softmax}((\psi - |x - y|^2)
/ \varepsilon + \log b)` (Genevay, Cuturi, Peyre and Bach, 2016). Steps :math:`\gamma_k = \gamma / \sqrt{k}`;
the returned weights are the average of the iterates.

Example:
    >>> import torch
    >>> y = torch.tensor([[0.25, 0.5], [0.75, 0.5]], dtype=torch.float64)
    >>> g = torch.Generator().manual_seed(0)
    >>> psi, _ = averaged_sgd(y, torch.tensor([0.5, 0.5], dtype=torch.float64),
    ...                       lambda k: torch.rand(k, 2, generator=g, dtype=torch.float64), n_steps=200)
    >>> abs(float(psi[0] - psi[1])) < 0.05  # the two cells split the square evenly
    True
"""

from __future__ import annotations

import time

import torch

__all__ = ["averaged_sgd", "power_scores"]


def power_scores(x: torch.Tensor, y: torch.Tensor, psi: torch.Tensor, cost: str = "sqeuclidean") -> torch.Tensor:
    r""":math:`\psi_j - c(x_i, y_j)`, ``(n, m)``, for :math:`c = |x - y|^2` (``"sqeuclidean"``) or :math:`|x - y|`
    (``"euclidean"``); the cell of :math:`x_i` (Laguerre, or Apollonius for ``|x - y|``) is the argmax over ``j``."""
    dist = torch.cdist(x, y)
    return psi - (dist.square() if cost == "sqeuclidean" else dist)


def averaged_sgd(y: torch.Tensor, b: torch.Tensor, sampler, *, eps: float | None = None, lr: float | None = None,
                 batch_size: int = 256, n_steps: int = 2000, psi0=None, checkpoints: int = 0,
                 cost: str = "sqeuclidean"):
    r"""Averaged SGD on :math:`\psi`. Returns ``(psi_bar, trace)``; ``trace`` holds ``(seconds, psi_bar)`` at
    ``checkpoints`` evenly spaced steps (for mass-error-per-second curves). ``lr`` defaults to 6 x the mean
    squared spread of ``y`` (psi is in cost units); the best of 0.1-30 on the unit square with 10 and 100 Diracs.
    ``cost="euclidean"`` (:math:`|x - y|`): the same rule with the spread (not squared)."""
    m = y.shape[0]
    psi = y.new_zeros(m) if psi0 is None else psi0.detach().clone().to(y)
    bar = psi.clone()
    if lr is None:
        spread = float(((y - y.mean(0)) ** 2).sum(1).mean().clamp_min(1e-12))
        lr = 6.0 * (spread if cost == "sqeuclidean" else spread ** 0.5)
    logb = b.log()
    every = max(n_steps // checkpoints, 1) if checkpoints else 0
    trace, t0 = [], time.perf_counter()
    for k in range(1, n_steps + 1):
        s = power_scores(sampler(batch_size).to(y), y, psi, cost)
        if eps is None:
            p = torch.zeros_like(s).scatter_(1, s.argmax(1, keepdim=True), 1.0)
        else:
            p = torch.softmax(s / eps + logb, dim=1)
        psi = psi + (lr / k ** 0.5) * (b - p.mean(0))
        bar = bar + (psi - bar) / (k + 1)
        if every and k % every == 0:
            trace.append((time.perf_counter() - t0, bar.clone()))
    return bar - bar.mean(), trace

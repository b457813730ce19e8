r"""Closed-form OT values for testing: Diracs, 1-D quantiles, Gaussians, permutations."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["dirac_wasserstein", "quantile_wasserstein_1d", "gaussian_w2", "permutation_problem", "grid_histograms",
           "grid_cost"]


def dirac_wasserstein(s: torch.Tensor, t: torch.Tensor, p: float = 2) -> torch.Tensor:
    r""":math:`W_p(\delta_s, \delta_t) = \|s - t\|` for every p.

    Example:
        >>> import torch
        >>> float(dirac_wasserstein(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0])))
        5.0
    """
    return (s - t).norm(dim=-1)


def quantile_wasserstein_1d(x: np.ndarray, y: np.ndarray, a=None, b=None, p: float = 2) -> float:
    r"""Reference :math:`W_p` on the line by brute-force quantile integration (numpy, float64).

    .. math:: W_p^p = \int_0^1 |F^{-1}(t) - G^{-1}(t)|^p\,dt

    Both quantile functions are step functions: integrate exactly over the merged breakpoints.

    Example:
        >>> round(quantile_wasserstein_1d([0.0, 1.0], [2.0, 3.0], p=1), 9)
        2.0
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    a = np.full(len(x), 1 / len(x)) if a is None else np.asarray(a, float) / np.sum(a)
    b = np.full(len(y), 1 / len(y)) if b is None else np.asarray(b, float) / np.sum(b)
    ix, iy = np.argsort(x), np.argsort(y)
    cx, cy = np.cumsum(a[ix]), np.cumsum(b[iy])
    levels = np.unique(np.concatenate([[0.0], cx, cy, [1.0]]).clip(0, 1))
    mids = 0.5 * (levels[1:] + levels[:-1])
    qx = x[ix][np.minimum(np.searchsorted(cx, mids), len(x) - 1)]
    qy = y[iy][np.minimum(np.searchsorted(cy, mids), len(y) - 1)]
    return float(np.sum(np.diff(levels) * np.abs(qx - qy) ** p) ** (1 / p))


def _sqrtm_psd(S: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0, None))) @ V.T


def gaussian_w2(m1, S1, m2, S2) -> float:
    r""":math:`W_2` between Gaussians (Bures-Wasserstein).

    .. math:: W_2^2 = \|m_1 - m_2\|^2 + \operatorname{tr}(S_1 + S_2 - 2 (S_1^{1/2} S_2 S_1^{1/2})^{1/2})

    Example:
        >>> import numpy as np
        >>> round(gaussian_w2(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)), 9)  # sqrt(2 + 2)
        2.0
    """
    m1, m2, S1, S2 = (np.asarray(v, float) for v in (m1, m2, S1, S2))
    r1 = _sqrtm_psd(S1)
    cross = _sqrtm_psd(r1 @ S2 @ r1)
    w2 = np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * cross)
    return float(np.sqrt(max(w2, 0.0)))


def permutation_problem(n: int, d: int = 2, seed: int = 0, dtype=torch.float64):
    r"""Points ``x`` and ``y = x[perm] + small noise`` whose optimal matching is ``perm`` (known answer).

    With points at pairwise distance >= ``delta`` and noise below ``delta / 4`` in each coordinate, matching
    every ``x_i`` to its own perturbed copy is optimal for ``|x - y|^p``, p >= 1 (cyclical monotonicity).
    Returns ``(x, y, perm)`` with ``y[j]`` the copy of ``x[perm[j]]``.

    Example:
        >>> x, y, perm = permutation_problem(5)
        >>> x.shape, sorted(perm.tolist()) == list(range(5))
        (torch.Size([5, 2]), True)
    """
    g = torch.Generator().manual_seed(seed)
    side = int(np.ceil(n ** (1 / d)))
    grid = torch.stack(torch.meshgrid(*[torch.arange(side, dtype=dtype)] * d, indexing="ij"), -1).reshape(-1, d)
    x = grid[torch.randperm(len(grid), generator=g)[:n]]
    perm = torch.randperm(n, generator=g)
    noise = (torch.rand(n, d, generator=g, dtype=dtype) - 0.5) * 0.1
    return x, x[perm] + noise, perm


def grid_histograms(shape, seed: int, zeros: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two random histograms on a grid of ``shape`` (cubed uniforms: uneven masses), a fraction ``zeros`` of each
    set to 0, normalised to mass 1 (float64 numpy).

    Example:
        >>> a, b = grid_histograms((3, 4), seed=0)
        >>> a.shape, round(float(a.sum()), 12)
        ((3, 4), 1.0)
    """
    rng = np.random.default_rng(seed)
    a, b = rng.random(shape) ** 3, rng.random(shape) ** 3
    a[rng.random(shape) < zeros] = 0.0
    b[rng.random(shape) < zeros] = 0.0
    return a / a.sum(), b / b.sum()


def grid_cost(shape, spacing, p: float) -> np.ndarray:
    r"""The dense ``(N, N)`` cost :math:`\sum_k |h_k (i_k - j_k)|^p` between the cells of a grid (row-major), the
    reference the grid solvers avoid storing.

    Example:
        >>> grid_cost((2, 2), 1.0, 2)[0].tolist()
        [0.0, 1.0, 1.0, 2.0]
    """
    pts = np.stack(np.unravel_index(np.arange(int(np.prod(shape))), shape), 1) * np.asarray(spacing)
    return (np.abs(pts[:, None] - pts[None]) ** p).sum(-1)

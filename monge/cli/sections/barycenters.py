"""Demo section: convolutional Wasserstein barycenters of shapes over a triangle of weights, and an interpolation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ... import data
from ...geometry.grid import Grid
from ...problems.barycenter import BarycenterProblem
from ..report import Section, pyplot, save_figure
from ...solvers.barycenter import Barycenter
from ...api import interpolate_histograms

__all__ = ["section_barycenters", "raster", "simplex_weights"]

_N, _EPS, _TOL = 64, 2e-3, 1e-3  # 64 x 64 images on [0, 1)^2; the kernel width sqrt(eps) is ~3 pixels; a figure
# needs no tighter marginals than 1e-3 (l1)


def raster(name: str, n: int = _N, points: int = 200_000, seed: int = 0) -> torch.Tensor:
    """A shape of :func:`monge.data.shape` as an ``(n, n)`` histogram of mass 1 (row = y from the top).

    Example:
        >>> img = raster("ring", 16)
        >>> tuple(img.shape), round(float(img.sum()), 6)
        ((16, 16), 1.0)
    """
    x = data.shape(name, points, seed=seed).numpy()
    h, _, _ = np.histogram2d(1 - x[:, 1], x[:, 0], bins=n, range=[[0, 1], [0, 1]])
    h = torch.as_tensor(h, dtype=torch.float64)
    return h / h.sum()


def simplex_weights(steps: int) -> list[tuple[int, int, torch.Tensor]]:
    """``(row, col, weights)`` on a triangular lattice of the 2-simplex: row ``i`` has ``i + 1`` points.

    Example:
        >>> [(r, c, w.tolist()) for r, c, w in simplex_weights(1)]
        [(0, 0, [1.0, 0.0, 0.0]), (1, 0, [0.0, 1.0, 0.0]), (1, 1, [0.0, 0.0, 1.0])]
    """
    out = []
    for i in range(steps + 1):
        for j in range(i + 1):
            w = torch.tensor([steps - i, i - j, j], dtype=torch.float64) / steps
            out.append((i, j, w))
    return out


def _triangle(plt, imgs, lattice, steps, out_dir):
    fig, axes = plt.subplots(steps + 1, 2 * steps + 1, figsize=(1.3 * (2 * steps + 1), 1.3 * (steps + 1)))
    for ax in axes.ravel():
        ax.axis("off")
    for (i, j, _), img in zip(lattice, imgs):
        ax = axes[i, steps - i + 2 * j]
        ax.imshow(img.numpy(), cmap="Greys", interpolation="nearest")
    fig.subplots_adjust(wspace=0.02, hspace=0.02)
    save_figure(fig, out_dir / "barycenters_triangle.png", dpi=90, tight=False, crop=True)


def _strip(plt, frames, ts, out_dir):
    fig, axes = plt.subplots(1, len(ts), figsize=(1.5 * len(ts), 1.7))
    for ax, img, t in zip(axes, frames, ts):
        ax.imshow(img.numpy(), cmap="Greys", interpolation="nearest")
        ax.set_title(f"t = {t:.2f}", fontsize=8)
        ax.axis("off")
    save_figure(fig, out_dir / "barycenters_interpolation.png", dpi=90, tight=False, crop=True)


def section_barycenters(out_dir: Path) -> Section:
    """Barycenters of three shapes over a lattice of the simplex (one batched solve), and a displacement strip."""

    plt = pyplot()
    out_dir = Path(out_dir)
    corners = torch.stack([raster("square"), raster("ring", seed=1), raster("moons", seed=2)])
    steps = 4
    lattice = simplex_weights(steps)
    weights = torch.stack([w for _, _, w in lattice])  # (15, 3): one batch
    geom = Grid((_N, _N), dtype=torch.float64)
    t0 = time.perf_counter()
    res = Barycenter(eps=_EPS, tol=_TOL, max_iter=2000)(BarycenterProblem(geom, corners, weights))
    t_tri = time.perf_counter() - t0
    _triangle(plt, res.barycenter, lattice, steps, out_dir)
    ts = [i / 6 for i in range(7)]
    t0 = time.perf_counter()
    strip = interpolate_histograms(raster("heart", seed=3), raster("spiral", seed=4), ts, eps=_EPS, geom="grid",
                                   tol=_TOL, max_iter=2000)
    t_strip = time.perf_counter() - t0
    _strip(plt, strip.barycenter, ts, out_dir)
    conv = res.convergence
    return Section(
        "Wasserstein barycenters of shapes",
        "Entropic barycenters (log-domain iterative Bregman projections over the separable grid soft-min) of a square, "
        f"a ring and two moons rasterised on a {_N}x{_N} grid, for the weights of a triangular lattice of the simplex "
        f"(corners: the inputs), solved as one batch of {len(lattice)} problems; below, the displacement "
        f"interpolation from a heart to a spiral (barycenters with weights (1 - t, t)). eps = {_EPS:g} in units of "
        "the unit square's squared distances.",
        ["barycenters_triangle.png", "barycenters_interpolation.png"],
        {
            "grid": f"{_N}x{_N}, eps = {_EPS:g}",
            "triangle": f"{len(lattice)} barycenters, {int(conv.n_iters.max())} iterations, {t_tri:.2f} s",
            "worst l1 marginal error": f"{float(conv.error.max()):.1e}",
            "all converged": str(conv.all_converged and strip.convergence.all_converged),
            "interpolation": f"{len(ts)} frames, {t_strip:.2f} s",
        },
    )

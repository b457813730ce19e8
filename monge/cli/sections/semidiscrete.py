"""Demo section: semi-discrete OT from an image density (Laguerre cells) and a blue-noise quantisation by Lloyd."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ... import data
from ...solvers.semidiscrete import laguerre_lloyd, semidiscrete
from ..report import Section, pyplot, save_figure

__all__ = ["section_semidiscrete"]


def _image_density(digit: int, side: int, floor: float = 0.02) -> np.ndarray:
    """An embedded 8x8 digit upsampled (bilinear) to side x side, plus a floor, as cell masses summing to 1.

    Returned in the solver's layout: axis 0 along the first coordinate (left to right), axis 1 along the second
    (bottom to top), so ``density[i, j]`` is the image pixel of row ``side - 1 - j``, column ``i``.
    """
    images, labels = data.digits(dtype=torch.float64)
    img = images[int(torch.nonzero(labels == digit)[0])]
    up = torch.nn.functional.interpolate(img[None, None], size=(side, side), mode="bilinear", align_corners=False)
    w = np.flipud(up[0, 0].numpy()).T + floor
    return np.ascontiguousarray(w / w.sum())


def _sample(density: np.ndarray, m: int, seed: int) -> torch.Tensor:
    """m distinct points drawn from the piecewise-constant density (a cell by its mass, uniform inside it)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(density.size, m, p=density.ravel())
    ij = np.stack(np.unravel_index(idx, density.shape), 1)
    return torch.as_tensor((ij + rng.random((m, 2))) / np.array(density.shape))


def _draw(ax, density, res, title):
    from matplotlib.collections import PolyCollection

    ax.imshow(density.T, origin="lower", extent=(0, 1, 0, 1), cmap="Greys", alpha=0.8)
    polys = [c.numpy() for c in res.cells if len(c)]
    ax.add_collection(PolyCollection(polys, facecolors="none", edgecolors="tab:blue", linewidths=0.5))
    ax.scatter(*res.y.T.numpy(), s=3, c="tab:red", zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def _conv_text(res, elapsed):
    conv = res.convergence
    mass_err = float((res.masses - res.b).abs().max())
    return (f"max relative mass error {float(conv.error):.1e} (absolute {mass_err:.1e}), {int(conv.n_iters)} Newton "
            f"steps ({conv.status[0]}), value W_2^2 = {float(res.value):.3e}, {elapsed:.2f} s")


def section_semidiscrete(out_dir: Path, m: int = 400, side: int = 64, n_lloyd: int = 15) -> Section:
    """Laguerre cells of the semi-discrete plan from a digit density to m random Diracs; Lloyd's blue noise."""
    plt = pyplot()
    out_dir = Path(out_dir)
    density = _image_density(3, side)
    y0 = _sample(density, m, seed=0)
    dens_t = torch.as_tensor(density)
    t0 = time.perf_counter()
    res = semidiscrete(y0, density=dens_t)
    t_ot = time.perf_counter() - t0
    t0 = time.perf_counter()
    lloyd = laguerre_lloyd(y0, density=dens_t, n_iter=n_lloyd)
    t_lloyd = time.perf_counter() - t0
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    _draw(axes[0], density, res, f"{m} Diracs drawn from the density (equal masses 1/{m}):\nLaguerre cells of "
                                 f"the optimal plan, each carrying mass 1/{m}")
    _draw(axes[1], density, lloyd.ot, f"after {n_lloyd} Lloyd steps (each Dirac moved to its cell's centroid):\n"
                                      "blue-noise quantisation of the density")
    axes[2].semilogy(np.arange(len(lloyd.trace)), lloyd.trace.numpy(), "o-", ms=3)
    axes[2].set_xlabel("Lloyd step")
    axes[2].set_ylabel("W_2^2(density, Diracs)")
    axes[2].set_title("quantisation error along Lloyd", fontsize=9)
    save_figure(fig, out_dir / "semidiscrete.png", dpi=100)
    return Section(
        "Semi-discrete OT: Laguerre cells and blue noise",
        f"A {side}x{side} piecewise-constant density (an embedded 8x8 digit upsampled, plus a 2% floor so that it is "
        f"positive everywhere) transported to {m} Diracs of equal mass. The optimal plan sends each Laguerre "
        "(power) cell to its Dirac; the damped Newton method of Kitagawa-Merigot-Thibert on exact power diagrams "
        "finds the weights that give every cell exactly its mass, so cells are small where the density is high. "
        "Lloyd's algorithm with these cells (move each Dirac to its cell's centroid, re-solve, warm-started) "
        "decreases W_2^2 between the density and the Diracs at fixed masses: the points spread as blue noise, "
        "evenly with the density and without clumps.",
        ["semidiscrete.png"],
        {"sizes": f"density {side}x{side} cells, {m} Diracs, {n_lloyd} Lloyd steps",
         "semi-discrete OT (random Diracs)": _conv_text(res, t_ot),
         "after Lloyd": _conv_text(lloyd.ot, t_lloyd).replace(f", {t_lloyd:.2f} s", ""),
         "Lloyd: W_2^2 first -> last": f"{float(lloyd.trace[0]):.3e} -> {float(lloyd.trace[-1]):.3e}",
         "Lloyd: time": f"{t_lloyd:.2f} s ({n_lloyd + 1} Newton solves)"},
    )

"""Demo section: free-support barycenter of shapes, McCann interpolation, k-means quantisation (Lloyd vs equal mass)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ... import data
from ...apps.interpolation import displacement_interpolation
from ..report import Section, pyplot, save_figure
from ...solvers.free_support import free_support_barycenter
from ...apps.kmeans import kmeans

__all__ = ["section_free_support"]



def _barycenter_row(axes, metrics):
    names = ["ring", "heart", "square", "moons"]
    xs = [data.shape(nm, 300, seed=i) for i, nm in enumerate(names)]
    t0 = time.perf_counter()
    res = free_support_barycenter(xs, k=300, seed=0, max_iter=50)
    metrics["barycenter"] = (f"{int(res.convergence.n_iters)} iterations, {res.convergence.status[0]}, objective "
                             f"{float(res.objective[0]):.4f} -> {float(res.value):.4f}, {time.perf_counter() - t0:.2f} s")
    for ax, x, nm in zip(axes, xs, names):
        ax.scatter(*x.T, s=3, c="tab:blue")
        ax.set_title(nm)
    axes[-1].scatter(*res.support.T, s=3, c="tab:red")
    axes[-1].set_title("W2 barycenter (equal weights)")


def _interpolation_row(axes, metrics):
    x, y = data.shape("heart", 300, seed=7), data.shape("spiral", 300, seed=8)
    it = displacement_interpolation(x, y)
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    for ax, t, pts in zip(axes, ts, it.at(torch.tensor(ts, dtype=x.dtype))):
        ax.scatter(*pts.T, s=3, c=[(1 - t, 0.2, t)])
        ax.set_title(f"t = {t:g}")
    metrics["interpolation"] = f"{it.weights.shape[-1]} atoms (a permutation), W2 = {float(it.value) ** 0.5:.4f}"


def _kmeans_row(axes, metrics):
    x = data.shape("moons", 2000, seed=9)
    k = 30
    free = kmeans(x, k, seed=0, n_init=3)
    equal = kmeans(x, k, mass="equal", init=free.centers)
    axes[0].scatter(*x.T, s=2, c="0.7")
    axes[0].set_title(f"data: {len(x)} points")
    for ax, res, title in ((axes[1], free, "Lloyd (free masses)"), (axes[2], equal, "equal masses 1/k")):
        ax.scatter(*x.T, s=2, c=res.labels.numpy() % 10, cmap="tab10", alpha=0.4)
        ax.scatter(*res.centers.T, s=4000 * res.weights, marker="o", facecolors="none", edgecolors="k")
        ax.set_title(f"{title}\nW2^2 = {float(res.inertia):.2e}")
    axes[3].bar(range(k), sorted(free.weights.tolist()), color="tab:blue", label="Lloyd")
    axes[3].axhline(1 / k, c="tab:red", label="equal mass 1/k")
    axes[3].set_title("centre masses")
    axes[3].legend(fontsize=7)
    for ax in axes[4:]:
        ax.axis("off")
    metrics["k-means (Lloyd)"] = f"W2^2 = {float(free.inertia):.6f}, {free.n_iters} iterations"
    metrics["equal-mass quantisation"] = f"W2^2 = {float(equal.inertia):.6f}, {equal.n_iters} iterations"


def section_free_support(out_dir: Path) -> Section:
    """Free-support barycenter of 4 shapes, an interpolation strip, and k-means quantisation of a shape."""
    plt = pyplot()
    fig, axes = plt.subplots(3, 5, figsize=(16, 10))
    metrics: dict[str, str] = {}
    _barycenter_row(axes[0], metrics)
    _interpolation_row(axes[1], metrics)
    _kmeans_row(axes[2], metrics)
    for ax in axes.flat:
        if ax is axes[2, 3]:
            continue
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, Path(out_dir) / "free_support.png", dpi=80, tight=False, crop=True)
    return Section(
        "Free-support barycenters, displacement interpolation, quantisation",
        "Top: the W2 barycenter of four shapes by the fixed-point iteration (exact plans, support points moved "
        "to the barycentric projections). Middle: McCann interpolation between a heart and a spiral along the "
        "exact optimal matching. Bottom: k-means as the best k-point approximation in W2: Lloyd's centres carry "
        "their cells' masses; the equal-mass quantisation solves a real OT problem at each step.",
        ["free_support.png"],
        metrics,
    )

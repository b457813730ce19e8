"""``monge demo``: monge's main job on embedded data, written as an HTML report with figures.

Each section is a function ``(out_dir) -> Section`` that computes, draws its PNG and reports its numbers.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import data
from ..api import solve_points, wasserstein
from ..solvers.schedules import EpsScaling
from .report import Section, pyplot, write_report, save_figure
from .sections.barycenters import section_barycenters
from .sections.color import section_color
from .sections.dictionary import section_dictionary
from .sections.exact_scale import section_exact_scale
from .sections.flows import section_flows, section_multilabel
from .sections.free_support import section_free_support
from .sections.gaussian import section_gaussian
from .sections.generative import section_generative
from .sections.gromov import section_gromov
from .sections.partial import section_partial
from .sections.registration import section_registration
from .sections.sample_complexity import section_sample_complexity
from .sections.semidiscrete import section_semidiscrete
from .sections.w1_map import section_w1_map
from .sections.wmd import section_wmd

__all__ = ["run_demo", "SECTIONS"]


def _draw_plan(ax, x, y, rows, cols, vals, max_lines=3000):
    """Segments x_i -> y_j for the plan's nonzeros, opacity proportional to the mass moved."""
    from matplotlib.collections import LineCollection

    keep = vals > 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = torch.argsort(vals, descending=True)[:max_lines]
    segs = torch.stack([x[rows[order]], y[cols[order]]], 1).numpy()
    alpha = (vals[order] / vals.max()).clamp(0.08, 1).numpy()
    colors = [(0.2, 0.2, 0.2, float(al) * 0.7) for al in alpha]
    ax.add_collection(LineCollection(segs, colors=colors, linewidths=0.6))


def section_matching(out_dir: Path) -> Section:
    """Two shapes of 600 points matched exactly (uniform weights: the optimal plan is a permutation)."""
    plt = pyplot()
    n = 600
    x, y = data.shape("heart", n, seed=1), data.shape("ring", n, seed=2)
    t0 = time.perf_counter()
    res = solve_points(x, y)
    elapsed = time.perf_counter() - t0
    fig, ax = plt.subplots(figsize=(6, 6))
    _draw_plan(ax, x, y, res.rows, res.cols, res.vals)
    ax.scatter(*x.T, s=6, c="tab:red", label="x: heart")
    ax.scatter(*y.T, s=6, c="tab:blue", label="y: ring")
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    ax.set_title(f"exact OT, squared Euclidean cost: value = {float(res.value):.5f}")
    save_figure(fig, out_dir / "matching.png", dpi=110, tight=False, crop=True)
    conv = res.convergence
    return Section(
        "Exact matching of two point clouds",
        f"{n} points on a heart sent to {n} points on a ring by the exact OT plan for the squared Euclidean "
        "cost. With uniform weights and n = m, an optimal plan is a permutation (Birkhoff), so each point "
        "moves to exactly one point.",
        ["matching.png"],
        {
            "value <P, C>": f"{float(res.value):.6f}",
            "W_2": f"{float(res.value) ** 0.5:.6f}",
            "status": conv.status[0],
            "duality gap": f"{float(conv.duality_gap):.2e}",
            "marginal error (l1)": f"{float(conv.error):.2e}",
            "solve time": f"{elapsed:.3f} s",
        },
    )


def section_digits(out_dir: Path) -> Section:
    """Weighted clouds from two digit images: the network simplex with non-uniform weights."""
    plt = pyplot()
    (x, a), (y, b) = data.digit_cloud(0), data.digit_cloud(6)
    res = solve_points(x, y, a, b)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    images, _ = data.digits()
    axes[0].imshow(torch.cat([images[0], images[6]], 1), cmap="gray_r")
    axes[0].set_title("the two embedded digit images")
    axes[0].axis("off")
    ax = axes[1]
    _draw_plan(ax, x, y, res.rows, res.cols, res.vals)
    ax.scatter(*x.T, s=400 * a, c="tab:red", alpha=0.7, label="digit 0 (weights = intensity)")
    ax.scatter(*y.T, s=400 * b, c="tab:blue", alpha=0.7, label="digit 6")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"exact plan: {int((res.vals > 0).sum())} nonzeros (<= n + m - 1 = {len(x) + len(y) - 1})")
    save_figure(fig, out_dir / "digits.png", dpi=110, tight=False, crop=True)
    w2 = wasserstein(x, y, a, b, p=2)
    w1 = wasserstein(x, y, a, b, p=1)
    return Section(
        "Weighted point clouds from digit images",
        "Each 8x8 digit image becomes a point cloud of its inked pixels weighted by intensity; the network "
        "simplex solves the transport between them exactly and returns a sparse basic plan.",
        ["digits.png"],
        {
            "W_1": f"{float(w1):.6f}",
            "W_2": f"{float(w2):.6f}",
            "support sizes": f"{len(x)} x {len(y)}",
            "duality gap": f"{float(res.convergence.duality_gap):.2e}",
        },
    )


def section_entropic(out_dir: Path) -> Section:
    """Entropic plans between two shapes as eps shrinks: from blurred couplings to the sharp exact plan."""
    plt = pyplot()
    x, y = data.shape("moons", 300, seed=3), data.shape("spiral", 300, seed=4)
    epss = [1e-1, 1e-2, 1e-3]
    fig, axes = plt.subplots(1, len(epss), figsize=(5 * len(epss), 5))
    metrics = {}
    for ax, eps in zip(axes, epss):
        res = solve_points(x, y, eps=eps, schedule=EpsScaling(0.5))
        P = res.plan
        T = res.transport()
        ax.scatter(*x.T, s=5, c="tab:red")
        ax.scatter(*y.T, s=5, c="tab:blue")
        ax.quiver(*x.T, *(T - x).T, angles="xy", scale_units="xy", scale=1, width=0.002, alpha=0.5)
        ax.set_title(f"eps = {eps:g}: {int(res.convergence.n_iters)} iterations")
        ax.set_aspect("equal")
        metrics[f"eps={eps:g}"] = (f"<P,C> = {float(res.transport_cost):.5f}, entropy-regularised value = "
                                   f"{float(res.value):.5f}, marginal error {float(res.convergence.error):.1e}, "
                                   f"plan entries > 1e-6 x max: {int((P > 1e-6 * P.max()).sum())}")
    metrics["exact <P,C>"] = f"{float(solve_points(x, y).value):.5f}"
    save_figure(fig, out_dir / "entropic.png", dpi=90, tight=False, crop=True)
    return Section(
        "Entropic OT: the plan as eps shrinks",
        "Log-domain Sinkhorn with eps-scaling between two generated shapes; arrows show the entropic map "
        "(barycentric projection of the plan). Large eps averages the targets (arrows shrink to the mean), "
        "small eps approaches the exact plan and its cost.",
        ["entropic.png"],
        metrics,
    )


SECTIONS = [section_matching, section_digits, section_exact_scale, section_entropic, section_partial,
            section_semidiscrete, section_w1_map, section_flows, section_barycenters, section_free_support,
            section_dictionary, section_multilabel, section_gromov, section_generative, section_gaussian, section_color,
            section_registration, section_wmd, section_sample_complexity]


def run_demo(out_dir: str | Path = "report", verbose: bool = True) -> Path:
    """Run every section and write ``out_dir/index.html``; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for fn in SECTIONS:
        t0 = time.perf_counter()
        sections.append(fn(out_dir))
        if verbose:
            print(f"  {sections[-1].title}: {time.perf_counter() - t0:.1f} s")
    return write_report(sections, out_dir, title="monge: optimal transport, shown")


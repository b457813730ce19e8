"""Demo section: Gromov-Wasserstein across dimensions (a 2-D shape onto a 3-D surface) and fused GW between graphs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ... import data
from ...solvers.gromov import fused_gromov_wasserstein, gromov_wasserstein
from ..report import Section, pyplot, save_figure

__all__ = ["section_gromov"]


def _bent_heart(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A heart sampled afresh, rolled across its width onto a cylinder of radius 0.25 in 3-D (arc length kept),
    then turned rigidly; returns the points and each point's height on the flat heart."""
    u = data.shape("heart", n, seed=seed) - 0.5
    r = 0.25
    theta = u[:, 0] / r  # arc length along the cylinder's circle = the horizontal coordinate
    y = torch.stack([r * torch.sin(theta), u[:, 1], r * (1 - torch.cos(theta))], 1)
    c, s = np.cos(0.5), np.sin(0.5)
    turn = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=y.dtype)  # an isometry GW ignores
    return y @ turn, u[:, 1] + 0.5


def _noisy_grid_graph(side: int, seed: int, n_drop: int, perm: bool):
    """A side x side grid graph with ``n_drop`` edges removed, jittered positions, node features and shortest paths."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, shortest_path

    from ...solvers.exact.graph import grid_graph

    rng = np.random.default_rng(seed)
    n = side * side
    edges, _ = grid_graph((side, side))
    for _ in range(50):  # drop edges, keeping the graph connected
        keep = np.sort(rng.choice(len(edges), len(edges) - n_drop, replace=False))
        adj = coo_matrix((np.ones(len(keep)), (edges[keep, 0], edges[keep, 1])), shape=(n, n))
        if connected_components(adj, directed=False)[0] == 1:
            break
    e = edges[keep]
    ij = np.stack(np.unravel_index(np.arange(n), (side, side)), 1).astype(float)
    pos = ij + 0.15 * rng.standard_normal((n, 2))
    feat = np.sin(ij[:, 0] * 0.9) + 0.5 * ij[:, 1] / side + 0.1 * rng.standard_normal(n)  # smooth feature + noise
    order = rng.permutation(n) if perm else np.arange(n)  # node ids shuffled: the matching must be found
    inv = np.argsort(order)
    e, pos, feat = inv[e], pos[order], feat[order]
    D = shortest_path(adj, directed=False, unweighted=True)[np.ix_(order, order)]
    return e, pos, feat, torch.as_tensor(D), order


def _gw_solves(x, y):
    """Exact GW from the product plan and from an entropic GW plan (eps = 3e-3): GW is nonconvex, starts matter."""
    runs = {}
    t0 = time.perf_counter()
    runs["product start"] = (gromov_wasserstein(x, y), time.perf_counter() - t0)
    t0 = time.perf_counter()
    warm = gromov_wasserstein(x, y, eps=3e-3)
    runs["entropic start"] = (gromov_wasserstein(x, y, init=warm.plan), time.perf_counter() - t0)
    return runs


def _gw_panel(fig, n: int):
    x = data.shape("heart", n, seed=5)
    y, truth = _bent_heart(n, seed=6)  # truth: each 3-D point's own height on the unrolled heart
    colours = x[:, 1].numpy()
    ax0 = fig.add_subplot(1, 3, 1)
    ax0.scatter(*x.T, c=colours, cmap="viridis", s=10)
    ax0.set_aspect("equal")
    ax0.set_title(f"2-D heart, {n} points (colour = height)", fontsize=9)
    metrics = {"GW: sizes": f"{n} points in R^2 x {n} points in R^3 (squared Euclidean intra costs)"}
    for k, (label, (res, elapsed)) in enumerate(_gw_solves(x, y).items()):
        carried = (res.plan.T @ x[:, 1].to(res.plan)) / res.plan.sum(0).clamp_min(1e-300)  # barycentric average
        corr = float(np.corrcoef(carried.numpy(), truth.numpy())[0, 1])
        ax = fig.add_subplot(1, 3, 2 + k, projection="3d")
        ax.scatter(*y.T.numpy(), c=carried.numpy(), cmap="viridis", s=10, vmin=colours.min(), vmax=colours.max())
        ax.view_init(elev=20, azim=-70)
        ax.set_box_aspect(tuple(float(np.ptp(y[:, i].numpy())) for i in range(3)))
        ax.set_title(f"bent 3-D heart, colours carried by the plan\nexact GW, {label}: value {float(res.value):.2e}",
                     fontsize=9)
        conv = res.convergence
        metrics[f"GW ({label})"] = (f"value {float(res.value):.4e}, FW gap {float(conv.error):.1e} ({conv.status[0]}), "
                                    f"{int(conv.n_iters)} CG steps, {elapsed:.2f} s; correlation of the carried "
                                    f"colour with the true height {corr:.3f}")
    return metrics


def _fgw_panel(ax, axg, side: int, alpha: float):
    e1, p1, f1, D1, _ = _noisy_grid_graph(side, seed=1, n_drop=4, perm=False)
    e2, p2, f2, D2, order = _noisy_grid_graph(side, seed=2, n_drop=4, perm=True)
    p2 = p2 + np.array([side + 1.5, 0.0])  # drawn to the right
    M = torch.as_tensor((f1[:, None] - f2[None, :]) ** 2)
    t0 = time.perf_counter()
    res = fused_gromov_wasserstein(M, D1, D2, alpha=alpha)
    elapsed = time.perf_counter() - t0
    match = res.plan.argmax(1).numpy()
    correct = float(np.mean(order[match] == np.arange(len(match))))  # node i of graph 1 is node inv[i] of graph 2
    for e, p in ((e1, p1), (e2, p2)):
        for i, j in e:
            ax.plot(*p[[i, j]].T, c="0.75", lw=0.8, zorder=1)
    vmin, vmax = min(f1.min(), f2.min()), max(f1.max(), f2.max())
    ax.scatter(*p1.T, c=f1, cmap="coolwarm", vmin=vmin, vmax=vmax, s=30, zorder=3, edgecolors="k", linewidths=0.3)
    ax.scatter(*p2.T, c=f2, cmap="coolwarm", vmin=vmin, vmax=vmax, s=30, zorder=3, edgecolors="k", linewidths=0.3)
    for i, j in enumerate(match):
        ok = order[j] == i
        ax.plot([p1[i, 0], p2[j, 0]], [p1[i, 1], p2[j, 1]], c="tab:green" if ok else "tab:red", lw=0.5, alpha=0.5,
                zorder=2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"fused GW (alpha = {alpha}) between two noisy {side}x{side} grid graphs (node ids shuffled);\n"
                 f"green: matched to its true copy ({100 * correct:.0f}%), red: not; colour = node feature",
                 fontsize=9)
    gaps = res.convergence.errors.double().numpy()
    floor = 1e-16  # the trace is float32; a gap at rounding level (or exactly 0) is drawn on this floor
    axg.semilogy(np.arange(len(gaps)), np.maximum(gaps, floor), "o-", ms=4)
    axg.axhline(floor, c="0.6", ls=":", lw=0.8)
    axg.set_xlabel("conditional-gradient iteration")
    axg.set_ylabel("Frank-Wolfe gap")
    axg.set_title("FGW: Frank-Wolfe gap per step\n(a gap <= 1e-16 is drawn at 1e-16)", fontsize=9)
    axg.xaxis.get_major_locator().set_params(integer=True)
    conv = res.convergence
    return {"FGW: sizes": f"{side * side} x {side * side} nodes, shortest-path intra costs, squared feature gaps",
            "FGW: value": f"{float(res.value):.4e} (linear {float(res.linear_term):.3e}, "
                          f"quadratic {float(res.quadratic_term):.3e})",
            "FGW: final FW gap": f"{float(conv.error):.2e} ({conv.status[0]})",
            "FGW: CG iterations": f"{int(conv.n_iters)}",
            "FGW: nodes matched to their true copy": f"{100 * correct:.0f}%",
            "FGW: time": f"{elapsed:.2f} s"}


def section_gromov(out_dir: Path, n: int = 250, side: int = 8) -> Section:
    """GW from a 2-D heart to a bent 3-D heart (colours carried by the plan); FGW between two noisy grid graphs."""
    plt = pyplot()
    out_dir = Path(out_dir)
    fig = plt.figure(figsize=(14, 4.6))
    metrics = _gw_panel(fig, n=n)
    save_figure(fig, out_dir / "gromov_shapes.png", dpi=100, crop=True)
    fig, (ax, axg) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [2.2, 1]})
    metrics.update(_fgw_panel(ax, axg, side=side, alpha=0.5))
    save_figure(fig, out_dir / "gromov_graphs.png", dpi=100, crop=True)
    return Section(
        "Gromov-Wasserstein: matching across spaces",
        "GW compares two spaces through their internal distances only, so the points may live in different "
        f"dimensions. Top: {n} points of a 2-D heart matched by exact GW (conditional gradient, each step an exact "
        f"network simplex) to {n} points of another heart, rolled across its width onto a cylinder (radius 0.25) in "
        "3-D and turned; each 3-D point takes the plan's barycentric average of the 2-D heights, so a smooth colour "
        "ramp means the plan respects the shape. GW is nonconvex and the start matters: at the default 250 points, "
        "conditional gradient from the product plan stops at a stationary point that flips the heart upside down "
        "(a larger value), while started from an entropic GW plan (eps = 3e-3) it reaches a lower value and the "
        "colours follow the height (the metrics compare both). Bottom: fused GW (alpha = 0.5) between two "
        f"{side * side}-node ({side}x{side}) grid graphs, each with 4 edges dropped and jittered, the second with "
        "shuffled node ids; intra costs = shortest-path hop counts, feature cost = squared difference of a noisy "
        "scalar node feature. The trace shows the Frank-Wolfe gap per step, the certificate of stationarity (not "
        "of global optimality, GW being nonconvex).",
        ["gromov_shapes.png", "gromov_graphs.png"],
        metrics,
    )

"""Demo sections: gradient flows (a JKO crowd-motion flow on a grid, particle flows) and the multi-label loss."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch

from ... import data
from ...apps.flows import (
    Congestion,
    PotentialEnergy,
    grid_coordinates,
    jko_flow,
    particle_flow,
)
from ...geometry.grid import Grid
from ...nn.multilabel import WassersteinLoss
from ..report import Section, pyplot, save_figure

__all__ = ["section_flows", "section_multilabel"]



def section_flows(out_dir: Path) -> Section:
    """A crowd-motion JKO flow on a 64x64 grid, and particle flows of the Sinkhorn divergence vs the MMD."""
    plt = pyplot()
    n, kappa, tau, eps, steps = 64, 4.0, 0.1, 1e-3, 12
    geom = Grid((n, n), dtype=torch.float64)
    x, y = grid_coordinates(geom)
    mu0 = (((x - 0.25) ** 2 + (y - 0.3) ** 2) < 0.15**2).double() + (((x - 0.3) ** 2 + (y - 0.75) ** 2) < 0.1**2)
    mu0 = mu0 / mu0.sum()
    F = PotentialEnergy(((x - 0.85) ** 2 + (y - 0.5) ** 2).sqrt()) + Congestion(kappa)
    t0 = time.perf_counter()
    jko = jko_flow(mu0, geom, F, tau, eps, steps)
    t_jko = time.perf_counter() - t0

    src, tgt = data.shape("square", 200, seed=5), data.shape("ring", 200, seed=6)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = particle_flow(src, tgt, "sinkhorn", lr=0.1, n_steps=15, blur=0.05)
        mm = particle_flow(src, tgt, "mmd", lr=0.1, n_steps=15, kernel="gaussian", blur=0.1)
    t_part = time.perf_counter() - t0

    shown = [0, 3, 6, steps]
    fig, axes = plt.subplots(3, 4, figsize=(12, 9))
    density = jko.snapshots * n * n
    for ax, t in zip(axes[0], shown):
        ax.imshow(density[t].T.numpy(), origin="lower", extent=(0, 1, 0, 1), vmin=0, vmax=kappa, cmap="viridis")
        ax.plot([0.85], [0.5], "r*", ms=10)
        ax.set_title(f"JKO crowd motion, t = {t} tau")
    for row, (res, name) in zip(axes[1:], ((sk, "Sinkhorn, blur 0.05"), (mm, "Gaussian MMD, sigma 0.1"))):
        for ax, t in zip(row, (0, 2, 5, 15)):
            ax.scatter(*tgt.T, s=3, c="tab:blue", alpha=0.3)
            ax.scatter(*res.snapshots[t].T, s=3, c="tab:red")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_aspect("equal")
            ax.set_title(f"{name}, step {t}")
    save_figure(fig, out_dir / "flows.png", dpi=90)
    conv = jko.convergence
    return Section(
        "Gradient flows: JKO on a grid and particle flows",
        "Top: a crowd (two groups) walks down the distance to an exit (red star) under the congestion constraint "
        f"density <= {kappa:g}: entropic JKO steps (Peyre 2015) on a 64x64 grid, tau = {tau:g}, eps = {eps:g}; the "
        "crowd queues at the cap instead of collapsing to a point. Middle and bottom: 200 particles on a square "
        "flow to a ring by explicit Euler steps of the Wasserstein gradient of the Sinkhorn divergence (the whole "
        "cloud is transported) and of a Gaussian MMD (gradients fade with distance: particles far from the ring "
        "are left behind).",
        ["flows.png"],
        {
            "JKO: steps, time": f"{steps} steps, {t_jko:.2f} s",
            "JKO: inner iterations per step": f"{int(conv.n_iters.min())}..{int(conv.n_iters.max())}",
            "JKO: max density / cap": f"{float(density[1:].max()):.4f} / {kappa:g}",
            "JKO: mass drift": f"{float((jko.snapshots.sum((-1, -2)) - 1).abs().max()):.1e}",
            "particles: final Sinkhorn divergence": f"{float(sk.losses[-1]):.2e} (from {float(sk.losses[0]):.2e})",
            "particles: final Gaussian MMD": f"{float(mm.losses[-1]):.2e} (from {float(mm.losses[0]):.2e})",
            "particle flows time": f"{t_part:.2f} s",
        },
    )


def _train(kind, x, y, wloss, steps=60):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, y.shape[1]).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        z = model(x)
        loss = wloss(z, y) if kind == "wasserstein" else torch.nn.functional.binary_cross_entropy_with_logits(z, y)
        loss.backward()
        opt.step()
    return model


def section_multilabel(out_dir: Path) -> Section:
    """Labels on a circle: predicted histograms of a linear model trained with the Wasserstein loss vs BCE."""
    plt = pyplot()
    L = 12
    x, y, phi = data.circle_labels(128, L, 0)
    xt, yt, _ = data.circle_labels(500, L, 1)
    E = torch.stack([phi.cos(), phi.sin()], -1)
    D = torch.cdist(E, E)
    wloss = WassersteinLoss(embeddings=E, eps=0.1, p=1, tol=1e-5)
    t0 = time.perf_counter()
    preds, scores = {}, {}
    for kind in ("wasserstein", "bce"):
        model = _train(kind, x, y, wloss)
        with torch.no_grad():
            z = model(xt)
        h = torch.softmax(z, -1) if kind == "wasserstein" else torch.sigmoid(z) / torch.sigmoid(z).sum(-1, True)
        nearest = torch.where(yt[:, None, :] > 0, D[None], torch.full_like(D[None], math.inf)).amin(-1)
        preds[kind], scores[kind] = h, float((h * nearest).sum(-1).mean())
    elapsed = time.perf_counter() - t0
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), subplot_kw={"projection": "polar"})
    for ax, i in zip(axes, (0, 1, 2)):
        width = 2 * math.pi / L
        ax.bar(phi.numpy(), yt[i].numpy() / yt[i].sum().item(), width=width, color="0.85", label="target")
        ax.bar(phi.numpy() - width / 4, preds["wasserstein"][i].numpy(), width=width / 2, color="tab:red",
               label="Wasserstein")
        ax.bar(phi.numpy() + width / 4, preds["bce"][i].numpy(), width=width / 2, color="tab:blue", label="BCE")
        ax.set_yticklabels([])
        ax.set_title(f"test sample {i}")
    axes[0].legend(loc="lower left", fontsize=8)
    save_figure(fig, out_dir / "multilabel.png", dpi=90)
    return Section(
        "Multi-label learning with a Wasserstein loss",
        f"{L} labels on a circle, noisy 2-D features, each sample tagged with the labels next to its angle. A "
        "linear model trained with the entropic Wasserstein loss over the label metric (Frogner et al. 2015) puts "
        "its predicted mass next to the true labels; trained with binary cross-entropy it spreads mass over "
        "distant labels. Score: the expected ground distance from a predicted label to the nearest true label.",
        ["multilabel.png"],
        {
            "expected distance, Wasserstein loss": f"{scores['wasserstein']:.4f}",
            "expected distance, BCE": f"{scores['bce']:.4f}",
            "training both (60 Adam steps each)": f"{elapsed:.2f} s",
        },
    )

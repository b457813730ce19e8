"""Demo section: Wasserstein dictionary learning on the embedded 8x8 digits, and unmixing a new digit."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from ... import data
from ...apps.dictionary import dictionary_learning, unmix
from ...geometry import Grid
from ..report import Section, pyplot, save_figure

__all__ = ["section_dictionary"]


def section_dictionary(out_dir: Path, n_images: int = 120, n_atoms: int = 8, max_iter: int = 60) -> Section:
    """Learn atoms from digit images under a Sinkhorn-divergence fit, then unmix held-out digits on them."""
    plt = pyplot()
    imgs, labels = data.digits(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(imgs), generator=g)
    train, test = imgs[perm[:n_images]] + 1e-3, imgs[perm[n_images:n_images + 4]] + 1e-3
    geom = Grid((8, 8), dtype=torch.float64)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fixed budget of steps: convergence is reported below
        res = dictionary_learning(train, n_atoms, geom, eps=0.01, lr=0.1, max_iter=max_iter)
        un = unmix(test, res.atoms, geom, eps=0.01, max_iter=30)
    seconds = time.perf_counter() - t0
    fig, axes = plt.subplots(3, n_atoms, figsize=(1.4 * n_atoms, 4.6))
    for k in range(n_atoms):
        axes[0, k].imshow(res.atoms[k], cmap="magma")
        axes[0, k].set_title(f"atom {k}", fontsize=8)
    for i in range(min(4, n_atoms // 2)):
        axes[1, 2 * i].imshow(test[i], cmap="gray_r")
        axes[1, 2 * i].set_title("held-out", fontsize=8)
        axes[1, 2 * i + 1].imshow(un.mixture[i], cmap="gray_r")
        axes[1, 2 * i + 1].set_title("unmixed", fontsize=8)
        axes[2, 2 * i].bar(range(n_atoms), un.weights[i], color="tab:blue")
        axes[2, 2 * i].set_ylim(0, 1)
        axes[2, 2 * i + 1].axis("off")
    for ax in axes[:2].ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Wasserstein dictionary learning on 8x8 digits (row 3: unmixing weights)", fontsize=10)
    save_figure(fig, Path(out_dir) / "dictionary.png", dpi=90, tight=False, crop=True)
    return Section(
        "Wasserstein dictionary learning",
        f"{n_atoms} atoms learned from {n_images} digit images (Grid 8x8 geometry, debiased Sinkhorn divergence "
        "fit, eps = 0.01, atoms and weights on their simplices, Adam on softmax logits); held-out digits are then "
        "unmixed on the atoms by L-BFGS with a Frank-Wolfe gap certificate.",
        ["dictionary.png"],
        {"fit at start": f"{float(res.trace[0]):.4f}", f"fit after {len(res.trace)} steps": f"{float(res.trace[-1]):.4f}",
         "unmix Frank-Wolfe gap (max)": f"{float(un.convergence.error.max()):.2e}",
         "seconds": f"{seconds:.1f}"},
    )

"""Figures of generative models: sample grids, point clouds, the latent manifold of a 2-D latent, curves.

Each function draws one PNG file and returns its path (matplotlib, imported lazily: ``pip install matplotlib``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...cli.report import pyplot
from .train import draw

__all__ = ["curves", "image_grid", "latent_manifold", "samples_figure", "scatter"]



def image_grid(x: torch.Tensor, image_shape: tuple[int, int], nrow: int, pad: int = 1) -> torch.Tensor:
    """Tile flattened images ``(k, H*W)`` into one ``(nrow (H+pad), ncol (W+pad))`` image (white padding).

    Example:
        >>> image_grid(torch.zeros(6, 4), (2, 2), nrow=2).shape
        torch.Size([6, 9])
    """
    H, W = image_shape
    k = len(x)
    ncol = -(-k // nrow)
    out = torch.zeros(nrow * (H + pad), ncol * (W + pad))
    for i, img in enumerate(x.detach().float().cpu().reshape(k, H, W)):
        r, c = divmod(i, ncol)
        out[r * (H + pad) : r * (H + pad) + H, c * (W + pad) : c * (W + pad) + W] = img
    return out


def scatter(ax, x, y=None, title: str = ""):
    """Generated points ``x`` (red) over reference points ``y`` (blue) on an axis."""
    if y is not None:
        ax.scatter(*y.detach().cpu().T, s=3, c="tab:blue", alpha=0.3, label="data")
    ax.scatter(*x.detach().cpu().T, s=3, c="tab:red", alpha=0.6, label="generated")
    ax.set_aspect("equal")
    ax.set_title(title)


def samples_figure(generator, ds, path: Path, title: str = "", n: int = 100, seed: int = 0) -> Path:
    """Generated samples next to held-out ones: image grids (10 x 10) or a 2-D scatter plot."""
    plt = pyplot()
    with torch.no_grad():
        x, _ = draw(generator, n, torch.Generator().manual_seed(seed))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    if ds.image_shape is not None:
        for ax, pts, t in ((axes[0], x, "generated"), (axes[1], ds.test[:n], "held-out real")):
            ax.imshow(image_grid(pts.clamp(0, 1), ds.image_shape, 10), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"{title}: {t}" if t == "generated" else t)
            ax.axis("off")
    else:
        with torch.no_grad():
            x, _ = draw(generator, len(ds.test), torch.Generator().manual_seed(seed))
        scatter(axes[0], x, ds.test, f"{title}: generated (red) vs held-out")
        scatter(axes[1], ds.test, None, "held-out")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def latent_manifold(generator, image_shape, path: Path, n: int = 15) -> Path:
    """Decode an ``n x n`` grid of a 2-D latent space at Gaussian quantiles (the learned manifold of digits)."""
    if getattr(generator, "latent_dim", None) != 2:
        raise ValueError(f"generator: expected latent_dim = 2, got {getattr(generator, 'latent_dim', None)}")
    plt = pyplot()
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z = torch.stack(torch.meshgrid(q, q, indexing="ij"), -1).reshape(-1, 2)
    p = next(generator.parameters())
    with torch.no_grad():
        x = generator(z.to(device=p.device, dtype=p.dtype))
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(image_grid(x.clamp(0, 1), image_shape, n, pad=1), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title("generator over a 2-D latent grid (Gaussian quantiles 5%..95%)")
    ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def curves(history: dict, path: Path, title: str = "", references: dict | None = None) -> Path:
    """Training loss(es) and held-out W_2 against the step; ``references`` (name -> W_2, e.g. the real-data
    floor and the Gaussian baseline) are drawn as horizontal lines."""
    plt = pyplot()
    keys = [k for k in history if k not in ("step", "seconds", "w2_test", "eval_step")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in keys:
        axes[0].plot(history["step"][: len(history[k])], history[k], label=k)
    axes[0].set_xlabel("step")
    axes[0].set_title(f"{title}: training objectives")
    axes[0].legend()
    if "w2_test" in history:
        axes[1].plot(history["eval_step"], history["w2_test"], "o-", label="generated")
    for (name, value), style in zip((references or {}).items(), ("--", ":", "-.")):
        axes[1].axhline(value, color="gray", linestyle=style, label=name)
    if "w2_test" in history or references:
        axes[1].legend()
    axes[1].set_xlabel("step")
    axes[1].set_title("held-out W_2 (exact)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


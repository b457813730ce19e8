"""Embedded data: no downloads, ever.

- :func:`digits`: the UCI / scikit-learn 8x8 handwritten digits (1797 images, 17 grey levels), shipped in the
  package as ``digits.npz`` (45 kB).
- :func:`shape`: 2-D point clouds sampled from generated shapes (deterministic given ``seed``).
- :func:`digit_cloud`: a digit image as a weighted point cloud (pixel centres weighted by intensity).
- :func:`circle_labels`: a multi-label task whose labels live on a circle (for Wasserstein losses).
- :func:`newsgroups`: 200 newsgroup posts (alt.atheism / sci.space, gensim's bundled set) as bags of words over
  the GloVe 6B 50-d vectors of their 7403 words, shipped as ``newsgroups.npz`` (1.5 MB; written by
  ``benchmarks/gen_newsgroups.py``), for Word Mover's Distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["digits", "digit_cloud", "circle_labels", "shape", "SHAPES", "newsgroups", "Newsgroups"]

_HERE = Path(__file__).parent


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    with np.load(_HERE / "digits.npz") as z:
        return z["images"], z["labels"]


def digits(dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1797 8x8 digit images scaled to [0, 1], shape ``(1797, 8, 8)``, and their labels ``(1797,)``.

    Example:
        >>> images, labels = digits()
        >>> tuple(images.shape), int(labels[0])
        ((1797, 8, 8), 0)
    """
    images, labels = _digits_arrays()
    return torch.as_tensor(images, dtype=dtype) / 16.0, torch.as_tensor(labels, dtype=torch.int64)


def digit_cloud(index: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Digit ``index`` as a weighted cloud: nonzero pixel centres in [0, 1]^2 (y up) and normalised weights.

    Example:
        >>> x, a = digit_cloud(0)
        >>> x.shape[1], round(float(a.sum()), 6)
        (2, 1.0)
    """
    images, _ = digits(dtype)
    img = images[index]
    rows, cols = torch.nonzero(img > 0, as_tuple=True)
    x = torch.stack([(cols.to(dtype) + 0.5) / 8, 1 - (rows.to(dtype) + 0.5) / 8], -1)
    w = img[rows, cols]
    return x, w / w.sum()


def _ring(u, v):
    r = 0.35 + 0.05 * v
    return np.stack([0.5 + r * np.cos(2 * np.pi * u), 0.5 + r * np.sin(2 * np.pi * u)], -1)


def _moons(u, v):
    t = np.pi * u
    upper = u < 0.5
    t = np.where(upper, 2 * t, 2 * t - np.pi)
    pts = np.where(upper[:, None], np.stack([np.cos(t), np.sin(t)], -1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1))
    return 0.2 + 0.25 * (pts + np.array([1.0, 0.5])) + 0.03 * (v[:, None] - 0.5)


def _heart(u, v):
    t = 2 * np.pi * u
    s = np.sqrt(v)
    hx = 16 * np.sin(t) ** 3
    hy = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return 0.5 + 0.022 * s[:, None] * np.stack([hx, hy], -1)


def _spiral(u, v):
    t = 3 * np.pi * u
    r = 0.05 + 0.13 * t / np.pi
    return 0.5 + (r + 0.015 * (v - 0.5))[:, None] * np.stack([np.cos(t), np.sin(t)], -1)


def _square(u, v):
    return 0.2 + 0.6 * np.stack([u, v], -1)


SHAPES = {"ring": _ring, "moons": _moons, "heart": _heart, "spiral": _spiral, "square": _square}


def shape(name: str, n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """``n`` points sampled from a generated 2-D shape in [0, 1]^2: one of :data:`SHAPES`.

    Example:
        >>> shape("ring", 100).shape
        torch.Size([100, 2])
    """
    if name not in SHAPES:
        raise ValueError(f"name: expected one of {sorted(SHAPES)}, got {name!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    u, v = rng.random(n), rng.random(n)
    return torch.as_tensor(SHAPES[name](u, v), dtype=dtype)


def circle_labels(n: int, n_labels: int, seed: int = 0, dtype=torch.float64):
    """A multi-label task with labels on a circle: ``(x, targets, angles)``.

    Sample ``n`` angles uniformly; the features ``x (n, 2)`` are the points on the unit circle plus Gaussian noise
    of scale 0.5; label ``l`` sits at angle ``2 pi l / n_labels`` (``angles``), and ``targets (n, n_labels)`` marks
    the labels within one spacing of the sample's angle (2 or 3 per sample). Neighbouring labels are semantically
    close, which is what a Wasserstein loss over the label circle exploits.

    Example:
        >>> x, y, phi = circle_labels(5, 12)
        >>> x.shape, y.shape, phi.shape, bool((y.sum(1) >= 2).all())
        (torch.Size([5, 2]), torch.Size([5, 12]), torch.Size([12]), True)
    """
    g = torch.Generator().manual_seed(seed)
    th = torch.rand(n, generator=g, dtype=torch.float64) * 2 * np.pi
    x = torch.stack([th.cos(), th.sin()], -1) + 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    phi = torch.arange(n_labels, dtype=torch.float64) * (2 * np.pi / n_labels)
    d = torch.remainder(th[:, None] - phi[None] + np.pi, 2 * np.pi) - np.pi
    return x.to(dtype), (d.abs() <= 2 * np.pi / n_labels).to(dtype), phi.to(dtype)


@dataclass(frozen=True)
class Newsgroups:
    """Posts as documents ``(word rows, normalised counts)`` over ``embeddings (U, 50)`` (float64), their
    ``labels`` (0 / 1, named by ``label_names``), the vocabulary ``words``, and each post's ``subjects`` and the
    start of its body (``snippets``)."""

    docs: list
    embeddings: torch.Tensor
    labels: torch.Tensor
    label_names: tuple
    words: tuple
    subjects: tuple
    snippets: tuple


@lru_cache(maxsize=1)
def newsgroups() -> Newsgroups:
    """The 200-post two-class newsgroup set as bags of GloVe words (stop words dropped, headers dropped).

    Example:
        >>> ng = newsgroups()
        >>> len(ng.docs), tuple(ng.embeddings.shape), ng.label_names
        (200, (7403, 50), ('alt.atheism', 'sci.space'))
    """
    with np.load(_HERE / "newsgroups.npz") as z:
        arrays = {k: z[k] for k in z.files}
    ends = np.cumsum(arrays["lens"])
    ids = np.split(arrays["ids"].astype(np.int64), ends[:-1])
    counts = np.split(arrays["counts"].astype(np.float64), ends[:-1])
    docs = [(torch.from_numpy(i), torch.from_numpy(c / c.sum())) for i, c in zip(ids, counts)]
    return Newsgroups(docs, torch.from_numpy(arrays["vectors"].astype(np.float64)),
                      torch.from_numpy(arrays["labels"].astype(np.int64)), tuple(arrays["label_names"].tolist()),
                      tuple(arrays["words"].tolist()), tuple(arrays["subjects"].tolist()),
                      tuple(arrays["snippets"].tolist()))

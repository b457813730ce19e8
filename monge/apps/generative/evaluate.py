r"""Evaluation a user can trust: distances to a held-out set, next to a floor and a baseline, and a classifier.

For ``n`` held-out samples :math:`Y`, the generated score is :math:`W_2(g_\theta(Z_{1..n}), Y)` (exact, network
simplex) and the debiased Sinkhorn divergence; the same figures are reported for

- the **floor**: ``n`` real training samples (what a perfect generator would get at this sample size: two
  independent samples of one distribution are at a positive distance);
- the **Gaussian baseline**: ``n`` samples of :math:`\mathcal N(\hat m, \hat\Sigma)` fitted on the training set.

For labelled data, a small classifier trained on the real training split scores the generated samples: the
label ``coverage`` (classes predicted with confidence > 0.5 at least once) and the mean ``confidence``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ...api import wasserstein
from ...nn import SinkhornLoss
from .data import Dataset
from ...nn.generators import MLP
from .train import draw

__all__ = [
    "Metrics",
    "evaluate",
    "gaussian_baseline",
    "held_out_w2",
    "label_stats",
    "train_classifier",
]

_CLASSIFIERS: dict = {}


def gaussian_baseline(train: torch.Tensor, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
    r"""``n`` samples of the Gaussian :math:`\mathcal N(\hat m, \hat\Sigma)` fitted on ``train (N, D)``.

    Example:
        >>> x = gaussian_baseline(torch.randn(500, 3), 1000, torch.Generator().manual_seed(0))
        >>> tuple(x.shape), float(x.mean(0).abs().max()) < 0.2
        ((1000, 3), True)
    """
    t = train.detach().double().cpu()
    m, cov = t.mean(0), torch.cov(t.T).reshape(t.shape[1], t.shape[1])
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp_min(0).sqrt()
    z = torch.randn(n, t.shape[1], generator=rng, dtype=torch.float64)
    return (m + z @ root.T).to(train.dtype)


def _w2(x, y, a=None):
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    return float(wasserstein(x, y, None if a is None else a.detach().double().cpu(), None, p=2))


def held_out_w2(test: torch.Tensor, n: int | None = None, seed: int = 0):
    """An ``eval_fn`` for :func:`~monge.apps.generative.train.train`: ``generator -> {"w2_test": W_2}`` on ``n`` fixed
    latents against the first ``n`` held-out samples (exact, float64)."""
    y = test[: n or len(test)]

    def fn(generator):
        with torch.no_grad():
            x, a = draw(generator, len(y), torch.Generator().manual_seed(seed))
        return {"w2_test": _w2(x, y, a)}

    return fn


def train_classifier(ds: Dataset, epochs: int = 30, seed: int = 0) -> torch.nn.Module:
    """A small MLP classifier (D -> 256 -> 10) trained on the labelled training split in seconds; cached per
    dataset. Its held-out accuracy is in ``classifier.accuracy``."""
    if ds.train_labels is None:
        raise ValueError(f"ds: expected a labelled dataset, got {ds.name!r} without labels")
    key = (ds.name, tuple(ds.train.shape), float(ds.train.double().sum()), epochs, seed)
    if key in _CLASSIFIERS:
        return _CLASSIFIERS[key]
    x, y = ds.train.float().cpu(), ds.train_labels.cpu()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLP(ds.dim, int(y.max()) + 1, hidden=(256,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        net.accuracy = float((net(ds.test.float().cpu()).argmax(-1) == ds.test_labels.cpu()).float().mean())
    _CLASSIFIERS[key] = net
    return net


def label_stats(classifier: torch.nn.Module, x: torch.Tensor, threshold: float = 0.5) -> dict:
    """``coverage`` (classes predicted with probability > ``threshold`` at least once), mean ``confidence``
    (max probability) and ``class_counts`` (confident predictions per class) of samples ``x``."""
    with torch.no_grad():
        prob = torch.softmax(classifier(x.detach().float().cpu()), -1)
    conf, label = prob.max(-1)
    counts = torch.bincount(label[conf > threshold], minlength=prob.shape[-1])
    return {"coverage": int((counts > 0).sum()), "confidence": float(conf.mean()), "class_counts": counts.tolist()}


@dataclass(frozen=True)
class Metrics:
    """Held-out figures of a generator (see the module docstring); ``ratio = w2 / w2_floor``."""

    n: int
    w2: float
    w2_floor: float
    w2_gaussian: float
    sinkhorn: float
    sinkhorn_floor: float
    sinkhorn_gaussian: float
    blur: float
    coverage: int | None = None
    confidence: float | None = None
    class_counts: list | None = None
    coverage_real: int | None = None
    confidence_real: float | None = None
    classifier_accuracy: float | None = None

    @property
    def ratio(self) -> float:
        return self.w2 / self.w2_floor

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def evaluate(generator, ds: Dataset, n: int | None = None, seed: int = 0, blur: float | None = None,
             classifier: bool = True) -> Metrics:
    r"""Score ``generator`` against ``n`` held-out samples (default ``min(len(test), 1000)``), with the floor and
    the Gaussian baseline (see the module docstring). ``blur`` of the Sinkhorn divergence defaults to a tenth of
    the root mean squared distance between held-out samples.

    Example:
        >>> from monge.apps.generative.data import load_toy
        >>> from monge.nn.generators import MLPGenerator
        >>> ds = load_toy("gaussians", 300, 200)
        >>> m = evaluate(MLPGenerator(2, 2, hidden=(16,), output="identity"), ds, n=100)
        >>> m.w2 > m.w2_floor
        True
    """
    n = min(len(ds.test), 1000) if n is None else n
    if not isinstance(n, int) or not 0 < n <= min(len(ds.test), len(ds.train)):
        raise ValueError(f"n: expected an int in [1, {min(len(ds.test), len(ds.train))}], got {n!r}")
    rng = torch.Generator().manual_seed(seed)
    y = ds.test[:n].detach().double().cpu()
    with torch.no_grad():
        x, a = draw(generator, n, rng)
    x = x.detach().double().cpu()
    a = None if a is None else a.detach().double().cpu()
    floor = ds.train[torch.randperm(len(ds.train), generator=rng)[:n]].double().cpu()
    gauss = gaussian_baseline(ds.train, n, rng).double()
    if blur is None:
        blur = 0.1 * float(torch.cdist(y, y).pow(2).mean().sqrt())
    sk = SinkhornLoss(blur=blur, scaling=0.8, tol=1e-4, max_iter=20000, backend="auto")
    out = {"n": n, "w2": _w2(x, y, a), "w2_floor": _w2(floor, y), "w2_gaussian": _w2(gauss, y),
               "sinkhorn": float(sk(x, y, a)), "sinkhorn_floor": float(sk(floor, y)), "sinkhorn_gaussian": float(sk(gauss, y)),
               "blur": blur}
    if classifier and ds.train_labels is not None:
        clf = train_classifier(ds)
        gen, real = label_stats(clf, x), label_stats(clf, floor)
        out.update(coverage=gen["coverage"], confidence=gen["confidence"], class_counts=gen["class_counts"],
                   coverage_real=real["coverage"], confidence_real=real["confidence"],
                   classifier_accuracy=clf.accuracy)
    return Metrics(**out)

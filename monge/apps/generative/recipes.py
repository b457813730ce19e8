r"""Ready-made recipes: known-good settings per (model, dataset), and one call that trains, evaluates and
writes ``samples.png``, ``curves.png``, ``metrics.json`` and ``generator.pt`` (the generator's state dict;
``latent.png`` too for a 2-D latent), used by ``monge train`` and the benchmarks.

Every setting can be overridden by keyword (``steps``, ``batch_size``, ``lr``, ``blur``, ``latent_dim``,
``grad``, ...). The defaults on digits train in a few minutes on two CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ...nn import SinkhornLoss
from .data import Dataset, load
from .evaluate import evaluate, held_out_w2
from ...nn.generators import MLP, ConvFeatures, ConvGenerator, MLPGenerator
from .train import MKE, WGANGP, LearnedCost, TrainResult, train

__all__ = ["DEFAULTS", "MODELS", "build_model", "run_experiment"]

#: Model names of :func:`build_model`.
MODELS = ("sinkhorn", "learned-cost", "wgan-gp")

_COMMON = {
    "digits": {"latent_dim": 16, "hidden": (256, 256), "blur": 0.5, "features_dim": 16},
    "mnist": {"latent_dim": 32, "hidden": None, "blur": 1.0, "features_dim": 32},
    "toy": {"latent_dim": 8, "hidden": (128, 128, 128), "blur": 0.05, "features_dim": 8},
}

#: Per (model, data): optimisation settings (merged over the data's common settings).
DEFAULTS = {
    ("sinkhorn", "digits"): {"steps": 1500, "batch_size": 400, "lr": 1e-3},
    ("learned-cost", "digits"): {"steps": 1000, "batch_size": 400, "lr": 1e-3, "lr_features": 1e-4},
    ("wgan-gp", "digits"): {"steps": 6000, "batch_size": 64, "lr": 1e-4},
    ("sinkhorn", "mnist"): {"steps": 3000, "batch_size": 500, "lr": 1e-3},
    ("learned-cost", "mnist"): {"steps": 3000, "batch_size": 500, "lr": 1e-3, "lr_features": 1e-4},
    ("wgan-gp", "mnist"): {"steps": 10000, "batch_size": 64, "lr": 1e-4},
    ("sinkhorn", "toy"): {"steps": 1000, "batch_size": 256, "lr": 2e-3, "lr_schedule": "cosine"},
    ("learned-cost", "toy"): {"steps": 1000, "batch_size": 256, "lr": 2e-3, "lr_features": 5e-5, "lr_schedule": "cosine"},
    ("wgan-gp", "toy"): {"steps": 2000, "batch_size": 256, "lr": 5e-4, "lr_schedule": "cosine"},
}


def _settings(model: str, data: str, overrides: dict) -> dict:
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    kind = data if data in _COMMON else "toy"
    s = {**_COMMON[kind], **DEFAULTS[(model, kind)]}
    extra = {"grad", "scaling", "n_critic", "lam", "output", "lr_schedule", "lr_features"}
    unknown = set(overrides) - set(s) - extra
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; expected some of {sorted(set(s) | extra)}")
    s.update({k: v for k, v in overrides.items() if v is not None})
    return s


def _rms_distance(x: torch.Tensor, n: int = 500) -> float:
    """Root mean squared distance between (up to ``n``) samples: the data's length scale."""
    x = x[:n].double()
    return float(torch.cdist(x, x).pow(2).mean().sqrt())


def build_model(model: str, ds: Dataset, seed: int = 0, **overrides):
    """The model (:class:`~monge.apps.generative.train.MKE`, :class:`~monge.apps.generative.train.LearnedCost` or
    :class:`~monge.apps.generative.train.WGANGP`) and its settings for a dataset, parameters initialised under ``seed``.

    Example:
        >>> from monge.apps.generative.data import load_toy
        >>> m, s = build_model("sinkhorn", load_toy("rings", 100, 50), steps=10)
        >>> type(m).__name__, s["steps"]
        ('MKE', 10)
    """
    s = _settings(model, ds.name if ds.name in ("digits", "mnist") else "toy", overrides)
    D, image = ds.dim, ds.image_shape
    conv = ds.name == "mnist" and s["hidden"] is None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if conv:
            gen = ConvGenerator(s["latent_dim"], side=image[0])
        else:
            out = s.get("output", "sigmoid" if image is not None else "identity")
            gen = MLPGenerator(s["latent_dim"], D, hidden=s["hidden"] or (512, 512), output=out)
        critic_hidden = s["hidden"] or (512, 512)
        sk_kw = {"scaling": s.get("scaling", 0.7), "tol": 1e-3, "max_iter": 300,
                 "grad": s.get("grad", "envelope"), "backend": "auto"}
        if model == "sinkhorn":
            m = MKE(gen, SinkhornLoss(blur=s["blur"], **sk_kw), lr=s["lr"])
        elif model == "learned-cost":
            feats = ConvFeatures(image[0], s["features_dim"]) if conv else MLP(D, s["features_dim"], critic_hidden[:1])
            m = LearnedCost(gen, feats, blur=s["blur"], n_critic=s.get("n_critic", 1), lr=s["lr"],
                            lr_features=s["lr_features"], radius=0.5 * _rms_distance(ds.train), **sk_kw)
        else:
            critic = ConvFeatures(image[0], 1) if conv else MLP(D, 1, critic_hidden)
            m = WGANGP(gen, critic, lam=s.get("lam", 10.0), n_critic=s.get("n_critic", 5), lr=s["lr"])
    return m, s


def _write(out: Path, res: TrainResult, metrics, ds: Dataset, model, settings, name: str) -> None:
    from . import figures

    out.mkdir(parents=True, exist_ok=True)
    figures.samples_figure(model.generator, ds, out / "samples.png", title=name)
    figures.curves(res.history, out / "curves.png", title=name,
                   references={"real floor": metrics.w2_floor, "Gaussian baseline": metrics.w2_gaussian})
    if getattr(model.generator, "latent_dim", 0) == 2 and ds.image_shape is not None:
        figures.latent_manifold(model.generator, ds.image_shape, out / "latent.png")
    payload = {"model": name, "data": ds.name, "settings": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in settings.items()},
               "status": res.status, "steps": res.steps, "seconds": res.seconds, "device": res.device,
               "metrics": metrics.as_dict(), "history": res.history}
    (out / "metrics.json").write_text(json.dumps(payload, indent=1))
    torch.save(model.generator.state_dict(), out / "generator.pt")


def run_experiment(model: str = "sinkhorn", data: str = "digits", *, out: str | Path | None = None, seed: int = 0,
                   device="auto", verbose: bool = False, toy_name: str = "gaussians", eval_every: int | None = None,
                   n_train: int | None = None, checkpoint: str | Path | None = None, **overrides):
    """Train a recipe on a dataset, evaluate it on held-out data and (if ``out``) write the figures and metrics.

    Returns ``(TrainResult, Metrics, model)``. ``n_train`` limits MNIST's training set (``None``: all 60000).
    ``checkpoint``: a file written every tenth of the run, and resumed from when it exists.
    """
    kw = {"n_train": n_train} if data == "mnist" else {}
    ds = load(data, toy_name=toy_name, seed=seed, **kw)
    m, s = build_model(model, ds, seed=seed, **overrides)
    every = eval_every if eval_every is not None else max(1, s["steps"] // 10)
    n_eval = min(len(ds.test), 1000)
    t0 = time.perf_counter()
    res = train(m, ds.train, steps=s["steps"], batch_size=s["batch_size"], seed=seed, device=device,
                verbose=verbose, eval_fn=held_out_w2(ds.test, n_eval), eval_every=every,
                log_every=max(1, s["steps"] // 200), lr_schedule=s.get("lr_schedule"), checkpoint=checkpoint,
                checkpoint_every=every, resume=True)
    m.generator.cpu()
    metrics = evaluate(m.generator, ds, n=n_eval, seed=seed + 1)
    if out is not None:
        _write(Path(out), res, metrics, ds, m, s, f"{model} on {ds.name}")
    if verbose:
        print(f"trained in {time.perf_counter() - t0:.1f} s")
    return res, metrics, m

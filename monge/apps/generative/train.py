r"""Training generative models with OT losses: the models (what one step does) and one loop (everything else).

- :class:`MKE`: minimum Kantorovich estimation, :math:`\min_\theta \mathbb E\, L(g_\theta(z_{1..n}), y_{1..n})`
  over minibatches, for any loss ``L(x, y, a=None)``: the Sinkhorn generative model is
  ``MKE(generator, monge.nn.SinkhornLoss(blur=...))`` (``grad="unroll"`` or ``"envelope"``);
  ``monge.nn.MMDLoss`` gives an MMD model; a :class:`~monge.nn.generators.GaussianMixtureGenerator` makes it a
  parametric fit.
- :class:`LearnedCost`: :math:`\min_\theta \max_\varphi S_{c_\varphi}(g_\theta, \nu)` with the cost of
  :class:`~monge.apps.generative.losses.LearnedCostLoss`, alternating ``n_critic`` ascent steps on :math:`\varphi`.
- :class:`WGANGP`: :math:`\min_\theta \max_u \mathbb E_\nu u - \mathbb E_{g_\theta} u - \mathrm{GP}(u)`.

:func:`train` runs any of them: seeded minibatches and latents (a ``torch.Generator``), an opt-in tqdm bar,
periodic evaluation, checkpoints (resumable), the device chosen from ``device="auto"``. A non-finite loss stops
the run with a warning and ``status="diverged"``, never silently.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .losses import LearnedCostLoss, gradient_penalty, w1_dual

__all__ = ["MKE", "WGANGP", "LearnedCost", "TrainResult", "draw", "resolve_device", "train"]


def resolve_device(device="auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def draw(generator: nn.Module, n: int, rng: torch.Generator | None = None):
    """``(x, a)`` from a generator's ``sample`` (``a`` is None for equally weighted samples)."""
    out = generator.sample(n, rng)
    return out if isinstance(out, tuple) else (out, None)


class _Model:
    """Common parts: the modules to checkpoint and their optimisers."""

    generator: nn.Module

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._opts

    def to(self, device) -> _Model:
        for m in self.modules().values():
            m.to(device)
        return self


class MKE(_Model):
    r"""Minimum Kantorovich estimation: one Adam step on :math:`L(g_\theta(z), y)` per minibatch.

    Args:
        generator: a module with ``sample(n, generator)`` (see :mod:`monge.nn.generators`).
        loss: ``(x, y, a=None) -> scalar`` between generated and real minibatches (default: the Sinkhorn
            divergence with blur 0.05, eps = blur ** 2).
        lr, betas: Adam's parameters.
    """

    def __init__(self, generator: nn.Module, loss=None, lr: float = 1e-3, betas=(0.5, 0.999)):
        from ...nn import SinkhornLoss

        self.generator = generator
        self.loss = SinkhornLoss(blur=0.05) if loss is None else loss
        self._opts = {"generator": torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)}

    def step(self, real, batch_size: int, rng) -> dict[str, torch.Tensor]:
        x, a = draw(self.generator, batch_size, rng)
        loss = self.loss(x, real(batch_size), a)
        opt = self._opts["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}


class LearnedCost(_Model):
    r"""Sinkhorn divergence with an adversarially learned cost (min over the generator, max over the features).

    Args:
        generator: the generator; features: :math:`f_\varphi`; blur: in embedding units.
        n_critic: feature ascent steps per generator step; lr, lr_features: Adam learning rates.
        loss_kw: other :class:`~monge.apps.generative.losses.LearnedCostLoss` options (``include_input``, ``normalize``,
            ``scaling``, ``tol``, ...).
    """

    def __init__(self, generator: nn.Module, features: nn.Module, blur: float = 0.5, n_critic: int = 1,
                 lr: float = 1e-3, lr_features: float = 1e-4, betas=(0.5, 0.999), **loss_kw):
        self.generator, self.n_critic = generator, n_critic
        self.loss = LearnedCostLoss(features, blur=blur, **loss_kw)
        self._opts = {"generator": torch.optim.Adam(generator.parameters(), lr=lr, betas=betas),
                      "features": torch.optim.Adam(features.parameters(), lr=lr_features, betas=betas)}

    def modules(self):
        return {"generator": self.generator, "features": self.loss.features}

    def step(self, real, batch_size: int, rng):
        opt_f, opt_g = self._opts["features"], self._opts["generator"]
        for _ in range(self.n_critic):
            with torch.no_grad():
                x, a = draw(self.generator, batch_size, rng)
            adv = -self.loss(x, real(batch_size), a)
            opt_f.zero_grad(set_to_none=True)
            adv.backward()
            opt_f.step()
        x, a = draw(self.generator, batch_size, rng)
        loss = self.loss(x, real(batch_size), a)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        return {"loss": loss.detach(), "feature_loss": -adv.detach()}


class WGANGP(_Model):
    r"""WGAN with gradient penalty: ``n_critic`` ascent steps on the penalised W_1 dual, then one generator
    step on :math:`-\mathbb E\, u(g_\theta(z))`. The logged ``w1`` is the critic's dual estimate.

    Defaults are the known-good ones of Gulrajani et al. (2017): lam = 10, n_critic = 5, Adam(1e-4, (0.5, 0.9)).
    """

    def __init__(self, generator: nn.Module, critic: nn.Module, lam: float = 10.0, n_critic: int = 5,
                 lr: float = 1e-4, betas=(0.5, 0.9)):
        self.generator, self.critic, self.lam, self.n_critic = generator, critic, lam, n_critic
        self._opts = {"generator": torch.optim.Adam(generator.parameters(), lr=lr, betas=betas),
                      "critic": torch.optim.Adam(critic.parameters(), lr=lr, betas=betas)}

    def modules(self):
        return {"generator": self.generator, "critic": self.critic}

    def step(self, real, batch_size: int, rng):
        opt_c, opt_g = self._opts["critic"], self._opts["generator"]
        for _ in range(self.n_critic):
            with torch.no_grad():
                x, a = draw(self.generator, batch_size, rng)
            y = real(batch_size)
            w1 = w1_dual(self.critic, y, x, None, a)
            loss_c = -w1 + gradient_penalty(self.critic, y, x, generator=rng, lam=self.lam)
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
        x, a = draw(self.generator, batch_size, rng)
        crit = self.critic(x).reshape(len(x))
        loss_g = -(crit.mean() if a is None else (a * crit).sum() / a.sum())
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        return {"loss": loss_g.detach(), "w1": w1.detach()}


@dataclass(frozen=True)
class TrainResult:
    """What a run did: ``history`` (per logged step: ``step``, ``seconds``, the model's numbers; the
    evaluation's numbers on rows of their own, keyed by ``eval_step``), the number of ``steps`` done, wall
    ``seconds``, ``status`` (``"finished"`` or ``"diverged"``) and the ``device`` used."""

    history: dict[str, list[float]]
    steps: int
    seconds: float
    status: str
    device: str

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def _save(path: Path, model, step, rng, history):
    state = {"step": step, "rng": rng.get_state(), "history": history,
             "modules": {k: m.state_dict() for k, m in model.modules().items()},
             "optimizers": {k: o.state_dict() for k, o in model.optimizers().items()}}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load(path: Path, model, rng, device):
    state = torch.load(path, map_location=device, weights_only=False)  # our own checkpoint file
    for k, m in model.modules().items():
        m.load_state_dict(state["modules"][k])
    for k, o in model.optimizers().items():
        o.load_state_dict(state["optimizers"][k])
    rng.set_state(state["rng"])
    return state["step"], state["history"]


def _set_lr(model, factor: float) -> None:
    for opt in model.optimizers().values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


def _log(history, row):
    for k, v in row.items():
        history.setdefault(k, []).append(float(v))


def _show(bar, done, row):
    if bar.bar is not None:  # the shared tqdm wrapper, with this loop's own numbers
        bar.bar.n = done
        bar.bar.set_postfix({k: f"{float(v):.3g}" for k, v in row.items() if k not in ("step", "seconds")},
                            refresh=False)
        bar.bar.refresh()


def _check_args(train_data, steps, batch_size, lr_schedule) -> None:
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected a nonnegative int, got {steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if not isinstance(train_data, torch.Tensor) or train_data.dim() != 2:
        raise ValueError(f"train_data: expected a tensor of shape (N, D), got "
                         f"{getattr(train_data, 'shape', type(train_data).__name__)}")
    if lr_schedule not in (None, "cosine"):
        raise ValueError(f"lr_schedule: expected None or 'cosine', got {lr_schedule!r}")


def _guarded_step(model, real, batch_size, rng):
    """One model step; the inner solvers' RuntimeWarnings are caught (first message returned, or None)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        row = model.step(real, batch_size, rng)
    inner = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    return row, (str(inner[0].message) if inner else None)


def train(model, train_data: torch.Tensor, *, steps: int, batch_size: int = 256, seed: int = 0,
          device="auto", verbose: bool = False, eval_fn=None, eval_every: int = 0, log_every: int = 10,
          checkpoint: str | Path | None = None, checkpoint_every: int = 0, resume: bool = False,
          lr_schedule: str | None = None) -> TrainResult:
    r"""Train ``model`` (:class:`MKE`, :class:`LearnedCost` or :class:`WGANGP`) on samples ``(N, D)``.

    Minibatches of the data are drawn with replacement, and latents are drawn, from one ``torch.Generator``
    seeded by ``seed``: with the model's parameters initialised under a fixed ``torch.manual_seed``, two runs
    are identical (on one device).

    Args:
        steps: generator steps; batch_size: samples per minibatch (generated and real).
        device: ``"auto"`` (CUDA if available), or a device; the model is moved there.
        eval_fn: ``generator -> dict[str, float]`` called every ``eval_every`` steps and at the end (e.g. a
            held-out W_2, see :func:`monge.apps.generative.evaluate.held_out_w2`); its numbers join the history.
        log_every: record the step's numbers every ``log_every`` steps.
        checkpoint: a file for checkpoints (model and optimiser state, the random state and the history),
            written every ``checkpoint_every`` steps and at the end; ``resume=True`` continues from it if present.
        lr_schedule: ``None`` (constant learning rates) or ``"cosine"`` (every optimiser's rate decays from its
            initial value to 0 over ``steps``: minibatch noise then settles instead of jittering the generator).

    Example:
        >>> from monge.nn.generators import MLPGenerator
        >>> from monge.nn import SinkhornLoss
        >>> _ = torch.manual_seed(0)
        >>> y = torch.randn(200, 2) * 0.1 + 1.0
        >>> model = MKE(MLPGenerator(2, 2, hidden=(32,), output="identity"), SinkhornLoss(blur=0.1), lr=1e-2)
        >>> res = train(model, y, steps=30, batch_size=100, device="cpu")
        >>> res.status, res.history["loss"][-1] < 0.2 * res.history["loss"][0]
        ('finished', True)
    """
    _check_args(train_data, steps, batch_size, lr_schedule)
    dev = resolve_device(device)
    model.to(dev)
    data = train_data.to(dev)
    rng = torch.Generator().manual_seed(seed)
    real = lambda n: data[torch.randint(len(data), (n,), generator=rng).to(dev)]
    path = None if checkpoint is None else Path(checkpoint)
    start, history = 0, {}
    if resume and path is not None and path.exists():
        start, history = _load(path, model, rng, dev)
    from ...solvers._loop import Progress

    bar = Progress(steps, verbose, f"train {type(model).__name__}")
    t0, status, done = time.perf_counter(), "finished", start
    n_inner, first_inner = 0, None
    offset = history["seconds"][-1] if history.get("seconds") else 0.0
    for it in range(start, steps):
        if lr_schedule is not None:
            _set_lr(model, 0.5 * (1 + math.cos(math.pi * it / steps)))
        row, inner = _guarded_step(model, real, batch_size, rng)
        if inner:
            n_inner, first_inner = n_inner + 1, first_inner or inner
        done = it + 1
        if not all(bool(torch.isfinite(v)) for v in row.values()):
            status = "diverged"
            warnings.warn(f"train: non-finite loss at step {done} ({ {k: float(v) for k, v in row.items()} }); "
                          "stopping. Lower the learning rate or raise blur.", RuntimeWarning, stacklevel=2)
            break
        evaluate_now = eval_fn is not None and ((eval_every and done % eval_every == 0) or done == steps)
        if done % log_every == 0 or evaluate_now or done == steps:
            row = {"step": done, "seconds": offset + time.perf_counter() - t0, **row}
            _log(history, row)
            if evaluate_now:
                _log(history, {"eval_step": done, **eval_fn(model.generator)})
            _show(bar, done, row)
        if path is not None and checkpoint_every and done % checkpoint_every == 0:
            _save(path, model, done, rng, history)
    bar.close()
    if n_inner:
        warnings.warn(f"train: the inner solver warned in {n_inner} of {done - start} steps (training-grade "
                      f"tolerances are loose on purpose); first: {first_inner}", RuntimeWarning, stacklevel=2)
    if path is not None:
        _save(path, model, done, rng, history)
    return TrainResult(history, done, offset + time.perf_counter() - t0, status, str(dev))

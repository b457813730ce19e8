r"""Wasserstein barycentric coordinates: the weights whose barycenter of a dictionary best explains a histogram.

.. math::
    \lambda^\star = \arg\min_{\lambda \in \Delta_K} \mathcal{L}\big(P_L(\lambda; a_1, \dots, a_K),\ t\big),
    \qquad \lambda = \mathrm{softmax}(z)

where :math:`P_L` is the entropic barycenter after ``L`` unrolled Bregman iterations (differentiated through
them) and :math:`\mathcal{L}` a loss between histograms (Bonneel, Peyre, Cuturi 2016, "Wasserstein barycentric
coordinates: histogram regression using optimal transport", ACM Trans. Graph. 35(4)).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from .._validation import as_tensor, check_positive, check_weights
from .._warnings import warn
from ..problems.barycenter import BarycenterProblem
from ..results import CoordinatesResult, Convergence
from ..solvers.barycenter import Barycenter
from ..api import support_geometry

__all__ = ["barycentric_coordinates", "CoordinatesFit", "CoordinatesResult", "LOSSES"]

LOSSES = ("l2", "kl")
_OPTIMIZERS = ("lbfgs", "adam")


@dataclass(frozen=True, eq=False)
class CoordinatesFit:
    r"""How :func:`barycentric_coordinates` fits the weights :math:`\lambda = \mathrm{softmax}(z)`: the optimiser
    over the logits ``z``, its stop test and its start.

    Args:
        optimizer: ``"lbfgs"`` (strong Wolfe line search, default) or ``"adam"``.
        max_iter: optimiser iterations (each evaluates the unrolled barycenter and its gradient).
        lr: step size (``None``: 1 for L-BFGS, 0.1 for Adam).
        tol: converged when the relative loss change of the last step (``"loss_change"``) is below it; for
            L-BFGS also when the gradient's largest entry w.r.t. the logits at the returned weights is (its two
            stop tests; the error is the smaller one, criterion ``"min(grad_max, loss_change)"``).
        init: initial weights ``(K,)``, positive (``None``: uniform); normalised to the simplex.

    Example:
        >>> CoordinatesFit(optimizer="adam", lr=0.3)
        CoordinatesFit(optimizer='adam', max_iter=100, lr=0.3, tol=1e-09, init=None)
    """

    optimizer: str = "lbfgs"
    max_iter: int = 100
    lr: float | None = None
    tol: float = 1e-9
    init: object = None

    def __post_init__(self):
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {_OPTIMIZERS}, got {self.optimizer!r}")
        _check_count(self.max_iter, "max_iter")
        check_positive(self.lr, "lr", allow_none=True)
        check_positive(self.tol, "tol")


_FIT_FIELDS = tuple(f.name for f in fields(CoordinatesFit))


def _check_count(v, name: str) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")


def _fit_options(fit, fit_kw: dict) -> CoordinatesFit:
    """``fit`` (a :class:`CoordinatesFit` or ``None``) with the fields named in ``fit_kw`` replaced."""
    if fit is not None and not isinstance(fit, CoordinatesFit):
        raise TypeError(f"fit: expected a CoordinatesFit or None, got {type(fit).__name__}; pass "
                        "fit=monge.CoordinatesFit(...) or its fields as keywords (max_iter=...)")
    unknown = sorted(set(fit_kw) - set(_FIT_FIELDS))
    if unknown:
        raise TypeError(f"barycentric_coordinates: unexpected keyword {unknown[0]!r}; expected target, atoms, eps, "
                        f"geom, loss, bary_iter, fit or a CoordinatesFit field ({', '.join(_FIT_FIELDS)})")
    return replace(fit or CoordinatesFit(), **fit_kw)


def _loss_fn(loss, k: int):
    """The loss ``(b, t) -> scalar``: relative squared l2, KL(t | b), or the user's callable."""
    dims = tuple(range(-k, 0))
    if callable(loss):
        return loss
    if loss == "l2":
        return lambda b, t: ((b - t) ** 2).sum(dims) / (t**2).sum(dims)
    if loss == "kl":
        def kl(b, t):
            pos = t > 0
            log_ratio = torch.where(pos, t.clamp_min(1e-300).log() - b.clamp_min(torch.finfo(b.dtype).tiny).log(), 0.0)
            return (t * log_ratio - t + b).sum(dims)
        return kl
    raise ValueError(f"loss: expected one of {LOSSES} or a callable (barycenter, target) -> scalar, got {loss!r}")


def barycentric_coordinates(target, atoms, *, eps: float, geom=None, loss="l2", bary_iter: int = 50,
                            fit: CoordinatesFit | None = None, **fit_kw) -> CoordinatesResult:
    r"""Barycentric coordinates of ``target`` in the dictionary ``atoms`` (Bonneel, Peyre, Cuturi 2016).

    .. math::
        \min_{z \in \mathbb{R}^K} \mathcal{L}\big(P_L(\mathrm{softmax}(z)),\ t\big), \qquad
        \mathcal{L}_{l2}(b, t) = \frac{\|b - t\|_2^2}{\|t\|_2^2}, \quad
        \mathcal{L}_{kl}(b, t) = \mathrm{KL}(t \,|\, b)

    Args:
        target: the histogram ``t`` to explain, ``(*support)`` (a grid: an image), same mass as the atoms.
        atoms: the dictionary ``(K, *support)`` of histograms of equal mass.
        eps, geom, bary_iter: the map being fitted, :math:`P_L`: the barycenter's temperature ``eps`` (cost units),
            its support and cost ``geom`` as in :func:`monge.api.barycenter` (a Geometry, a cost matrix,
            ``"grid"`` over the whole shape of ``target``, or a :class:`~monge.geometry.GridSpec`) and ``L``, the
            fixed number of unrolled Bregman iterations (``bary_iter``).
        loss: ``"l2"`` (relative squared l2, default), ``"kl"`` or a callable ``(barycenter, target) -> scalar``.
        fit: the optimiser, its stop test and its start, a :class:`CoordinatesFit` (``None``: its defaults,
            L-BFGS for 100 iterations to ``tol=1e-9`` from uniform weights).
        **fit_kw: :class:`CoordinatesFit` fields for short (``max_iter=20``, ``optimizer="adam"``, ``lr``, ``tol``,
            ``init``), replacing those of ``fit``; any other keyword is a ``TypeError``.

    Returns:
        :class:`CoordinatesResult` with a :class:`~monge.results.Convergence`: ``converged=False`` (and a warning)
        when ``max_iter`` was reached, or L-BFGS stopped making progress (``"stalled"``), above ``tol``; its level
        ``"barycenter"`` is the final barycenter's loop (``bary_iter`` iterations asked: it does not decide
        ``converged``).

    Example:
        >>> import torch
        >>> x = torch.linspace(0, 1, 30, dtype=torch.float64)
        >>> bump = lambda c: torch.softmax(-(x - c) ** 2 / 0.01, 0)   # normalised Gaussian bumps
        >>> atoms = torch.stack([bump(0.2), bump(0.8)])
        >>> res = barycentric_coordinates(bump(0.32), atoms, eps=1e-3, geom="grid", loss="kl", bary_iter=20,
        ...                               fit=CoordinatesFit(max_iter=50))
        >>> [round(v, 2) for v in res.weights.tolist()]   # 0.32 = 0.8 * 0.2 + 0.2 * 0.8
        [0.8, 0.2]
    """
    fit = _fit_options(fit, fit_kw)
    atoms = as_tensor(atoms, "atoms")
    target = as_tensor(target, "target", dtype=atoms.dtype, device=atoms.device)
    if atoms.dim() != target.dim() + 1 or atoms.shape[1:] != target.shape:
        raise ValueError(f"atoms, target: expected atoms (K, *support) and target (*support), got "
                         f"{tuple(atoms.shape)} and {tuple(target.shape)}")
    _check_count(bary_iter, "bary_iter")
    g = support_geometry(geom, atoms, target.dim())
    K, k = atoms.shape[0], len(g.target_shape)
    lossf = _loss_fn(loss, k)
    solver = Barycenter(eps=eps, tol=0, max_iter=bary_iter, grad="unroll")
    BarycenterProblem(g, atoms)  # validates the dictionary once (masses, shapes) with a clear error
    z0 = atoms.new_zeros(K) if fit.init is None else _logits(fit.init, K, atoms)
    z = z0.clone().requires_grad_(True)
    losses = []

    def evaluate():
        b = solver(BarycenterProblem(g, atoms, torch.softmax(z, 0))).barycenter
        value = lossf(b, target)
        losses.append(float(value.detach()))
        return value, b

    n_its, stalled, change = _optimise(z, evaluate, fit)
    lam = torch.softmax(z.detach(), 0).requires_grad_(True)
    bary = solver(BarycenterProblem(g, atoms, lam))
    value = lossf(bary.barycenter, target)
    conv = _convergence(value, lam, fit, n_its, stalled, change, bary.convergence)
    return CoordinatesResult(weights=lam.detach(), barycenter=bary.barycenter.detach(),
                             losses=torch.tensor(losses, dtype=atoms.dtype), convergence=conv)


def _convergence(value, lam, fit: CoordinatesFit, n_its: int, stalled: bool, change, inner) -> Convergence:
    """The certificate of the returned weights (either of L-BFGS's two tests at them; Adam: the last relative loss
    change), with the final barycenter's loop as the level ``"barycenter"``; warns when not converged."""
    (grad_lam,) = torch.autograd.grad(value, lam)
    grad_z = lam.detach() * (grad_lam - (grad_lam * lam.detach()).sum())  # chain rule through the softmax
    if fit.optimizer == "lbfgs":  # at its cap: the gradient only
        v = float(value.detach())
        change = abs(v - change) / max(1.0, abs(v)) if stalled else float("inf")
        error, criterion = torch.minimum(grad_z.abs().max(), grad_z.new_tensor(change)), "min(grad_max, loss_change)"
    else:
        error, criterion = grad_z.new_tensor(change), "loss_change"
    conv = Convergence.build(error, fit.tol, n_its, criterion=criterion, stalled=torch.tensor(stalled))
    conv = replace(conv, levels=(("barycenter", inner),))  # informative: L iterations are the model
    if not conv.all_converged:
        warn(f"barycentric_coordinates: the {fit.optimizer} optimiser stopped ({conv.status[0]}) after {n_its} of "
             f"max_iter={fit.max_iter} iterations with a {criterion} of {float(error):.3g} > tol={fit.tol:g}; raise "
             "max_iter or tol. The result reports converged=False.")
    return conv


def _logits(init, K: int, like: torch.Tensor) -> torch.Tensor:
    w = as_tensor(init, "init").to(like)  # a starting point: taken in the atoms' dtype
    w = check_weights(w, "init", K, like, size_name="K", like_name="atoms")  # the one weights validator
    if w.shape != (K,) or bool((w <= 0).any()):  # and the logits need every weight positive
        raise ValueError(f"init: expected ({K},) positive weights, got {tuple(w.shape)} with min {float(w.min()):.3g}")
    return torch.log(w / w.sum())


def _optimise(z, evaluate, fit: CoordinatesFit) -> tuple[int, bool, float | None]:
    """Minimise ``evaluate()[0]`` over ``z``; returns (iterations, stopped early, Adam: the last relative loss
    change; L-BFGS: the loss before its last iteration)."""
    max_iter, lr, tol = fit.max_iter, fit.lr, fit.tol
    if fit.optimizer == "lbfgs":
        opt = torch.optim.LBFGS([z], lr=1.0 if lr is None else lr, max_iter=max_iter, tolerance_grad=tol,
                                tolerance_change=tol * 1e-3, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value, _ = evaluate()
            value.backward()
            return value

        opt.step(closure)
        state = opt.state[opt._params[0]]
        return state["n_iter"], state["n_iter"] < max_iter, float(state["prev_loss"])
    opt = torch.optim.Adam([z], lr=0.1 if lr is None else lr)
    prev, change = float("inf"), float("inf")
    for step in range(1, max_iter + 1):
        opt.zero_grad()
        value, _ = evaluate()
        value.backward()
        opt.step()
        cur = float(value.detach())
        change = abs(prev - cur) / max(1.0, abs(cur))
        if change <= tol:
            return step, True, change
        prev = cur
    return max_iter, False, change

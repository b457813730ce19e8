r"""Shape registration: fit a transform of a point cloud onto another by minimising a Sinkhorn divergence.

.. math::
    \min_\theta\; S_\varepsilon\big(T_\theta \# \alpha,\ \beta\big) + \lambda R(\theta),
    \qquad \alpha = \sum_i a_i \delta_{x_i},\ \beta = \sum_j b_j \delta_{y_j},

with :math:`S_\varepsilon` the debiased Sinkhorn divergence (:func:`monge.sinkhorn_divergence`, cost
:math:`\|x - y\|^2`, ``eps = blur**2``; unbalanced with ``rho = reach**2``, which lets outliers and parts without
a counterpart go unmatched). No correspondences are needed: the divergence compares the clouds as measures
(Feydy, Charlier, Vialard & Peyré 2017; Feydy et al. 2019). Models :math:`T_\theta`, about the centroid
:math:`\bar x` of ``x``:

- ``"rigid"``: :math:`T(x) = s R (x - \bar x) + \bar x + t` with :math:`R = \exp(\Omega)` (:math:`\Omega`
  skew-symmetric, any dimension) and :math:`s = e^{\sigma}` (``scale=False`` keeps :math:`s = 1`);
- ``"affine"``: :math:`T(x) = A (x - \bar x) + \bar x + t`;
- ``"kernel"``: :math:`T(x) = x + \sum_k k(x, c_k) w_k`, a smooth deformation with a Gaussian kernel of width
  ``width`` on control points :math:`c_k` (a subsample of ``x``), penalised by its RKHS norm
  :math:`\lambda \sum_{kl} k(c_k, c_l) \langle w_k, w_l\rangle`.

The optimiser (L-BFGS with a strong-Wolfe line search, or Adam) runs coarse to fine: ``stages`` rounds with the
blur halved each time down to ``blur``, so that a large blur first aligns the bulk (the divergence is smoother
and has fewer local minima at large blur) and the final one the details.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .._validation import as_tensor, check_points, check_positive, common_dtype_device
from ..divergences import sinkhorn_divergence
from ..results import Convergence

__all__ = ["Transform", "RegistrationResult", "register"]

MODELS = ("rigid", "affine", "kernel")
#: Inner Sinkhorn solves: a marginal error of 1e-5 gives gradients far more accurate than an optimiser step needs;
#: the cap keeps one bad evaluation (a line-search probe far away) from costing thousands of iterations.
_SINKHORN = {"tol": 1e-5, "max_iter": 1000}
OPTIMIZERS = ("lbfgs", "adam")


def _skew(v: torch.Tensor, d: int) -> torch.Tensor:
    iu = torch.triu_indices(d, d, 1)
    W = v.new_zeros(d, d)
    W[iu[0], iu[1]] = v
    return W - W.T


def _gauss(u: torch.Tensor, c: torch.Tensor, width: float) -> torch.Tensor:
    return torch.exp(-torch.cdist(u, c).square() / (2 * width**2))


@dataclass(frozen=True)
class Transform:
    r"""A fitted transform; call it on points ``(n, d)``. ``matrix``/``translation`` describe the linear part
    (rigid/affine: :math:`T(x) = M x + t'`; kernel: ``None``)."""

    model: str
    params: dict
    center: torch.Tensor
    width: float | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p, c = self.params, self.center
        if self.model == "kernel":
            return x + _gauss(x, p["ctrl"], self.width) @ p["w"]
        return (x - c) @ self.linear.T + c + p["t"]

    @property
    def linear(self) -> torch.Tensor:
        """The matrix of the linear part: :math:`s R` (rigid) or :math:`A` (affine)."""
        p, d = self.params, self.center.shape[-1]
        if self.model == "rigid":
            return torch.exp(p["log_s"]) * torch.linalg.matrix_exp(_skew(p["omega"], d))
        if self.model == "affine":
            return p["A"]
        raise AttributeError("linear: a kernel deformation has no single linear part")

    @property
    def rotation(self) -> torch.Tensor:
        """Rigid model: the rotation :math:`R`."""
        return torch.linalg.matrix_exp(_skew(self.params["omega"], self.center.shape[-1]))

    @property
    def scale(self) -> torch.Tensor:
        """Rigid model: the scale :math:`s`."""
        return torch.exp(self.params["log_s"])

    @property
    def translation(self) -> torch.Tensor:
        r"""Rigid/affine: :math:`t' = \bar x - M \bar x + t`, so that :math:`T(x) = M x + t'`."""
        return self.center - self.linear @ self.center + self.params["t"]


@dataclass(frozen=True)
class RegistrationResult:
    """``transform`` (callable), ``moved = transform(x)``, the final ``loss`` and its ``losses`` trace (one per
    optimiser step, all stages), ``convergence`` (criterion: the loss change over the last step divided by the
    initial loss)."""

    transform: Transform
    moved: torch.Tensor
    loss: torch.Tensor
    losses: torch.Tensor
    convergence: Convergence


def _init_params(model, x, scale, n_ctrl, seed):
    d = x.shape[-1]
    z = lambda *s: x.new_zeros(*s)  # noqa: E731
    if model == "rigid":
        params = {"omega": z(d * (d - 1) // 2), "log_s": z(()), "t": z(d)}
        return params, ([] if scale else ["log_s"])
    if model == "affine":
        return {"A": torch.eye(d, dtype=x.dtype, device=x.device), "t": z(d)}, []
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n_ctrl].to(x.device)
    return {"ctrl": x[idx].detach().clone(), "w": z(len(idx), d)}, ["ctrl"]


def _penalty(T: Transform, reg: float) -> torch.Tensor:
    if T.model != "kernel" or reg == 0:
        return T.center.new_zeros(())
    K = _gauss(T.params["ctrl"], T.params["ctrl"], T.width)
    w = T.params["w"]
    return reg * (w * (K @ w)).sum()


def _check_model_args(model, optimizer, stages, max_iter, blur, reach, reg):
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
    for name, v in (("stages", stages), ("max_iter", max_iter)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    check_positive(blur, "blur")
    check_positive(reach, "reach", allow_none=True)
    if reg < 0:
        raise ValueError(f"reg: expected a nonnegative number, got {reg!r}")


def _run_stage(T, trainable, loss_fn, optimizer, max_iter, lr, losses):
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(trainable, lr=lr or 1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            v = loss_fn()
            v.backward()
            losses.append(float(v.detach()))
            return v

        opt.step(closure)
        return
    opt = torch.optim.Adam(trainable, lr=lr or 1e-2)
    for _ in range(max_iter):
        opt.zero_grad()
        v = loss_fn()
        v.backward()
        opt.step()
        losses.append(float(v.detach()))


def register(x, y, model: str = "rigid", *, a=None, b=None, blur: float = 0.05, reach: float | None = None,
             scale: bool = True, width: float | None = None, reg: float = 1e-3, n_ctrl: int = 100, stages: int = 3,
             optimizer: str = "lbfgs", max_iter: int = 50, lr: float | None = None, tol: float = 1e-6,
             seed: int = 0) -> RegistrationResult:
    r"""Fit ``model`` so that the transformed ``x`` matches ``y`` as measures (see the module docstring).

    Args:
        x: ``(n, d)`` points to move; y: ``(m, d)`` target points; a, b: weights (``None``: uniform).
        model: ``"rigid"`` (rotation, translation, and a scale unless ``scale=False``), ``"affine"`` or
            ``"kernel"`` (smooth Gaussian-kernel deformation of width ``width``, default a fifth of the diameter
            of ``x``, on ``n_ctrl`` control points, RKHS penalty ``reg``).
        blur: final length scale of the Sinkhorn divergence (data units; ``eps = blur**2``).
        reach: length scale of the marginal penalty (``rho = reach**2``): unbalanced, robust to outliers and
            partial overlap; ``None``: balanced.
        stages: coarse-to-fine rounds, blur ``blur * 2**(stages - 1)`` down to ``blur``.
        optimizer: ``"lbfgs"`` (``max_iter`` evaluations per stage) or ``"adam"`` (``max_iter`` steps, ``lr``).
        tol: the result is ``converged`` when the loss changed by at most ``tol`` times the initial loss over the
            last step.

    Returns:
        :class:`RegistrationResult`; ``transform.rotation``, ``.scale``, ``.translation``, ``.linear`` expose the
        fitted parameters of the rigid and affine models.

    Example:
        >>> import math, torch
        >>> x = torch.rand(60, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> th = 0.3
        >>> R = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
        >>> res = register(x, x @ R.T + 0.1, model="rigid")
        >>> bool(torch.allclose(res.transform.rotation, R, atol=1e-2))
        True
    """
    _check_model_args(model, optimizer, stages, max_iter, blur, reach, reg)
    x, y = as_tensor(x, "x"), as_tensor(y, "y")
    for name, v in (("x", x), ("y", y)):
        check_points(v, name)
        if v.dim() != 2:
            raise ValueError(f"{name}: expected points of shape (n, d), got shape {tuple(v.shape)}")
    common_dtype_device(x=x, y=y)
    if y.shape[-1] != x.shape[-1]:
        raise ValueError(f"y: expected points of dimension d = {x.shape[-1]} as x, got shape {tuple(y.shape)}")
    x, y = x.detach(), y.detach()
    center = x.mean(0)
    width = width if width is not None else 0.2 * float((x - center).norm(dim=-1).max() * 2)
    params, frozen = _init_params(model, x, scale, n_ctrl, seed)
    trainable = [v.requires_grad_(True) for k, v in params.items() if k not in frozen]
    T = Transform(model, params, center, width if model == "kernel" else None)
    losses: list[float] = []
    for s in range(stages):
        bl = blur * 2.0 ** (stages - 1 - s)
        eps, rho = bl**2, None if reach is None else reach**2

        def loss_fn():
            return sinkhorn_divergence(T(x), y, a, b, eps=eps, rho=rho, **_SINKHORN) + _penalty(T, reg)

        with warnings.catch_warnings():  # probes of the line search may be poorly converged; the result says how
            warnings.simplefilter("ignore", RuntimeWarning)  # the registration itself ended (convergence below)
            _run_stage(T, trainable, loss_fn, optimizer, max_iter, lr, losses)
    for v in trainable:
        v.requires_grad_(False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # reported below, as the registration's convergence
        final = loss_fn()
        moved = T(x)
    prev = losses[-2] if len(losses) > 1 else float("inf")
    change = abs(prev - float(final)) / max(abs(losses[0]), 1e-300)
    conv = Convergence.build(change, tol, len(losses), criterion="loss_change_over_initial",
                             errors=torch.tensor(losses, dtype=x.dtype))
    return RegistrationResult(T, moved, final, torch.tensor(losses, dtype=x.dtype), conv)

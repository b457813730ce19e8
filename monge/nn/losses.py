r"""Loss modules for training loops, with data-unit knobs.

``blur`` and ``reach`` are lengths in the units of the data; with the cost :math:`\|x - y\|^p` they become
``eps = blur ** p`` and ``rho = reach ** p`` (cost units). ``scaling`` is the per-stage ratio of the blur
during eps-scaling (so the temperature ratio is ``scaling ** p``), as in GeomLoss.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_p, check_positive
from ..divergences import KERNELS, mmd, sinkhorn_divergence
from ..geometry import PointCloud
from ..geometry.costs import get_cost
from ..problems import LinearProblem
from ..solvers.schedules import EpsScaling
from ..solvers.sinkhorn import Sinkhorn

__all__ = ["SinkhornLoss", "MMDLoss"]


_BACKENDS = ("auto", "dense", "lazy", "multiscale")


def _check_knobs(p, blur, reach, scaling, backend) -> float:
    """Validate the data-unit knobs as the user gave them (an error then names ``blur``, not the derived eps)."""
    p = check_p(p)
    check_positive(blur, "blur")
    check_positive(reach, "reach", allow_none=True)
    check_positive(scaling, "scaling")
    if not scaling < 1:
        raise ValueError(f"scaling: expected a number in (0, 1) (the blur ratio between stages), got {scaling}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
    return p


def _power(v: float, p: float, name: str) -> float:
    """``v ** p`` (a length to cost units), with an error naming ``v`` if it overflows or underflows."""
    try:
        out = math.pow(float(v), p)
    except OverflowError:
        out = math.inf
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name}: {name} ** p = {v:g} ** {p:g} is not a positive finite float ({out}); rescale the "
                         f"data (and {name}) to lengths nearer 1")
    return out


class SinkhornLoss(torch.nn.Module):
    r"""Sinkhorn divergence (``debias=True``) or entropic OT value between point clouds, as a loss.

    Args:
        p: cost exponent, :math:`c(x, y) = \|x - y\|^p`.
        blur: length scale of the entropic blur; ``eps = blur ** p``.
        reach: length scale of the marginal penalty (``None``: balanced); ``rho = reach ** p``.
        scaling: blur ratio between eps-scaling stages, in (0, 1).
        debias: subtract the self terms (the Sinkhorn divergence, >= 0, = 0 iff equal inputs).
        backend: ``"dense"``, ``"lazy"`` or ``"auto"``; grad: ``"envelope"``, ``"unroll"`` or ``"implicit"``.
        cost: the ground cost (``None``: :math:`\|x - y\|^p`); ``"sqeuclidean_half"`` (with ``p=2``) is
            :math:`\tfrac12\|x - y\|^2`, GeomLoss's convention. ``eps = blur ** p`` and ``rho = reach ** p`` whatever
            the cost, as in GeomLoss.
        **solver_kw: other :class:`~monge.solvers.sinkhorn.Sinkhorn` options (``tol``, ``max_iter``, ...).

    Porting from GeomLoss (``SamplesLoss("sinkhorn", p=..., blur=..., reach=..., scaling=..., debias=...)``):

    ============  =========================================  ============================================
    GeomLoss      monge, same numbers                        monge default cost (no 1/2), p = 2
    ============  =========================================  ============================================
    cost          ``cost="sqeuclidean_half"``, ``p=2``       :math:`\|x-y\|^2`: twice GeomLoss's cost
    p = 1         ``p=1`` (:math:`\|x-y\|`, identical)        --
    blur          ``blur`` (``eps = blur ** p``)              ``blur * sqrt(2)`` gives the same plan
    reach         ``reach`` (``rho = reach ** p``)            ``reach * sqrt(2)`` gives the same plan
    scaling       ``scaling`` (blur ratio per stage)          ``scaling`` (same)
    debias        ``debias``                                 ``debias``
    value         identical                                  twice GeomLoss's value (same blur*sqrt(2))
    gradient, lr  identical, same learning rate              gradients twice as large: halve the lr
    backend       tensorized/online: ``"dense"``/``"lazy"``  same
    ============  =========================================  ============================================

    ``forward(x, y, a=None, b=None)`` takes ``x (..., N, D)``, ``y (..., M, D)`` (a leading batch dimension
    gives one loss per pair) and returns a tensor of the batch shape.

    Example:
        >>> import torch
        >>> loss = SinkhornLoss(blur=0.05)
        >>> x = torch.rand(4, 50, 2, requires_grad=True); y = torch.rand(4, 60, 2)
        >>> value = loss(x, y); value.shape
        torch.Size([4])
        >>> value.sum().backward(); x.grad.shape
        torch.Size([4, 50, 2])
    """

    def __init__(self, p: float = 2, blur: float = 0.05, reach: float | None = None, scaling: float = 0.5,
                 debias: bool = True, backend: str = "auto", grad: str = "envelope", cost=None, **solver_kw):
        super().__init__()
        p = _check_knobs(p, blur, reach, scaling, backend)  # the user's arguments, before anything is derived
        for k in ("eps", "rho", "schedule"):
            if k in solver_kw:
                raise TypeError(f"{k}: set by SinkhornLoss from blur, reach and scaling (eps = blur ** p, rho = "
                                f"reach ** p); pass those instead")
        self.cost = None if cost is None else get_cost(cost, p)
        self.p, self.blur, self.reach, self.debias, self.backend = p, blur, reach, debias, backend
        self.eps = _power(blur, p, "blur")
        self.rho = None if reach is None else _power(reach, p, "reach")
        self.schedule = EpsScaling(factor=_power(scaling, p, "scaling"))
        self.solver_kw = dict(grad=grad, **solver_kw)
        Sinkhorn(eps=self.eps, schedule=self.schedule, **self.solver_kw)  # grad, tol, max_iter...: checked now

    def forward(self, x, y, a=None, b=None):
        if self.debias:
            return sinkhorn_divergence(x, y, a, b, eps=self.eps, p=self.p, rho=self.rho, backend=self.backend,
                                       schedule=self.schedule, cost=self.cost, **self.solver_kw)
        cost = self.cost if self.cost is not None else ("euclidean" if self.p != 2 else "sqeuclidean")
        prob = LinearProblem(PointCloud(x, y, cost=cost, p=None if self.cost is not None else self.p,
                                        backend=self.backend), a, b, rho_a=self.rho,
                             rho_b=self.rho)
        return Sinkhorn(eps=self.eps, schedule=self.schedule, **self.solver_kw)(prob).value

    def extra_repr(self) -> str:
        return f"p={self.p:g}, blur={self.blur:g} (eps={self.eps:.3g}), reach={self.reach}, debias={self.debias}"


class MMDLoss(torch.nn.Module):
    r"""Half the squared kernel norm between point clouds (see :func:`monge.divergences.mmd`).

    Example:
        >>> import torch
        >>> float(MMDLoss()(torch.zeros(3, 2), torch.zeros(5, 2)))
        0.0
    """

    def __init__(self, kernel: str = "energy", scale: float | None = None):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel: expected one of {sorted(KERNELS)}, got {kernel!r}")
        if kernel == "energy" and scale is not None:
            raise ValueError(f"scale: the energy kernel is scale-free and would ignore scale={scale!r}; drop scale, "
                             "or use kernel='gaussian' / 'laplacian'")
        check_positive(scale, "scale", allow_none=kernel == "energy")
        self.kernel, self.scale = kernel, scale

    def forward(self, x, y, a=None, b=None):
        return mmd(x, y, a, b, kernel=self.kernel, scale=self.scale)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, scale={self.scale}"

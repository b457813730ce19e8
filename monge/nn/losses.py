r"""Loss modules for training loops, with data-unit knobs.

``blur`` and ``reach`` are lengths in the units of the data; with the cost :math:`\|x - y\|^p` they become
``eps = blur ** p`` and ``rho = reach ** p`` (cost units). ``scaling`` is the per-stage ratio of the blur
during eps-scaling (so the temperature ratio is ``scaling ** p``), as in GeomLoss.
"""

from __future__ import annotations

import torch

from ..divergences import mmd, sinkhorn_divergence
from ..geometry import PointCloud
from ..problems import LinearProblem
from ..solvers.schedules import EpsScaling
from ..solvers.sinkhorn import Sinkhorn

__all__ = ["SinkhornLoss", "MMDLoss"]


class SinkhornLoss(torch.nn.Module):
    r"""Sinkhorn divergence (``debias=True``) or entropic OT value between point clouds, as a loss.

    Args:
        p: cost exponent, :math:`c(x, y) = \|x - y\|^p`.
        blur: length scale of the entropic blur; ``eps = blur ** p``.
        reach: length scale of the marginal penalty (``None``: balanced); ``rho = reach ** p``.
        scaling: blur ratio between eps-scaling stages, in (0, 1).
        debias: subtract the self terms (the Sinkhorn divergence, >= 0, = 0 iff equal inputs).
        backend: ``"dense"``, ``"lazy"`` or ``"auto"``; grad: ``"envelope"``, ``"unroll"`` or ``"implicit"``.
        **solver_kw: other :class:`~monge.solvers.sinkhorn.Sinkhorn` options (``tol``, ``max_iter``, ...).

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
                 debias: bool = True, backend: str = "auto", grad: str = "envelope", **solver_kw):
        super().__init__()
        for name, v in (("blur", blur), ("scaling", scaling)):
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"{name}: expected a positive number, got {v!r}")
        if not scaling < 1:
            raise ValueError(f"scaling: expected a number in (0, 1), got {scaling}")
        if reach is not None and not reach > 0:
            raise ValueError(f"reach: expected a positive number or None, got {reach!r}")
        self.p, self.blur, self.reach, self.debias, self.backend = float(p), blur, reach, debias, backend
        self.eps = blur**p
        self.rho = None if reach is None else reach**p
        self.schedule = EpsScaling(factor=scaling**p)
        self.solver_kw = dict(grad=grad, **solver_kw)

    def forward(self, x, y, a=None, b=None):
        if self.debias:
            return sinkhorn_divergence(x, y, a, b, eps=self.eps, p=self.p, rho=self.rho, backend=self.backend,
                                       schedule=self.schedule, **self.solver_kw)
        prob = LinearProblem(PointCloud(x, y, cost="euclidean" if self.p != 2 else "sqeuclidean", p=self.p,
                                        backend=self.backend), a, b, rho_a=self.rho, rho_b=self.rho)
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
        self.kernel, self.scale = kernel, scale

    def forward(self, x, y, a=None, b=None):
        return mmd(x, y, a, b, kernel=self.kernel, scale=self.scale)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, scale={self.scale}"

"""A geometry given by an explicit cost matrix."""

from __future__ import annotations

import torch

from .._validation import as_tensor, check_cost_matrix
from ..ops.kernel import KERNEL_MAX_ENTRIES, KernelDense, adapts
from ..ops.logsumexp import dense_softmin
from .base import Geometry

__all__ = ["DenseCost"]


class DenseCost(Geometry):
    """A geometry given by a cost matrix ``C`` of shape ``(..., n, m)``.

    Args:
        C: finite costs, float32 or float64, any device; leading dimensions are batch dimensions.
        symmetric: declare that source and target are one support with ``C = C^T`` (e.g. a ground metric
            between the bins of histograms); then ``OT(a, a)`` uses the symmetric (averaged) Sinkhorn update.
            Checked (``C`` square, ``C == C^T``) when given.

    Example:
        >>> import torch
        >>> DenseCost(torch.zeros(3, 4)).shape
        (3, 4)
    """

    def __init__(self, C, symmetric: bool = False):
        C = as_tensor(C, "C")
        check_cost_matrix(C, "C")
        if symmetric:
            n, m = C.shape[-2:]
            if n != m or not bool(torch.equal(C.detach(), C.detach().transpose(-1, -2))):
                raise ValueError(
                    f"C: symmetric=True needs a square cost equal to its transpose, got shape {tuple(C.shape)}"
                    + ("" if n != m else " with C != C^T (symmetrise it with (C + C.mT) / 2)")
                )
        self.C = C
        self._symmetric = bool(symmetric)
        self._fast = _KernelCache()

    @property
    def symmetric(self) -> bool:
        return self._symmetric

    @property
    def shape(self):
        return tuple(self.C.shape[-2:])

    @property
    def batch_shape(self):
        return self.C.shape[:-2]

    @property
    def dtype(self):
        return self.C.dtype

    @property
    def device(self):
        return self.C.device

    def cost(self) -> torch.Tensor:
        return self.C

    def like(self) -> torch.Tensor:
        return self.C

    def softmin(self, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
        """The log-domain soft-min; repeated calls at one ``eps`` switch to the kernel fast path (same result up
        to rounding, see :mod:`monge.ops.kernel`) unless the call must differentiate w.r.t. ``C``."""
        if not (self.C.requires_grad and torch.is_grad_enabled()):
            adapt = adapts(h)
            kern = self._fast.get(self.C, eps, adapt)
            if kern is not None:
                out = kern.softmin(h, eps, dim)
                if adapt:
                    self._fast.report(kern)
                return out
        return dense_softmin(self.C, h, eps, dim)

    def detach(self) -> "DenseCost":
        """The same geometry on a detached cost (itself when the cost needs no gradient)."""
        return DenseCost(self.C.detach(), symmetric=self._symmetric) if self.C.requires_grad else self

    def __repr__(self) -> str:
        return f"DenseCost(shape={tuple(self.C.shape)}, dtype={self.C.dtype})"


class _KernelCache:
    """When to use :class:`~monge.ops.kernel.KernelDense` for a cost: from the third call at one ``eps`` (an
    annealing stage of one iteration never pays for the kernel's ``n m`` exponentials), for costs up to
    :data:`~monge.ops.kernel.KERNEL_MAX_ENTRIES` entries, and not at an ``eps`` where the products underflowed
    for over 5% of the entries (the exact fallback would then cost more than the plain log-sum-exp)."""

    def __init__(self):
        self.kern, self.eps, self.calls, self.refused = None, None, 0, set()

    def get(self, C: torch.Tensor, eps, adapt: bool = True):
        """The kernel to use at ``eps`` (or None); ``adapt=False`` (a call recorded for autograd) only reads."""
        if not isinstance(eps, (int, float)) or C.numel() > KERNEL_MAX_ENTRIES:
            return None
        eps = float(eps)
        if self.kern is not None and self.eps == eps:
            return self.kern
        if eps in self.refused or not adapt:
            return None
        self.calls = self.calls + 1 if self.eps == eps else 1
        self.eps, self.kern = eps, None
        if self.calls >= 3:
            self.kern = KernelDense(C.detach(), eps)
        return self.kern

    def report(self, kern) -> None:
        if kern.bad_fraction > 0.05:
            self.refused.add(self.eps)
            self.kern = None

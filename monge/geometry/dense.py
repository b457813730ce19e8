"""A geometry given by an explicit cost matrix."""

from __future__ import annotations

import torch

from .._validation import as_tensor, check_cost_matrix
from ._backends.kernel import KernelCache
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
        self._fast = KernelCache()

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
        to rounding, see :mod:`monge.geometry._backends.kernel`) unless the call must differentiate w.r.t. ``C``."""
        return self._fast.softmin(self.C, h, eps, dim)

    def scaling_loop(self, eps: float):
        """The compiled scaling-domain iterations at ``eps`` (a :class:`~monge.geometry._backends.kernel.KernelDense`
        whose ``run`` does several Sinkhorn iterations per call), for a float64 CPU cost of one problem that needs
        no gradient; None otherwise. The kernel is shared with :meth:`softmin` (built once per ``eps``)."""
        if type(self).softmin is not DenseCost.softmin:  # a subclass with its own soft-min: iterate through it
            return None
        return self._fast.loop(self.C, eps)

    def detach(self) -> "DenseCost":
        """The same geometry on a detached cost (itself when the cost needs no gradient)."""
        return DenseCost(self.C.detach(), symmetric=self._symmetric) if self.C.requires_grad else self

    def __repr__(self) -> str:
        return f"DenseCost(shape={tuple(self.C.shape)}, dtype={self.C.dtype})"


"""A geometry given by an explicit cost matrix."""

from __future__ import annotations

import torch

from .._validation import as_tensor, check_cost_matrix
from ..ops.logsumexp import dense_softmin
from .base import Geometry

__all__ = ["DenseCost"]


class DenseCost(Geometry):
    """A geometry given by a cost matrix ``C`` of shape ``(..., n, m)``.

    Args:
        C: finite costs, float32 or float64, any device; leading dimensions are batch dimensions.

    Example:
        >>> import torch
        >>> DenseCost(torch.zeros(3, 4)).shape
        (3, 4)
    """

    def __init__(self, C):
        C = as_tensor(C, "C")
        check_cost_matrix(C, "C")
        self.C = C

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
        return dense_softmin(self.C, h, eps, dim)

    def detach(self) -> "DenseCost":
        """The same geometry on a detached cost (itself when the cost needs no gradient)."""
        return DenseCost(self.C.detach()) if self.C.requires_grad else self

    def __repr__(self) -> str:
        return f"DenseCost(shape={tuple(self.C.shape)}, dtype={self.C.dtype})"

"""Shape helpers for hand-written backward passes."""

from __future__ import annotations

import torch

__all__ = ["sum_to_shape"]


def sum_to_shape(g: torch.Tensor, shape) -> torch.Tensor:
    """Reduce a gradient computed on a broadcast shape back to the input's ``shape``.

    Example:
        >>> import torch
        >>> sum_to_shape(torch.ones(3, 2, 4), (1, 4)).tolist()
        [[6.0, 6.0, 6.0, 6.0]]
    """
    while g.dim() > len(shape):
        g = g.sum(0)
    for k, s in enumerate(shape):
        if s == 1 and g.shape[k] != 1:
            g = g.sum(k, keepdim=True)
    return g

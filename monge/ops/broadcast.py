"""Shape helpers for hand-written backward passes."""

from __future__ import annotations

import torch

__all__ = ["broadcast_shapes", "sum_to_shape"]


def broadcast_shapes(*shapes) -> torch.Size:
    """The broadcast of ``shapes`` (``torch.broadcast_shapes`` without its first call's ~0.6 s import of sympy, which
    every monge entry point would otherwise pay once per process); ``RuntimeError`` where they do not broadcast.

    Example:
        >>> broadcast_shapes((3, 1), (1, 4), (4,))
        torch.Size([3, 4])
    """
    dims = [(s,) if isinstance(s, int) else tuple(s) for s in shapes]
    out = [1] * max((len(s) for s in dims), default=0)
    for s in dims:
        for i, d in enumerate(s, len(out) - len(s)):
            if d != 1 and out[i] != d:
                if out[i] != 1:
                    raise RuntimeError(f"Shape mismatch: objects cannot be broadcast to a single shape: {dims}")
                out[i] = int(d)
    return torch.Size(out)


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

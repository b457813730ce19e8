"""Running a compiled solver over a batch of independent problems, and the envelope-gradient value."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch

from ..._validation import check_int

__all__ = ["run_batched", "to_numpy64", "EnvelopeValue", "centred", "needs_grad", "to_tensor"]


def run_batched(fn: Callable, args: Sequence[tuple], n_threads: int | None = None) -> list:
    """``[fn(*a) for a in args]``, in parallel threads (the compiled solvers release the GIL)."""
    check_int(n_threads, "n_threads", allow_none=True)
    if len(args) <= 1 or n_threads == 1:  # inline: no pool to start (and no cpu_count() to ask)
        return [fn(*a) for a in args]
    if n_threads is None:
        n_threads = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=min(n_threads, len(args))) as pool:
        return list(pool.map(lambda a: fn(*a), args))


def to_numpy64(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous float64 CPU numpy view (zero-copy when ``t`` already is one)."""
    if t.dtype == torch.float64 and t.device.type == "cpu" and t.is_contiguous():
        return t.detach().numpy()
    return np.ascontiguousarray(t.detach().to(device="cpu", dtype=torch.float64).numpy())


def to_tensor(x: np.ndarray, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A numpy array as a tensor on ``like``'s device, in ``dtype`` (default: ``like``'s); zero-copy when it can."""
    t = torch.from_numpy(x)
    dtype = dtype or like.dtype
    return t if t.dtype == dtype and like.device.type == "cpu" else t.to(device=like.device, dtype=dtype)


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on ``tensors`` (skip :class:`EnvelopeValue` otherwise: its
    ``apply`` costs tens of microseconds, a good part of a small solve)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def centred(f: torch.Tensor) -> torch.Tensor:
    """``f - mean(f)``: the component of a potential tangent to the simplex (gradient w.r.t. weights)."""
    return f - f.mean(-1, keepdim=True)


class EnvelopeValue(torch.autograd.Function):
    r"""The optimal value of an LP whose solution is already known, with envelope-theorem gradients.

    ``forward(C, a, b, rows, cols, vals, f, g, value)`` returns ``value``; the backward pass gives
    :math:`\partial/\partial C = P` (scattered from the sparse plan), :math:`\partial/\partial a = f - \bar f`
    and :math:`\partial/\partial b = g - \bar g` (directions that keep the total mass fixed).
    Shapes: ``C (B, n, m)``, ``a (B, n)``, ``b (B, m)``, triplets ``(B, K)``, ``value (B,)``.
    """

    @staticmethod
    def forward(ctx, C, a, b, rows, cols, vals, f, g, value):
        ctx.save_for_backward(rows, cols, vals, f, g)
        ctx.nm = C.shape[-2:]
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        rows, cols, vals, f, g = ctx.saved_tensors
        n, m = ctx.nm
        gC = ga = gb = None
        if ctx.needs_input_grad[0]:
            flat = vals.new_zeros((vals.shape[0], n * m))
            flat.scatter_add_(-1, rows * m + cols, vals * grad[:, None])
            gC = flat.reshape(-1, n, m)
        if ctx.needs_input_grad[1]:
            ga = grad[:, None] * centred(f)
        if ctx.needs_input_grad[2]:
            gb = grad[:, None] * centred(g)
        return gC, ga, gb, None, None, None, None, None, None

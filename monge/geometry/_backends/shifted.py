r"""The shifted-product scheme with an exact fallback, shared by every scaling-domain fast path (dense Gibbs
kernels, grid axes).

.. math::
    \mathrm{lse}_K(h)_i = \varepsilon \log \sum_j K_{ij}\, e^{h_j/\varepsilon}
        = M + \varepsilon \log \sum_j K_{ij}\, e^{(h_j - M)/\varepsilon}, \qquad M = \max_j h_j,
        \quad K = e^{-(C - \min C)/\varepsilon}

Every term is a product of two numbers in ``[0, 1]``, so a sum ``s`` of ``n`` terms carries a relative error of
about ``n`` ulp unless terms were flushed to zero: entries with ``s < n * tiny / ulp`` (or a non-finite ``s``) are
*unreliable* and recomputed, first (float32 inputs) by the same product in float64 (range ``e^-708`` instead of
``e^-87``), then, for what still fails, by the exact log-sum-exp. The result is the log-domain soft-min up to
rounding for any ``eps`` and any cost offset.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["unreliable", "underflowed", "adapts", "shifted_product", "certified"]


def unreliable(s: torch.Tensor, n: int) -> torch.Tensor:
    """Where a sum ``s`` of ``n`` terms, each a product of numbers in [0, 1], may be wrong: underflow
    (``s < n * tiny / ulp``: flushed terms may matter) or overflow / NaN (a non-finite sum).

    Example:
        >>> import torch
        >>> unreliable(torch.tensor([1.0, 1e-40, float("inf")]), 4).tolist()
        [False, True, True]
    """
    finfo = torch.finfo(s.dtype)
    s = s.detach()
    return ~(s >= n * finfo.tiny / finfo.eps) | ~torch.isfinite(s)


underflowed = unreliable  # the historical name of the certificate (it now also catches overflow)


def adapts(h: torch.Tensor) -> bool:
    """Whether a soft-min call may update the private switches that pick its fast path (underflow counters, the
    float64 switch): not while recording for autograd. A checkpointed (unrolled) loop recomputes its forward in the
    backward pass and must take the same path then, so recorded calls read the switches and never move them."""
    return not (torch.is_grad_enabled() and h.requires_grad)


def shifted_product(h: torch.Tensor, contract: Callable, eps: float, dims, n: int, mask: bool = True):
    r"""``(lse, bad)``: :math:`M + \varepsilon \log \mathrm{contract}(e^{(h - M)/\varepsilon})` with ``M`` the max of
    ``h`` over ``dims`` (detached: the value does not depend on it), ``-inf`` where the sum is 0.

    ``contract`` applies the kernel (entries in [0, 1]) to the shifted exponentials, summing ``n`` terms per
    output. ``bad`` marks the unreliable outputs whose shift was finite (a ``-inf`` line stays ``-inf``); with
    ``mask=False`` it is one boolean (any output unreliable), one reduction instead of a mask.
    """
    M = h.detach().amax(dim=dims, keepdim=True)
    finite = torch.isfinite(M)
    M = torch.where(finite, M, torch.zeros_like(M))
    s = contract(torch.sub(h, M).mul_(1.0 / eps).exp_())
    if not mask:
        return torch.log(s).mul_(eps).add_(M), unreliable(s.detach().amin(), n)
    pos = s > 0
    lse = torch.where(pos, M + eps * torch.log(torch.where(pos, s, torch.ones_like(s))), torch.full_like(s, -torch.inf))
    return lse, unreliable(s, n) & finite


def certified(h: torch.Tensor, product: Callable, exact: Callable, redo64: Callable | None = None,
              state: dict | None = None, widen: Callable | None = None) -> torch.Tensor:
    """Run the fast ``product(h) -> (out, bad)``; for float32 with ``redo64`` given, redo the unreliable entries in
    float64 (``redo64(out, bad) -> (out, bad)``; ``redo64(None, None)`` redoes everything); then ``exact(out, bad)``
    for whatever is still unreliable.

    ``state["wide"]`` (a private switch) skips the float32 product from the call on which ``widen(bad)`` said the
    underflow is systematic; only calls that :func:`adapts` allows move it.
    """
    if redo64 is not None and state is not None and state.get("wide"):
        out, bad = redo64(None, None)
    else:
        out, bad = product(h)
        if redo64 is not None and bool(bad.any()):
            if state is not None and adapts(h) and (widen is None or widen(bad)):
                state["wide"] = True
            out, bad = redo64(out, bad)
    if bad is not None and bool(bad.any()):
        out = exact(out, bad)
    if state is not None and "bad_fraction" in state:  # tracked by callers that refuse a costly fast path
        state["bad_fraction"] = float(bad.sum()) / max(1, bad.numel()) if bad is not None else 0.0
    return out

r"""Log-domain reductions against a materialised cost matrix."""

from __future__ import annotations

import math

import torch

from .broadcast import broadcast_shapes

try:  # compiled streaming kernel (forward only); absent in a pure-Python install
    from .._core import softmin_dense as _softmin_dense_core
except ImportError:  # pragma: no cover - depends on the build
    _softmin_dense_core = None

__all__ = ["dense_softmin", "log_weights"]


def log_weights(a: torch.Tensor) -> torch.Tensor:
    """``log a`` with ``log 0 = -inf`` (zero weights drop out of every log-sum-exp), no warnings, no NaN."""
    return torch.where(a > 0, a.clamp_min(torch.finfo(a.dtype).tiny).log(), torch.full_like(a, -float("inf")))


def dense_softmin(C: torch.Tensor, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
    r"""``-eps log sum exp((h - C) / eps)`` over the target (``dim=1``) or source (``dim=0``) index of ``C (..., n, m)``.

    Example:
        >>> import torch
        >>> C = torch.tensor([[0.0, 1.0]])
        >>> dense_softmin(C, torch.tensor([0.0, 3.0]), 1e-3, dim=1)  # ~ min_j C_ij - h_j = 1 - 3
        tensor([-2.])
    """
    if dim not in (0, 1):
        raise ValueError(f"dim: expected 0 (reduce over sources) or 1 (reduce over targets), got {dim!r}")
    if (
        _softmin_dense_core is not None
        and C.device.type == "cpu"
        and h.device.type == "cpu"
        # float64 only: the kernel also takes float32 (``monge._core.softmin_dense``), but float32 Sinkhorn at
        # tiny eps sits at a rounding-noise floor whose trajectory flips with any change of rounding
        # (tests/test_sinkhorn.py::test_small_eps_is_finite[float32] then stalls at 3e-5 > tol 1e-5)
        and C.dtype == torch.float64
        and h.dtype == C.dtype
        and C.dim() >= 2
        and isinstance(eps, (int, float))
        and (not torch.is_grad_enabled() or not (C.requires_grad or h.requires_grad))
    ):
        return _dense_softmin_core(C, h, float(eps), dim)
    if dim == 1:
        z = (h.unsqueeze(-2) - C) / eps
        return -eps * torch.logsumexp(z, dim=-1)
    if dim == 0:
        z = (h.unsqueeze(-1) - C) / eps
        return -eps * torch.logsumexp(z, dim=-2)
    raise ValueError(f"dim: expected 0 (reduce over sources) or 1 (reduce over targets), got {dim!r}")


def _dense_softmin_core(C: torch.Tensor, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
    """Forward-only path through the compiled kernel: one streaming pass over ``C`` (batch dims flattened)."""
    n, m = C.shape[-2], C.shape[-1]
    batch = broadcast_shapes(C.shape[:-2], h.shape[:-1])
    B, k = math.prod(batch), (m if dim == 1 else n)
    hb = h.expand(*batch, k).reshape(B, k).contiguous().detach()
    if C.dim() == 2 and B > 1 and C.numel() >= 1 << 20:  # one large cost, a batch of potentials: a pass per row
        # instead of B copies of C (small costs: one call over the copied batch is cheaper than B calls)
        C1 = C.detach().contiguous().reshape(1, n, m)
        out = torch.cat([torch.from_numpy(_softmin_dense_core(C1, hb[i:i + 1], eps, dim)) for i in range(B)])
    else:
        Cb = C.expand(*batch, n, m).reshape(B, n, m).contiguous()
        out = torch.from_numpy(_softmin_dense_core(Cb.detach(), hb, eps, dim))
    return out.reshape(*batch, n if dim == 1 else m)

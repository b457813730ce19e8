r"""Log-domain reductions against a materialised cost matrix."""

from __future__ import annotations

import torch

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
    if dim == 1:
        z = (h.unsqueeze(-2) - C) / eps
        return -eps * torch.logsumexp(z, dim=-1)
    if dim == 0:
        z = (h.unsqueeze(-1) - C) / eps
        return -eps * torch.logsumexp(z, dim=-2)
    raise ValueError(f"dim: expected 0 (reduce over sources) or 1 (reduce over targets), got {dim!r}")

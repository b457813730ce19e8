r"""Lazy soft-min between point clouds: cost tiles recomputed on the fly, O(n + m) memory forward and backward.

For the squared Euclidean cost on the CPU, the compiled kernel of ``csrc/softmin.cpp`` streams the
log-sum-exp (vectorised exp, threads; ~40x faster than KeOps here); elsewhere a custom autograd function
recomputes torch tiles in the backward pass (the gradients are plan-weighted averages of the points). Any other
cost goes through checkpointed row chunks. The kernel path has first derivatives only: for second derivatives
use ``backend="dense"``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from ..costs import Cost, SqEuclidean
from ...ops.broadcast import sum_to_shape

try:  # the compiled CPU kernel (csrc/softmin.cpp): streaming log-sum-exp, vectorised exp, threads
    from ..._core import softmin_sqeuclid as _k_fwd
    from ..._core import softmin_sqeuclid_backward as _k_bwd
except ImportError:  # pragma: no cover - a build without the kernel falls back to chunked torch
    _k_fwd = _k_bwd = None

__all__ = ["lazy_softmin", "default_chunk", "kernel_available"]


def kernel_available(x: torch.Tensor) -> bool:
    """Whether the compiled CPU soft-min kernel applies to points like ``x``."""
    return _k_fwd is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)

_TILE_ELEMENTS = 1 << 22  # ~4M entries per tile: 16 MB in float32, big enough for BLAS, small for memory


def default_chunk(m: int, batch: int = 1) -> int:
    """Rows per tile so that a tile holds about ``_TILE_ELEMENTS`` entries."""
    return max(1, min(8192, _TILE_ELEMENTS // max(1, m * batch)))


def _sq_tile(xc, y, y2):
    """Squared distances between a row chunk ``xc (..., r, d)`` and ``y (..., m, d)`` (``y2 = |y|^2``)."""
    return ((xc * xc).sum(-1, keepdim=True) + y2.unsqueeze(-2) - 2.0 * xc @ y.transpose(-1, -2)).clamp_min_(0.0)


class _SqEuclidSoftmin(torch.autograd.Function):
    """out_i = -eps log sum_j exp((h_j - |x_i - y_j|^2) / eps), tiles over i, recomputed in backward."""

    @staticmethod
    def forward(ctx, x, y, h, eps, chunk):
        y2 = (y * y).sum(-1)
        n = x.shape[-2]
        batch = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2], h.shape[:-1])
        out = x.new_empty((*batch, n))
        for i0 in range(0, n, chunk):
            C = _sq_tile(x[..., i0 : i0 + chunk, :], y, y2)
            out[..., i0 : i0 + chunk] = -eps * torch.logsumexp((h.unsqueeze(-2) - C) / eps, dim=-1)
        ctx.save_for_backward(x, y, h, out)
        ctx.eps, ctx.chunk = eps, chunk
        return out

    @staticmethod
    def backward(ctx, u):
        x, y, h, out = ctx.saved_tensors
        eps, chunk = ctx.eps, ctx.chunk
        y2 = (y * y).sum(-1)
        gx, gy_lin, gy_w, gh = torch.zeros_like(x.expand(*out.shape, x.shape[-1])), 0.0, 0.0, 0.0
        for i0 in range(0, x.shape[-2], chunk):
            sl = slice(i0, i0 + chunk)
            xc = x[..., sl, :]
            C = _sq_tile(xc, y, y2)
            p = torch.exp((h.unsqueeze(-2) - C + out[..., sl].unsqueeze(-1)) / eps)  # row-softmax weights
            up = u[..., sl].unsqueeze(-1) * p  # (..., r, m)
            gx[..., sl, :] = 2.0 * (u[..., sl].unsqueeze(-1) * xc - up @ y)
            col = up.sum(-2)  # (..., m)
            gh = gh - col
            gy_lin = gy_lin + up.transpose(-1, -2) @ xc  # sum_i u_i p_ij x_i
            gy_w = gy_w + col
        gy = 2.0 * (gy_w.unsqueeze(-1) * y - gy_lin)
        return sum_to_shape(gx, x.shape), sum_to_shape(gy, y.shape), sum_to_shape(gh, h.shape), None, None


class _SqEuclidSoftminKernel(torch.autograd.Function):
    """The same reduction through the compiled kernel; inputs flattened to (B, n, d), (B, m, d), (B, m)."""

    @staticmethod
    def forward(ctx, x, y, h, eps):
        # spawning threads costs ~250 us per call: below ~2M pairs one thread is faster (83 vs 337 us at 400^2)
        nt = 1 if x.shape[0] * x.shape[1] * y.shape[1] < (1 << 21) else torch.get_num_threads()
        out = torch.from_numpy(_k_fwd(x.detach().numpy(), y.detach().numpy(), h.detach().numpy(), eps, nt))
        ctx.save_for_backward(x, y, h, out)
        ctx.eps, ctx.nt = eps, nt
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, u):
        x, y, h, out = ctx.saved_tensors
        gx, gy, gh = _k_bwd(x.detach().numpy(), y.detach().numpy(), h.detach().numpy(), out.numpy(),
                            u.contiguous().numpy(), ctx.eps, ctx.nt)
        return torch.from_numpy(gx), torch.from_numpy(gy), torch.from_numpy(gh), None


def _kernel_softmin(x, y, h, eps):
    batch = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2], h.shape[:-1])
    n, m, d = x.shape[-2], y.shape[-2], x.shape[-1]
    xb = x.expand(*batch, n, d).reshape(-1, n, d).contiguous()
    yb = y.expand(*batch, m, d).reshape(-1, m, d).contiguous()
    hb = h.to(x.dtype).expand(*batch, m).reshape(-1, m).contiguous()
    return _SqEuclidSoftminKernel.apply(xb, yb, hb, float(eps)).reshape(*batch, n)


def _generic_rows(x, y, h, eps, cost_fn, i0, chunk):
    C = cost_fn(x[..., i0 : i0 + chunk, :], y)
    return -eps * torch.logsumexp((h.unsqueeze(-2) - C) / eps, dim=-1)


def _generic_softmin(x, y, h, eps, cost_fn, chunk):
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, h))
    parts = []
    for i0 in range(0, x.shape[-2], chunk):
        if needs_grad:
            parts.append(checkpoint(_generic_rows, x, y, h, eps, cost_fn, i0, chunk, use_reentrant=False))
        else:
            parts.append(_generic_rows(x, y, h, eps, cost_fn, i0, chunk))
    return torch.cat(parts, -1)


def lazy_softmin(x, y, h, eps: float, dim: int, cost_fn: Cost, chunk: int | None = None) -> torch.Tensor:
    r"""``-eps log sum exp((h - C)/eps)`` with ``C = cost(x, y)`` never stored whole.

    ``dim=1`` reduces over ``y`` (``h: (..., m)`` -> ``(..., n)``), ``dim=0`` over ``x``.

    Example:
        >>> import torch
        >>> x, y = torch.rand(50, 2, dtype=torch.float64), torch.rand(40, 2, dtype=torch.float64)
        >>> from monge.geometry.costs import SqEuclidean
        >>> lazy = lazy_softmin(x, y, torch.zeros(40, dtype=torch.float64), 0.1, 1, SqEuclidean(), chunk=7)
        >>> dense = -0.1 * torch.logsumexp(-SqEuclidean()(x, y) / 0.1, -1)
        >>> bool(torch.allclose(lazy, dense))
        True
    """
    if dim == 0:
        if isinstance(cost_fn, SqEuclidean) or getattr(cost_fn, "symmetric", False):
            x, y = y, x
        else:
            return lazy_softmin(y, x, h, eps, 1, _Transposed(cost_fn), chunk)
    elif dim != 1:
        raise ValueError(f"dim: expected 0 or 1, got {dim!r}")
    if isinstance(cost_fn, SqEuclidean) and kernel_available(x):
        return _kernel_softmin(x, y, h, float(eps))
    chunk = chunk or default_chunk(y.shape[-2], h.shape[:-1].numel())
    if isinstance(cost_fn, SqEuclidean):
        return _SqEuclidSoftmin.apply(x, y, h, float(eps), chunk)
    return _generic_softmin(x, y, h, eps, cost_fn, chunk)


class _Transposed(Cost):
    """``c'(u, v) = c(v, u)^T`` for costs that are not symmetric."""

    def __init__(self, cost_fn):
        self.cost_fn = cost_fn

    def __call__(self, u, v):
        return self.cost_fn(v, u).transpose(-1, -2)

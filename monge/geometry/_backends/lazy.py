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
from ...ops.broadcast import broadcast_shapes, sum_to_shape

try:  # the compiled CPU kernel (csrc/softmin.cpp): streaming log-sum-exp, vectorised exp, threads
    from ..._core import softmin_sqeuclid as _k_fwd
    from ..._core import softmin_sqeuclid_backward as _k_bwd
except ImportError:  # pragma: no cover - a build without the kernel falls back to chunked torch
    _k_fwd = _k_bwd = None

__all__ = [
    "lazy_softmin", "LazySoftmin", "plan_cost_tiles", "barycentric_map_tiles", "default_chunk", "kernel_available",
]


def kernel_available(x: torch.Tensor) -> bool:
    """Whether the compiled CPU soft-min kernel applies to points like ``x``.

    Example:
        >>> import torch
        >>> kernel_available(torch.zeros(2, 2, dtype=torch.float16))
        False
    """
    return _k_fwd is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)

_TILE_ELEMENTS = 1 << 22  # ~4M entries per tile: 16 MB in float32, big enough for BLAS, small for memory
_MAP_TILE = 1 << 18  # entries per tile of the barycentric map: 2 MB in float64, cache-resident for its 3 passes


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
        batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], h.shape[:-1])
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
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], h.shape[:-1])
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


def _sq_scale(cost_fn) -> float | None:
    """The factor ``s`` of a squared Euclidean cost ``s |x - y|^2`` (``None`` for any other cost)."""
    return cost_fn.scale if isinstance(cost_fn, SqEuclidean) else None


def lazy_softmin(x, y, h, eps: float, dim: int, cost_fn: Cost, chunk: int | None = None) -> torch.Tensor:
    r"""``-eps log sum exp((h - C)/eps)`` with ``C = cost(x, y)`` never stored whole (the reduction is picked on
    every call; a :class:`LazySoftmin` picks it once).

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
    return LazySoftmin(cost_fn, x, chunk)(x, y, h, eps, dim)


class LazySoftmin:
    """The lazy soft-min of one cost, its reduction chosen once (at construction) from the cost and the points'
    device and dtype: the compiled CPU kernel (squared Euclidean, float32/float64 on the CPU), torch tiles with a
    recomputing backward (squared Euclidean elsewhere), or checkpointed row chunks (any other cost). A squared
    Euclidean cost ``s |x - y|^2`` runs the unit cost at ``eps / s``: ``softmin_{eps}(h) = s softmin_{eps/s}(h / s)``.

    Example:
        >>> import torch
        >>> from monge.geometry.costs import SqEuclidean
        >>> x = torch.rand(6, 2, dtype=torch.float64)
        >>> red = LazySoftmin(SqEuclidean(scale=0.5), x, chunk=4)
        >>> h = torch.zeros(6, dtype=torch.float64)
        >>> dense = -0.1 * torch.logsumexp(-0.5 * SqEuclidean()(x, x) / 0.1, -1)
        >>> bool(torch.allclose(red(x, x, h, 0.1, 1), dense))
        True
    """

    def __init__(self, cost_fn: Cost, like: torch.Tensor, chunk: int | None = None):
        self.cost_fn, self.chunk = cost_fn, chunk
        self.scale = _sq_scale(cost_fn)
        if self.scale is None:
            self.kind = "generic"
        else:
            self.kind = "kernel" if kernel_available(like) else "tiles"

    def __call__(self, x, y, h, eps: float, dim: int) -> torch.Tensor:
        return self.softmin(x, y, h, eps, dim)

    def softmin(self, x, y, h, eps: float, dim: int) -> torch.Tensor:
        """``-eps log sum exp((h - C)/eps)`` over ``y`` (``dim=1``) or ``x`` (``dim=0``)."""
        if dim == 0:
            if self.scale is not None or getattr(self.cost_fn, "symmetric", False):
                x, y = y, x
            else:
                chunk = self.chunk or default_chunk(x.shape[-2], h.shape[:-1].numel())
                return _generic_softmin(y, x, h, eps, _Transposed(self.cost_fn), chunk)
        elif dim != 1:
            raise ValueError(f"dim: expected 0 or 1, got {dim!r}")
        if self.kind == "generic":
            chunk = self.chunk or default_chunk(y.shape[-2], h.shape[:-1].numel())
            return _generic_softmin(x, y, h, eps, self.cost_fn, chunk)
        s = self.scale
        if s != 1.0:
            return s * self._unit(x, y, h / s, float(eps) / s)
        return self._unit(x, y, h, float(eps))

    def _unit(self, x, y, h, eps: float) -> torch.Tensor:
        if self.kind == "kernel":
            return _kernel_softmin(x, y, h, eps)
        chunk = self.chunk or default_chunk(y.shape[-2], h.shape[:-1].numel())
        return _SqEuclidSoftmin.apply(x, y, h, eps, chunk)


class _Transposed(Cost):
    """``c'(u, v) = c(v, u)^T`` for costs that are not symmetric."""

    def __init__(self, cost_fn):
        self.cost_fn = cost_fn

    def __call__(self, u, v):
        return self.cost_fn(v, u).transpose(-1, -2)


def _tiles(fn, n: int, chunk: int, grad: bool):
    """``[fn(i0) for each row tile]``, checkpointed (recomputed in backward, O(chunk * m) memory) when ``grad``."""
    return [checkpoint(fn, i0, use_reentrant=False) if grad else fn(i0) for i0 in range(0, n, chunk)]


def plan_cost_tiles(x, y, u, v, eps: float, cost_fn: Cost, chunk: int | None = None) -> torch.Tensor:
    r""":math:`\sum_{ij} e^{(u_i + v_j - C_{ij})/\varepsilon} C_{ij}` with ``C = cost(x, y)`` by row tiles: O(chunk m)
    memory, also in the backward pass. ``u (..., n)``, ``v (..., m)`` broadcast with the points' batch dimensions.

    Example:
        >>> import torch
        >>> from monge.geometry.costs import SqEuclidean
        >>> x, y = torch.rand(7, 2, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
        >>> u, v = torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
        >>> C = SqEuclidean()(x, y)
        >>> dense = (torch.exp((u[..., :, None] + v[..., None, :] - C) / 0.1) * C).sum((-1, -2))
        >>> bool(torch.allclose(plan_cost_tiles(x, y, u, v, 0.1, SqEuclidean(), chunk=2), dense))
        True
    """
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], u.shape[:-1], v.shape[:-1])
    chunk = chunk or default_chunk(y.shape[-2], max(1, batch.numel()))

    def rows(i0):
        C = cost_fn(x[..., i0:i0 + chunk, :], y)
        return (torch.exp((u[..., i0:i0 + chunk].unsqueeze(-1) + v.unsqueeze(-2) - C) / eps) * C).sum((-1, -2))

    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, u, v))
    return sum(_tiles(rows, x.shape[-2], chunk, grad)).expand(batch)


def barycentric_map_tiles(xq, y, v, eps: float, cost_fn: Cost, chunk: int | None = None) -> torch.Tensor:
    r"""``T(x) = softmax_j((v_j - c(x, y_j)) / eps) @ y`` for the query points ``xq (..., k, d)`` by tiles of queries:
    O(chunk m) memory, never a ``(k, m)`` matrix. A squared Euclidean cost ``s |x - y|^2`` drops the row constant
    ``s |x|^2`` (points centred on the mean of ``y`` first): one matrix product per tile.

    Example:
        >>> import torch
        >>> from monge.geometry.costs import SqEuclidean
        >>> xq, y = torch.rand(9, 2, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
        >>> v = torch.randn(5, dtype=torch.float64)
        >>> dense = torch.softmax((v - SqEuclidean()(xq, y)) / 0.1, -1) @ y
        >>> bool(torch.allclose(barycentric_map_tiles(xq, y, v, 0.1, SqEuclidean(), chunk=4), dense))
        True
    """
    batch = broadcast_shapes(xq.shape[:-2], y.shape[:-2], v.shape[:-1])
    chunk = chunk or max(1, _MAP_TILE // max(1, y.shape[-2] * batch.numel()))
    s = _sq_scale(cost_fn)
    centre = y.detach().mean(-2, keepdim=True)  # T(x) - centre is a convex combination of y - centre
    yc = y - centre
    if s is not None:
        xq = xq - centre
        w = ((v - s * (yc * yc).sum(-1)) / eps).unsqueeze(-2)  # (..., 1, m)
        yt = ((2.0 * s / eps) * yc).transpose(-1, -2)  # (..., d, m)

        def logits(i0):  # (v_j - s |x - y_j|^2) / eps up to a row constant, by one matrix product
            return xq[..., i0:i0 + chunk, :] @ yt + w
    else:
        def logits(i0):
            return (v.unsqueeze(-2) - cost_fn(xq[..., i0:i0 + chunk, :], y)) / eps

    Y1 = torch.cat([yc, torch.ones_like(yc[..., :1])], -1)  # (..., m, d + 1): numerators and the normaliser at once

    def rows(i0):
        L = logits(i0)
        if L.requires_grad:
            return torch.softmax(L, dim=-1) @ yc
        L = L.sub_(L.amax(-1, keepdim=True)).exp_()  # in place, on a tile that fits in cache
        out = L @ Y1
        return out[..., :-1] / out[..., -1:]

    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (xq, y, v))
    if xq.shape[-2] == 0:
        return y.new_zeros((*batch, 0, y.shape[-1]))
    return torch.cat(_tiles(rows, xq.shape[-2], chunk, grad), -2) + centre

r"""Fused Triton soft-min between point clouds: the lazy reduction of CUDA tensors, attention-style.

.. math::

    \mathrm{out}_i = -\varepsilon \log \sum_j \exp\big((h_j - c(x_i, y_j))/\varepsilon\big)

Cost tiles never leave registers: the squared Euclidean cost through tiled dot products
(:math:`\|x\|^2 + \|y\|^2 - 2\langle x, y\rangle`, points centred first against cancellation), ``|x - y|^p``
from the same squared distances, the cosine cost from normalised points; an online log-sum-exp (running max,
float64 running sum) per row. Memory O(n + m), forward and backward: the backward pass recomputes the tiles
in two kernels (rows: the gradient in ``x``; columns: the gradients in ``y`` and ``h``), with
:math:`\partial\,\mathrm{out}_i/\partial h_j = -P_{ij}` and
:math:`\partial\,\mathrm{out}_i/\partial x_i = \sum_j P_{ij} \nabla_x c(x_i, y_j)`, :math:`P` the row-softmax
weights. First derivatives only (the envelope and implicit gradients); for double backward use ``"lazy"`` or
``"dense"``.

float32 inputs, float32 products (``tl.dot`` with IEEE precision: no TF32 unless ``precision="tf32"``), a
float64 running sum. Batched ``(B, n, d)`` with broadcasting; ragged batches through ``-inf`` entries of ``h``
(zero weights). triton is optional: this module imports without it, and loads the kernels on first use (under
``TRITON_INTERPRET=1`` they run on CPU tensors through Triton's interpreter, which is how CI tests them).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch
from torch.autograd.function import once_differentiable

from ...ops.broadcast import broadcast_shapes, sum_to_shape
from ..costs import Cosine, Cost, Euclidean, SqEuclidean

__all__ = ["triton_available", "triton_usable", "TritonSoftmin", "triton_softmin"]

_COSTS = {SqEuclidean: 0, Euclidean: 1, Cosine: 2}
_MAX_DIM = 256  # a (BM, d) accumulator per program: beyond this the lazy torch path is the better choice


def triton_available() -> bool:
    """Whether triton can be imported (it is never required by monge; ``pip install monge[triton]``).

    Example:
        >>> isinstance(triton_available(), bool)
        True
    """
    return importlib.util.find_spec("triton") is not None


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_usable(cost_fn: Cost, like: torch.Tensor) -> str | None:
    """``None`` when the fused kernels apply to the cost and to points like ``like``, else why not.

    They need triton, a :class:`SqEuclidean`, :class:`Euclidean` or :class:`Cosine` cost, float32 points of
    dimension at most 256, and a CUDA tensor (a CPU tensor only under ``TRITON_INTERPRET=1``).

    Example:
        >>> import torch
        >>> triton_usable(SqEuclidean(), torch.zeros(3, 2, dtype=torch.float64)) is not None
        True
    """
    if type(cost_fn) not in _COSTS:
        return f"the cost {cost_fn!r} has no fused kernel (sqeuclidean, euclidean and cosine have)"
    if like.dtype != torch.float32:
        return f"the points are {like.dtype}; the fused kernels take float32"
    if like.shape[-1] > _MAX_DIM:
        return f"the dimension d = {like.shape[-1]} is above {_MAX_DIM}"
    if like.device.type != "cuda" and not (like.device.type == "cpu" and _interpreted()):
        return (f"the points are on {like.device}; the fused kernels run on CUDA tensors (CPU tensors only "
                f"through Triton's interpreter, TRITON_INTERPRET=1)")
    if not triton_available():
        return "triton is not installed (pip install 'monge[triton]')"
    if like.device.type == "cpu" and not _interpreter_ready():
        return ("triton was imported before TRITON_INTERPRET=1 was set, so its interpreter is off in this "
                "process: set the variable before Python starts (TRITON_INTERPRET=1 python ...)")
    return None


def _kernels():
    from . import _triton_kernels  # the first import decorates the kernels

    return _triton_kernels


def _interpreter_ready() -> bool:
    """Whether triton (and the kernels), if already imported, were imported in interpreter mode: the mode is
    fixed when a function is decorated, the ``tl`` library's included."""
    mods = sys.modules.get("triton.language"), sys.modules.get(__name__.rsplit(".", 1)[0] + "._triton_kernels")
    return ((mods[0] is None or type(mods[0].sum).__name__ == "InterpretedFunction")
            and (mods[1] is None or mods[1].INTERPRETED))


def _pow2(k: int, lo: int) -> int:
    return max(lo, 1 << max(0, k - 1).bit_length())


def _flat(t: torch.Tensor, batch, tail: int):
    """``t (..., *tail)`` as a contiguous ``(B or 1, *tail)`` block and its batch stride (0 when shared)."""
    shape = t.shape[t.dim() - tail:]
    if t.shape[: t.dim() - tail].numel() == 1:
        return t.reshape(1, *shape).contiguous(), 0
    flat = t.expand(*batch, *shape).reshape(-1, *shape).contiguous()
    return flat, shape.numel()


class _Launch:
    """Scalars and block sizes of one reduction."""

    def __init__(self, cost_fn: Cost, d: int, eps: float, precision: str, interpreted: bool):
        self.cost = _COSTS[type(cost_fn)]
        self.scale = float(getattr(cost_fn, "scale", 1.0)) if self.cost == 0 else 1.0
        self.p = float(cost_fn.p) if self.cost == 1 else 2.0
        self.eps, self.inv_eps, self.prec = float(eps), 1.0 / float(eps), precision
        self.bd = _pow2(d, 16)
        block = 32 if interpreted else (64 if self.bd <= 64 else (32 if self.bd <= 128 else 16))
        self.bm = self.bn = block
        self.warps = 4

    def meta(self):
        return dict(COST=self.cost, PREC=self.prec, BM=self.bm, BN=self.bn, BD=self.bd, num_warps=self.warps)


class _Fused(torch.autograd.Function):
    """The fused soft-min on flat blocks ``x (Bx, n, d)``, ``y (By, m, d)``, ``h (Bh, m)``; ``B`` results."""

    @staticmethod
    def forward(ctx, x, y, h, strides, B, launch):
        n, m, d = x.shape[1], y.shape[1], x.shape[2]
        out = x.new_empty((B, n))
        if n and B:
            _kernels().softmin_fwd[(-(-n // launch.bm), B)](
                x, y, h, out, n, m, d, *strides, launch.scale, launch.p, launch.inv_eps, launch.eps,
                **launch.meta())
        ctx.save_for_backward(x, y, h, out)
        ctx.strides, ctx.launch = strides, launch
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, u):
        x, y, h, out = ctx.saved_tensors
        L, (B, n), (m, d) = ctx.launch, out.shape, y.shape[1:]
        u = u.contiguous()
        args = (out, u)
        gx = gy = gh = None
        k = _kernels()
        scalars = (n, m, d, *ctx.strides, L.scale, L.p, L.inv_eps)
        if ctx.needs_input_grad[0] and n and B:
            gx = x.new_zeros((B, n, d))
            k.softmin_bwd_rows[(-(-n // L.bm), B)](x, y, h, *args, gx, *scalars, **L.meta())
        if (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]) and m and B:
            gy, gh = x.new_zeros((B, m, d)), x.new_zeros((B, m))
            k.softmin_bwd_cols[(-(-m // L.bn), B)](x, y, h, *args, gy, gh, *scalars, **L.meta())
        gx = None if gx is None else sum_to_shape(gx, x.shape)
        gy = None if gy is None or not ctx.needs_input_grad[1] else sum_to_shape(gy, y.shape)
        gh = None if gh is None or not ctx.needs_input_grad[2] else sum_to_shape(gh, h.shape)
        return gx, gy, gh, None, None, None


def _prepare(cost_fn: Cost, x, y):
    """Points as the kernels take them: centred (distance costs; a detached common centre changes no cost nor
    gradient) or normalised (cosine; differentiable, so autograd carries the gradient back to ``x``, ``y``)."""
    if isinstance(cost_fn, Cosine):
        tiny = torch.finfo(x.dtype).tiny
        return x / x.norm(dim=-1, keepdim=True).clamp_min(tiny), y / y.norm(dim=-1, keepdim=True).clamp_min(tiny)
    d = x.shape[-1]
    if x.shape[:-2] == y.shape[:-2]:  # one centre per problem
        centre = 0.5 * (x.detach().mean(-2, keepdim=True) + y.detach().mean(-2, keepdim=True))
    else:  # one centre for all (a per-problem centre would copy the shared cloud per problem)
        centre = 0.5 * (x.detach().reshape(-1, d).mean(0) + y.detach().reshape(-1, d).mean(0))
    if x.shape[-2] == 0 or y.shape[-2] == 0:
        return x, y
    return x - centre, y - centre


def triton_softmin(x, y, h, eps: float, cost_fn: Cost, precision: str = "ieee") -> torch.Tensor:
    r"""``out_i = -eps log sum_j exp((h_j - c(x_i, y_j)) / eps)`` over ``y`` by the fused kernels.

    Args:
        x: ``(..., n, d)``, y: ``(..., m, d)``, h: ``(..., m)`` (``-inf``: a point of zero weight), float32,
            on a CUDA device (or the CPU under ``TRITON_INTERPRET=1``); batch dimensions broadcast.
        eps: the entropic regularisation (cost units). cost_fn: :class:`SqEuclidean`, :class:`Euclidean` or
            :class:`Cosine`. precision: ``"ieee"`` (float32 products) or ``"tf32"`` (faster, ~1e-3 relative
            error in the dot products).

    Returns:
        ``(..., n)``; ``+inf`` for a row whose every ``h_j`` is ``-inf``. Differentiable (first order) in
        ``x``, ``y`` and ``h``.
    """
    why = triton_usable(cost_fn, x)
    if why is not None:
        raise ValueError(f"triton_softmin: {why}")
    if precision not in ("ieee", "tf32"):
        raise ValueError(f"precision: expected 'ieee' or 'tf32', got {precision!r}")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps: expected a positive float, got {eps!r}")
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], h.shape[:-1])
    B, n = batch.numel(), x.shape[-2]
    xp, yp = _prepare(cost_fn, x, y)
    xf, sx = _flat(xp, batch, 2)
    yf, sy = _flat(yp, batch, 2)
    hf, sh = _flat(h.to(x.dtype), batch, 1)
    launch = _Launch(cost_fn, x.shape[-1], eps, precision, x.device.type == "cpu")
    return _Fused.apply(xf, yf, hf, (sx, sy, sh), B, launch).reshape(*batch, n)


class TritonSoftmin:
    """The fused Triton soft-min of one cost, as a point-cloud backend (chosen once, at construction).

    ``softmin(x, y, h, eps, dim)`` reduces over ``y`` (``dim=1``) or ``x`` (``dim=0``; the three costs are
    symmetric). Raises ``ValueError`` at construction when the kernels do not apply (see :func:`triton_usable`).

    Example:
        >>> import torch
        >>> from monge.geometry.costs import SqEuclidean
        >>> try:
        ...     TritonSoftmin(SqEuclidean(), torch.zeros(3, 2, dtype=torch.float64))
        ... except ValueError as e:
        ...     print(str(e)[:40])
        backend='triton': the points are torch.f
    """

    def __init__(self, cost_fn: Cost, like: torch.Tensor, precision: str = "ieee"):
        why = triton_usable(cost_fn, like)
        if why is not None:
            raise ValueError(f"backend='triton': {why}; use backend='lazy' (chunked torch) instead")
        self.cost_fn, self.precision = cost_fn, precision

    def __call__(self, x, y, h, eps: float, dim: int) -> torch.Tensor:
        return self.softmin(x, y, h, eps, dim)

    def softmin(self, x, y, h, eps: float, dim: int) -> torch.Tensor:
        """``-eps log sum exp((h - C)/eps)`` over ``y`` (``dim=1``) or ``x`` (``dim=0``)."""
        if dim == 0:
            x, y = y, x
        elif dim != 1:
            raise ValueError(f"dim: expected 0 or 1, got {dim!r}")
        return triton_softmin(x, y, h, float(eps), self.cost_fn, self.precision)


def lazy_backend(cost_fn: Cost, x: torch.Tensor, chunk: int | None, backend: str):
    """The reduction of a point cloud's ``"lazy"`` or ``"triton"`` backend: the fused kernels when asked
    (``"triton"``, an error naming why when they do not apply) or when they apply to CUDA points (``"lazy"``),
    else :class:`~monge.geometry._backends.lazy.LazySoftmin`.

    Example:
        >>> import torch
        >>> from monge.geometry.costs import SqEuclidean
        >>> type(lazy_backend(SqEuclidean(), torch.zeros(4, 2), None, "lazy")).__name__
        'LazySoftmin'
    """
    if backend == "triton" or (x.device.type == "cuda" and triton_usable(cost_fn, x) is None):
        return TritonSoftmin(cost_fn, x)
    from .lazy import LazySoftmin

    return LazySoftmin(cost_fn, x, chunk)

r"""Histograms on a regular grid with a separable cost: convolutional (log-domain) soft-min, any dimension.

The cost between cells ``i = (i_1, ..., i_d)`` and ``j`` is :math:`C_{ij} = \sum_k |x^k_{i_k} - x^k_{j_k}|^p`, so
the Gibbs kernel :math:`e^{-C/\varepsilon}` is a tensor product of 1-D kernels and the soft-min over the
``N = n_1 \cdots n_d`` cells is ``d`` soft-mins along one axis each, O(N (n_1 + ... + n_d)) instead of O(N^2).

Each 1-D reduction is a stabilised matrix product (shift every line by its max, ``exp``, one BLAS call with the
1-D kernel ``K = exp(-c / eps)``, ``log``, shift back). Where that product underflows (``eps`` small next to the
spread of ``h`` along a line) the affected entries are recomputed: in float32, first by the same product in float64
(whose range ``e^-708`` covers ~8x smaller ``eps``), then, for the entries that still underflow, and only those, by
an exact log-sum-exp, so the result is the exact soft-min up to rounding for any ``eps > 0``. Before the per-axis
products, one shift for the whole grid is tried (one ``exp``, ``d`` products, one ``log``; on numpy views for CPU
tensors that record nothing), and the Sinkhorn solver runs float64 CPU grids several iterations per call through
:meth:`Grid.scaling_loop` (:mod:`~monge.geometry._backends.grid_loop`), back in the log domain where it underflows.

References:
    Solomon, de Goes, Peyre, Cuturi, Butscher, Nguyen, Du, Guibas (2015). Convolutional Wasserstein distances:
    efficient optimal transportation on geometric domains. ACM Transactions on Graphics 34(4).
"""

from __future__ import annotations

import numbers

import torch

from .._validation import check_p, check_positive
from ._backends.grid_axes import fused_product, softmax_axis
from ._backends.grid_loop import GridLoop
from ._backends.shifted import adapts
from .base import Geometry

__all__ = ["Grid", "MAX_DENSE"]

#: :meth:`Grid.cost` refuses to materialise the ``(N, N)`` cost above this many cells (N^2 = 16M entries).
MAX_DENSE = 4096
_CACHE_SIZE = 16  # 1-D (cost, kernel) pairs kept per grid: d axes x a few eps of an annealing schedule
_FUSED_TRIES = 3  # underflows of the one-shift product at an eps before that eps goes per-axis for good


class Grid(Geometry):
    r"""A regular grid of shape ``(n_1, ..., n_d)`` with the separable cost :math:`\sum_k |x_{i_k} - x_{j_k}|^p`.

    Cell ``i`` sits at :math:`x_i = (s_1 i_1, \dots, s_d i_d)` with spacing ``s_k = 1 / n_k`` by default (the grid
    covers :math:`[0, 1)^d`); source and target are the same grid, so :attr:`shape` is ``(N, N)`` with
    ``N = prod(grid_shape)``.

    .. math::
        C_{ij} = \sum_{k=1}^d |s_k (i_k - j_k)|^p,
        \qquad
        \mathrm{softmin}(h)_i = -\varepsilon \log \sum_j \exp\big((h_j - C_{ij}) / \varepsilon\big)

    Weights and potentials on a grid keep the grid shape: ``(..., n_1, ..., n_d)`` with leading batch dimensions,
    never flattened (images stay ``(..., H, W)``, volumes ``(..., D, H, W)``).

    Args:
        shape: the grid shape ``(n_1, ..., n_d)``, ``d >= 1`` positive ints (an int for a 1-D grid).
        spacing: the cell size per axis: ``None`` (``1 / n_k``), a positive float for every axis, or ``d`` floats.
        p: the exponent of the cost, ``p >= 1`` (2: squared Euclidean without a factor 1/2; 1: Manhattan).
        dtype: float32 or float64, the dtype of :meth:`cost` and of the kernels (``h`` must match it).
        device: where the kernels live (``h`` must be there too).

    Example:
        >>> import torch
        >>> geom = Grid((2, 3))
        >>> geom.shape, geom.grid_shape
        ((6, 6), (2, 3))
        >>> h = torch.zeros(2, 3)
        >>> out = geom.softmin(h, eps=0.1, dim=1)
        >>> out.shape, bool(torch.allclose(out, Grid((2, 3), dtype=torch.float32).softmin(h, 0.1, 0)))
        (torch.Size([2, 3]), True)
        >>> dense = -0.1 * torch.logsumexp((h.reshape(-1) - geom.cost()) / 0.1, dim=1)
        >>> bool(torch.allclose(out.reshape(-1), dense, atol=1e-6))
        True
    """

    def __init__(self, shape, spacing=None, p: float = 2.0, dtype: torch.dtype = torch.float32, device=None):
        self._grid_shape = _check_grid_shape(shape)
        self._spacing = _check_spacing(spacing, self._grid_shape)
        self.p = check_p(p)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype!r}")
        self._like = torch.zeros((), dtype=dtype, device=device)
        self._kernels: dict = {}  # private cache of 1-D (cost, kernel) pairs; never changes what softmin returns
        self._fused_fails: dict = {}  # (eps, dtype) -> times the one-shift product underflowed (then: per axis)

    # ------------------------------------------------------------------ the Geometry interface
    @property
    def grid_shape(self) -> tuple[int, ...]:
        """``(n_1, ..., n_d)``: the trailing shape of weights and potentials on this grid."""
        return self._grid_shape

    @property
    def event_ndim(self) -> int:
        """Weights and potentials carry the grid shape: the last ``d`` dimensions are the support."""
        return len(self._grid_shape)

    @property
    def source_shape(self) -> tuple[int, ...]:
        """The grid shape: weights and potentials are ``(..., n_1, ..., n_d)``."""
        return self._grid_shape

    @property
    def target_shape(self) -> tuple[int, ...]:
        """The grid shape (source and target are the same grid)."""
        return self._grid_shape

    @property
    def spacing(self) -> tuple[float, ...]:
        """The cell size along each axis."""
        return self._spacing

    @property
    def cell_volume(self) -> float:
        r"""The volume of one cell, :math:`\prod_k s_k` (densities times it are masses)."""
        v = 1.0
        for s in self._spacing:
            v *= s
        return v

    def axes(self) -> list[torch.Tensor]:
        """The cell coordinates along each axis, ``[s_k * arange(n_k)]``, in the grid's dtype and device.

        Example:
            >>> [a.tolist() for a in Grid((2, 3), spacing=1.0).axes()]
            [[0.0, 1.0], [0.0, 1.0, 2.0]]
        """
        return [torch.arange(n, dtype=self.dtype, device=self.device) * s
                for n, s in zip(self._grid_shape, self._spacing)]

    @property
    def shape(self) -> tuple[int, int]:
        n = 1
        for k in self._grid_shape:
            n *= k
        return (n, n)

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    @property
    def dtype(self) -> torch.dtype:
        return self._like.dtype

    @property
    def device(self) -> torch.device:
        return self._like.device

    def like(self) -> torch.Tensor:
        return self._like

    @property
    def symmetric(self) -> bool:
        """True: source and target are the same grid with a symmetric cost."""
        return True

    def detach(self) -> "Grid":
        """The grid itself: it holds no differentiable data."""
        return self

    def cost_scale(self) -> float:
        r"""The largest cost, :math:`\sum_k (s_k (n_k - 1))^p` (between opposite corners)."""
        return float(sum((s * (n - 1)) ** self.p for s, n in zip(self._spacing, self._grid_shape)))

    def cost_1d(self, axis: int) -> torch.Tensor:
        """The ``(n_k, n_k)`` cost ``|s_k (i - j)|^p`` along one axis, in the grid's dtype and device."""
        if not isinstance(axis, int) or not 0 <= axis < len(self._grid_shape):
            raise ValueError(f"axis: expected an int in [0, {len(self._grid_shape)}), got {axis!r}")
        return _cost_1d(self._grid_shape[axis], self._spacing[axis], self.p, self.dtype, self.device)

    def cost(self) -> torch.Tensor:
        """The dense ``(N, N)`` cost, cells in row-major (C) order; only for ``N <= MAX_DENSE``."""
        n = self.shape[0]
        if n > MAX_DENSE:
            raise ValueError(
                f"Grid.cost: the grid {self._grid_shape} has N = {n} cells and a dense (N, N) cost of {n * n} "
                f"entries (limit N <= {MAX_DENSE}); use Grid.softmin, which never materialises it"
            )
        d = len(self._grid_shape)
        total = self._like.new_zeros(self._grid_shape + self._grid_shape)
        for k in range(d):
            view = [1] * (2 * d)
            view[k], view[d + k] = self._grid_shape[k], self._grid_shape[k]
            total = total + self.cost_1d(k).reshape(view)
        return total.reshape(n, n)

    def softmin(self, h: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
        r"""The soft-min of the grid cost against ``h``, one 1-D log-domain reduction per axis.

        .. math::
            \mathrm{out}_i = -\varepsilon \log \sum_j \exp\big((h_j - C_{ij}) / \varepsilon\big)
            = -(T_1 \circ \cdots \circ T_d)(h)_i, \quad
            T_k(g)_{\dots i_k \dots} = \varepsilon \log \sum_{j_k} e^{(g_{\dots j_k \dots} - |s_k (i_k - j_k)|^p)
            / \varepsilon}

        Args:
            h: ``(..., n_1, ..., n_d)``, the grid shape with leading batch dimensions; finite or ``-inf`` (zero
                weights). Same dtype and device as the grid.
            eps: the temperature, a positive float in cost units.
            dim: 0 or 1; the grid cost is symmetric, so both give the same result.

        Returns:
            ``(..., n_1, ..., n_d)``, exact up to rounding for any ``eps > 0``; ``+inf`` only where every entry of
            ``h`` is ``-inf``; differentiable in ``h``.
        """
        _check_dim(dim)
        check_positive(eps, "eps")
        eps = float(eps)
        self._check_h(h)
        d = len(self._grid_shape)
        if d > 1:
            out = self._fused(h, eps)
            if out is not None:
                return -out
        g = h
        for k in reversed(range(d)):
            C, K, K64, wide = self._kernel(k, eps)
            axis = h.dim() - d + k
            g = softmax_axis(g, axis, C, K, eps, K64, wide, self._spacing[k] if self.p == 2.0 else None)
        return -g

    def scaling_loop(self, eps: float):
        """Several Sinkhorn iterations per call at ``eps`` (a :class:`~monge.geometry._backends.grid_loop.GridLoop`)
        for a float64 CPU grid, the block step of the solver; None where the one-shift product keeps underflowing
        at this ``eps`` (the log-domain soft-min then runs alone)."""
        eps = float(eps)
        if type(self).softmin is not Grid.softmin or self.dtype != torch.float64 or self.device.type != "cpu":
            return None
        if self._fused_fails.get((eps, torch.float64), 0) >= _FUSED_TRIES:
            return None
        key = (eps, torch.float64)

        def failed():
            self._fused_fails[key] = self._fused_fails.get(key, 0) + 1

        return GridLoop([self._kernel(k, eps)[1] for k in range(len(self._grid_shape))], eps, failed)

    # ------------------------------------------------------------------ helpers
    def _fused(self, h: torch.Tensor, eps: float):
        """The one-shift product (:func:`fused_product`) in the grid's dtype, then (float32 grids) in float64;
        ``None`` when both underflow. A precision that failed ``_FUSED_TRIES`` times at an eps is not tried again."""
        d = len(self._grid_shape)
        tries = [(self.dtype, 1)] + ([(torch.float64, 2)] if self.dtype == torch.float32 else [])
        for dtype, slot in tries:
            key = (eps, dtype)
            if self._fused_fails.get(key, 0) >= _FUSED_TRIES:
                continue
            kernels = [self._kernel(k, eps)[slot] for k in range(d)]
            out = fused_product(h if dtype == h.dtype else h.to(dtype), kernels, eps)
            if out is not None:
                return out.to(h.dtype)
            if adapts(h):
                self._fused_fails[key] = self._fused_fails.get(key, 0) + 1
        return None

    def _check_h(self, h) -> None:
        if not isinstance(h, torch.Tensor):
            raise TypeError(f"h: expected a torch.Tensor of shape (..., {_sym(self)}), got {type(h).__name__}")
        d = len(self._grid_shape)
        if h.dim() < d or tuple(h.shape[h.dim() - d:]) != self._grid_shape:
            raise ValueError(
                f"h: expected shape (..., {_sym(self)}) = (..., {', '.join(map(str, self._grid_shape))}), got "
                f"{tuple(h.shape)}; grid potentials keep the grid shape (reshape a flat (..., N) vector with "
                f"h.reshape(*h.shape[:-1], *geom.grid_shape))"
            )
        if h.dtype != self.dtype or h.device != self.device:
            raise TypeError(
                f"h: has dtype {h.dtype} on {h.device} but the grid has dtype {self.dtype} on {self.device}; "
                f"build Grid(..., dtype=h.dtype, device=h.device) or convert h with h.to(geom.like())"
            )

    def _kernel(self, axis: int, eps: float):
        """The 1-D cost, Gibbs kernel and (float32 grids only, else None) float64 kernel along ``axis`` at ``eps``."""
        key = (axis, eps)
        hit = self._kernels.get(key)
        if hit is None:
            n, s = self._grid_shape[axis], self._spacing[axis]
            C64 = _cost_1d(n, s, self.p, torch.float64, self.device)
            K64 = _no_subnormals(torch.exp(-C64 / eps), torch.float64)  # subnormals: slow, and imprecise
            K = _no_subnormals(K64, self.dtype).to(self.dtype)
            hit = (C64.to(self.dtype), K, K64 if self.dtype == torch.float32 else None, {"wide": False})
            if len(self._kernels) >= _CACHE_SIZE:
                self._kernels.clear()
            self._kernels[key] = hit
        return hit

    def plan_cost(self, u: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
        r""":math:`\langle P, C\rangle = \sum_k \langle P, C_k\rangle` axis by axis, never the ``(N, N)`` cost: the
        weighted kernel :math:`C_k e^{-C_k/\varepsilon} = e^{-C'_k/\varepsilon}`, :math:`C'_k = C_k - \varepsilon
        \log C_k`, replaces axis ``k``'s kernel in one separable soft-min per axis (O(N (n_1 + ... + n_d)) each).

        Example:
            >>> import torch
            >>> geom = Grid((3, 4), dtype=torch.float64)
            >>> u, v = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
            >>> C = geom.cost()
            >>> P = torch.exp((u.reshape(-1, 1) + v.reshape(1, -1) - C) / 0.1)
            >>> bool(torch.allclose(geom.plan_cost(u, v, 0.1), (P * C).sum()))
            True
        """
        eps = float(eps)
        d = len(self._grid_shape)
        total = 0.0
        for k in range(d):
            g = v
            for axis in reversed(range(d)):
                C, K = self._kernel(axis, eps)[:2]
                if axis == k:  # the weighted kernel C_k exp(-C_k / eps), shifted so that its entries are <= 1
                    C = torch.where(C > 0, C - eps * torch.log(C.clamp_min(torch.finfo(C.dtype).tiny)),
                                    torch.full_like(C, torch.inf))
                    c0 = C.min()
                    C = C - c0
                    K = torch.exp(-C / eps)
                g = softmax_axis(g, g.dim() - d + axis, C, K, eps)
                if axis == k:
                    g = g - c0
            total = total + torch.exp(torch.logsumexp(((u + g) / eps).reshape(*(u + g).shape[:-d], -1), -1))
        return total

    def __repr__(self) -> str:
        return f"Grid(shape={self._grid_shape}, spacing={self._spacing}, p={self.p:g}, dtype={self.dtype})"


def _sym(geom: Grid) -> str:
    return ", ".join(f"n_{k + 1}" for k in range(len(geom.grid_shape)))


def _no_subnormals(K: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(K < torch.finfo(dtype).tiny, torch.zeros_like(K), K)


def _cost_1d(n: int, spacing: float, p: float, dtype, device) -> torch.Tensor:
    x = torch.arange(n, dtype=torch.float64, device=device) * spacing
    diff = (x[:, None] - x[None, :]).abs()
    C = diff * diff if p == 2.0 else diff**p
    return C.to(dtype)


def _check_dim(dim) -> None:
    if dim not in (0, 1) or isinstance(dim, bool):
        raise ValueError(f"dim: expected 0 (reduce over sources) or 1 (reduce over targets), got {dim!r}")


def _check_grid_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or len(shape) == 0:
        raise TypeError(f"shape: expected a non-empty tuple of positive ints (n_1, ..., n_d), got {shape!r}")
    for n in shape:
        if not isinstance(n, numbers.Integral) or isinstance(n, bool):
            raise TypeError(f"shape: expected positive ints (n_1, ..., n_d), got {shape!r}")
        if n < 1:
            raise ValueError(f"shape: expected positive sizes (n_1, ..., n_d), got {tuple(shape)}")
    return tuple(int(n) for n in shape)


def _check_spacing(spacing, grid_shape: tuple[int, ...]) -> tuple[float, ...]:
    d = len(grid_shape)
    if spacing is None:
        return tuple(1.0 / n for n in grid_shape)
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        spacing = (spacing,) * d
    if not isinstance(spacing, (tuple, list)) or len(spacing) != d:
        raise ValueError(f"spacing: expected None, a positive float or {d} positive floats (one per axis), "
                         f"got {spacing!r}")
    for s in spacing:
        check_positive(s, "spacing")
    return tuple(float(s) for s in spacing)

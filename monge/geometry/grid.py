r"""Histograms on a regular grid with a separable cost: convolutional (log-domain) soft-min, any dimension.

The cost between cells ``i = (i_1, ..., i_d)`` and ``j`` is :math:`C_{ij} = \sum_k |x^k_{i_k} - x^k_{j_k}|^p`, so
the Gibbs kernel :math:`e^{-C/\varepsilon}` is a tensor product of 1-D kernels and the soft-min over the
``N = n_1 \cdots n_d`` cells is ``d`` soft-mins along one axis each, O(N (n_1 + ... + n_d)) instead of O(N^2).

Each 1-D reduction is a stabilised matrix product (shift every line by its max, ``exp``, one BLAS call with the
1-D kernel ``K = exp(-c / eps)``, ``log``, shift back). Where that product underflows (``eps`` small next to the
spread of ``h`` along a line) the affected entries are recomputed: in float32, first by the same product in float64
(whose range ``e^-708`` covers ~8x smaller ``eps``), then, for the entries that still underflow, and only those, by
an exact log-sum-exp, so the result is the exact soft-min up to rounding for any ``eps > 0``.

References:
    Solomon, de Goes, Peyre, Cuturi, Butscher, Nguyen, Du, Guibas (2015). Convolutional Wasserstein distances:
    efficient optimal transportation on geometric domains. ACM Transactions on Graphics 34(4).
"""

from __future__ import annotations

import numbers

import torch

from .._validation import check_p, check_positive
from ._backends.shifted import adapts, certified, shifted_product
from .base import Geometry

__all__ = ["Grid", "MAX_DENSE"]

#: :meth:`Grid.cost` refuses to materialise the ``(N, N)`` cost above this many cells (N^2 = 16M entries).
MAX_DENSE = 4096
_FALLBACK_ELEMENTS = 1 << 22  # entries per chunk of the exact fallback: 16 MB in float32
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
            g = _softmax_axis(g, axis, C, K, eps, K64, wide, self._spacing[k] if self.p == 2.0 else None)
        return -g

    # ------------------------------------------------------------------ helpers
    def _fused(self, h: torch.Tensor, eps: float):
        """The one-shift product (:func:`_fused_product`) in the grid's dtype, then (float32 grids) in float64;
        ``None`` when both underflow. A precision that failed ``_FUSED_TRIES`` times at an eps is not tried again."""
        d = len(self._grid_shape)
        tries = [(self.dtype, 1)] + ([(torch.float64, 2)] if self.dtype == torch.float32 else [])
        for dtype, slot in tries:
            key = (eps, dtype)
            if self._fused_fails.get(key, 0) >= _FUSED_TRIES:
                continue
            kernels = [self._kernel(k, eps)[slot] for k in range(d)]
            out = _fused_product(h if dtype == h.dtype else h.to(dtype), kernels, eps)
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


def _softmax_axis(g: torch.Tensor, axis: int, C: torch.Tensor, K: torch.Tensor, eps: float,
                  K64: torch.Tensor | None = None, wide: dict | None = None,
                  quadratic: float | None = None) -> torch.Tensor:
    r"""``eps log sum_j exp((g_j - C_ij) / eps)`` along ``axis`` of ``g`` (the negative 1-D soft-min).

    Fast path (:func:`_shifted_product`): one matrix product per axis in a per-line shifted frame. Entries where it
    underflows are, for a float32 ``g`` with the float64 kernel ``K64`` given, first recomputed by the same product in
    float64 (range ``e^-708`` instead of ``e^-87``: ~8x more ``eps`` headroom at twice the cost of one product), and
    only the entries still underflowing there are computed exactly: by :func:`_quadratic_lines` on their lines when
    the cost is ``(s (i - j))^2`` (``quadratic = s``), else by the log-sum-exp of :func:`_exact_entries`. Once the
    float32 product has underflowed on over a quarter of the lines at this ``(axis, eps)``, ``wide["wide"]`` makes
    the later calls skip it and start in float64 (a private switch: the same result up to rounding).
    """
    shape = g.shape
    n = shape[axis]
    lead = 1
    for s in shape[:axis]:
        lead *= s
    g3 = g.reshape(lead, n, -1)  # (A, n, B): lines along the middle dimension

    def redo64(out, bad):
        if out is None:  # the switch is on: everything in float64
            out64, bad = _shifted_product(g3.double(), K64, eps)
            return out64.to(g.dtype), bad
        return _redo_lines64(out, bad, g3, K64, eps)

    def exact(out, bad):
        return _exact_entries(out, g3, bad, C, eps) if quadratic is None else _exact_lines(out, g3, bad, quadratic, eps)

    def systematic(bad):  # over a quarter of the lines underflowed: start in float64 from now on
        return 4 * int(bad.any(1).sum()) > bad.shape[0] * bad.shape[2]

    out = certified(g3, lambda t: _shifted_product(t, K, eps), exact, redo64 if K64 is not None else None, wide,
                    systematic)
    return out.reshape(shape)


def _fused_product(h: torch.Tensor, kernels: list, eps: float):
    r"""``eps log sum_j K_ij exp(h_j / eps)`` over the whole grid with ONE shift (the max of ``h`` per batch element):
    one ``exp``, ``d`` matrix products, one ``log``; ``None`` if any sum underflowed (then the per-axis path runs).

    A sum that went through an underflowed partial sum has lost at most ``N * tiny`` (every factor is <= 1), so the
    result is exact to ``N`` ulp wherever ``s >= N * tiny / ulp``: the same certificate as the per-axis path.
    """
    d = len(kernels)
    dims = tuple(range(h.dim() - d, h.dim()))

    def contract(s):
        for k in range(d - 1):
            axis = h.dim() - d + k
            lead = 1
            for n_ in s.shape[:axis]:
                lead *= n_
            s = torch.matmul(kernels[k], s.reshape(lead, s.shape[axis], -1)).reshape(s.shape)
        return s @ kernels[-1]  # the last axis: K is symmetric

    N = 1
    for n_ in h.shape[h.dim() - d:]:
        N *= n_
    out, bad = shifted_product(h, contract, eps, dims, N, mask=False)
    return None if bool(bad) else out


def _shifted_product(g3: torch.Tensor, K: torch.Tensor, eps: float):
    """The fast path on ``(A, n, B)`` lines: ``(out, bad)``, ``bad`` marking the underflowed entries to redo.

    Per line ``m = max_j g_j``, ``s_i = sum_j K_ij exp((g_j - m) / eps)`` (one matrix product), ``m + eps log s_i``.
    Every term of ``s`` is a product of two floats in ``[0, 1]``, so ``s`` carries a relative error ~ ``n`` ulp
    unless underflowed terms matter: entries with ``s < n * tiny / ulp`` on lines with a finite entry are ``bad``.
    """
    def contract(u):
        return (u.squeeze(-1) @ K).unsqueeze(-1) if g3.shape[-1] == 1 else torch.matmul(K, u)  # K is symmetric

    return shifted_product(g3, contract, eps, 1, g3.shape[1])


def _redo_lines64(out: torch.Tensor, bad: torch.Tensor, g3: torch.Tensor, K64: torch.Tensor, eps: float):
    """The float64 product on the lines of ``g3 (A, n, B)`` holding an underflowed entry, and only those (all at
    once when most lines are affected); returns ``(out, bad)`` with ``bad`` left for the exact fallback."""
    line_bad = bad.any(1)  # (A, B)
    if 4 * int(line_bad.sum()) > line_bad.numel():
        out64, bad = _shifted_product(g3.double(), K64, eps)
        return torch.where(bad, out, out64.to(out.dtype)), bad  # bad entries of out are redone exactly later
    a, b = line_bad.nonzero(as_tuple=True)
    out_t, bad_t = out.transpose(1, 2), bad.transpose(1, 2)  # (A, B, n) views: a line is out_t[a, b]
    o64, b64 = _shifted_product(g3.transpose(1, 2)[a, b].double().unsqueeze(-1), K64, eps)  # (L, n, 1)
    o64, b64 = o64.squeeze(-1), b64.squeeze(-1)
    lines = torch.where(b64, out_t[a, b], o64.to(out.dtype))
    return out_t.index_put((a, b), lines).transpose(1, 2), bad_t.index_put((a, b), b64).transpose(1, 2)


def _exact_lines(out: torch.Tensor, g3: torch.Tensor, bad: torch.Tensor, s: float, eps: float):
    """Replace the ``bad`` entries of ``out (A, n, B)`` by :func:`_quadratic_lines` on the lines holding them."""
    line_bad = bad.any(1)  # (A, B)
    a, b = line_bad.nonzero(as_tuple=True)
    rows = g3.transpose(1, 2)  # (A, B, n) view: a line is rows[a, b]
    exact = _quadratic_lines(rows[a, b].double(), s, eps).to(out.dtype)  # (L, n)
    out_t = out.transpose(1, 2)
    lines = torch.where(bad.transpose(1, 2)[a, b], exact, out_t[a, b])
    return out_t.index_put((a, b), lines).transpose(1, 2)


def _quadratic_lines(lines: torch.Tensor, s: float, eps: float) -> torch.Tensor:
    r"""``eps log sum_j exp((g_j - s^2 (i - j)^2) / eps)`` for every ``i`` of each line ``g`` of ``lines (L, n)``,
    exact up to rounding for any ``eps``, in O(n^2 / B) exponentials per line instead of O(n^2).

    With :math:`\varphi_j = g_j/\varepsilon - q j^2`, :math:`q = s^2/\varepsilon`, the sum is
    :math:`e^{-q i^2} \sum_j e^{\varphi_j + 2 q i j}`. Outputs go in blocks of ``B`` around a centre ``c``: shifted
    by the exact maximum :math:`m_c = \max_j (\varphi_j + 2 q c j)`, the terms :math:`u_j = e^{\varphi_j + 2 q c j -
    m_c} \in [0, 1]`, and :math:`\sum_j e^{\varphi_j + 2 q i j} = e^{m_c} \sum_j u_j E_{j, i - c}` with the fixed
    matrix :math:`E_{jk} = e^{2 q k j}`: one product ``(L, blocks, n) @ (n, B)``. ``B`` keeps
    :math:`|2 q k j| \le 300`, so a term that underflows in ``u`` stays below ``e^-100`` of the largest term of its
    output, and the sums lie in ``[e^-300, n e^300]``: no underflow, no overflow (float64).
    """
    L, n = lines.shape
    q = s * s / eps
    j = torch.arange(n, dtype=torch.float64, device=lines.device)
    B = int(max(1, min(n, 300.0 // max(q * n, 1e-300))))
    half = B // 2
    nb = -(-n // B)
    centres = torch.arange(nb, dtype=torch.float64, device=lines.device) * B + half  # (may pass n - 1: any c works)
    phi = lines / eps - q * j * j  # (L, n); -inf where g is -inf
    tc = (2.0 * q) * centres[:, None] * j[None, :]  # (nb, n)
    k = torch.arange(B, dtype=torch.float64, device=lines.device) - half
    E = torch.exp((2.0 * q) * j[:, None] * k[None, :])  # (n, B)
    i = centres[:, None] + k[None, :]  # (nb, B): output i = centre + k
    keep = (i < n).reshape(-1)
    step = max(1, _FALLBACK_ELEMENTS // (nb * n))  # lines per chunk: (lines, nb, n) exponents at a time
    out = []
    for p0 in range(0, L, step):
        T = phi[p0:p0 + step].unsqueeze(1) + tc  # (l, nb, n)
        m = T.detach().amax(-1, keepdim=True)  # the exact max per block centre (a shift: no gradient through it)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        S = torch.exp(T - m) @ E  # (l, nb, B)
        vals = eps * (m + torch.log(S)) - eps * q * i * i  # -inf where the line is all -inf
        out.append(vals.reshape(-1, nb * B)[:, keep])
    return torch.cat(out)  # (L, n)


def _exact_entries(out: torch.Tensor, g3: torch.Tensor, bad: torch.Tensor, C: torch.Tensor, eps: float):
    """Replace ``out[a, i, b]`` where ``bad`` by the exact log-sum-exp over line ``g3[a, :, b]`` (chunked)."""
    lines_first = g3.transpose(1, 2).contiguous()  # (A, B, n): each gathered line is one contiguous row
    a, i, b = bad.nonzero(as_tuple=True)
    n = g3.shape[1]
    step = max(1, _FALLBACK_ELEMENTS // n)
    vals = []
    for p0 in range(0, a.numel(), step):
        sl = slice(p0, p0 + step)
        lines = lines_first[a[sl], b[sl]]  # (P, n)
        vals.append(eps * torch.logsumexp((lines - C[i[sl]]) / eps, dim=-1))
    return out.index_put((a, i, b), torch.cat(vals))


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

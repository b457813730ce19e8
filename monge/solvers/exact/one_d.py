"""Exact optimal transport on the real line, by sorting.

In one dimension the optimal plan for any cost :math:`h(x - y)` with :math:`h` convex (here
:math:`|x - y|^p`, :math:`p \\ge 1`) is the monotone rearrangement: it couples the quantiles of the two
measures. The distance is an integral over quantile levels,

.. math::

    W_p(\\mu, \\nu)^p = \\int_0^1 |F^{-1}(t) - G^{-1}(t)|^p \\, dt,

and for discrete measures the integrand is piecewise constant between the merged cumulative weights of
both measures, so one sort of each side plus a merge gives the exact value in :math:`O((n + m)\\log(n + m))`.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..._validation import (
    as_tensor,
    balance_masses,
    check_finite,
    check_p,
    check_weights,
    common_dtype_device,
)
from ...geometry import PointCloud
from ...problems.linear import LinearProblem
from ...results import Convergence, ExactResult
from ...ops.broadcast import broadcast_shapes

__all__ = ["wasserstein_1d", "solve_1d", "quantile_function", "normalising_scale"]

#: Above this many entries per side, the two CPU sorts run in two threads (numpy releases the GIL while
#: sorting); below it the hand-off costs more than it saves.
_PARALLEL_SORT_MIN = 1 << 16
_POOL: ThreadPoolExecutor | None = None


def _sort(x: torch.Tensor, with_perm: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sort along the last axis; the permutation too when asked for or when gradients must flow.

    On the CPU numpy's sort (vectorised, SIMD) is several times faster than ``torch.sort``; when autograd
    needs the sorted values we take numpy's argsort and ``gather``, which is differentiable.
    """
    if x.device.type != "cpu":
        values, perm = torch.sort(x, dim=-1)
        return values, perm
    xn = x.detach().numpy()
    if not with_perm and not (x.requires_grad and torch.is_grad_enabled()):
        return torch.from_numpy(np.sort(xn, axis=-1)), None
    perm = torch.from_numpy(np.argsort(xn, axis=-1).astype(np.int64, copy=False))
    return x.gather(-1, perm), perm


def _in_parallel(f, x, y, *args):
    """``(f(x, *args[0]), f(y, *args[1]))``, in two threads for large CPU tensors."""
    global _POOL
    if x.device.type != "cpu" or min(x.numel(), y.numel()) < _PARALLEL_SORT_MIN:
        return f(x, *args[0]), f(y, *args[1])
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="monge-sort")
    grad_mode = torch.is_grad_enabled()  # grad mode is thread-local: carry the caller's into the worker

    def job():
        with torch.set_grad_enabled(grad_mode):
            return f(y, *args[1])

    fut = _POOL.submit(job)
    return f(x, *args[0]), fut.result()


def quantile_function(qs: torch.Tensor, cws: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    r"""Evaluate the quantile function (generalised inverse CDF) of a discrete measure at levels ``qs``.

    .. math::

        F^{-1}(t) = x_{(i)}, \quad i = \min\{k : c_k \ge t\}, \qquad c_k = \sum_{j \le k} a_{(j)},

    the left-continuous inverse of the CDF of :math:`\sum_k a_{(k)} \delta_{x_{(k)}}` (levels beyond the
    total mass map to the largest value, so rounding of :math:`c_n` is harmless).

    Args:
        qs: ``(..., k)`` quantile levels.
        cws: ``(..., n)`` nondecreasing cumulative weights :math:`c_k` of the sorted samples.
        xs: ``(..., n)`` sorted sample values :math:`x_{(1)} \le \dots \le x_{(n)}`.
            Leading dimensions of the three broadcast.

    Returns:
        ``(..., k)`` tensor of :math:`F^{-1}(q)`, differentiable with respect to ``xs`` (the levels only
        select an index).

    Raises:
        ValueError: if ``cws`` and ``xs`` disagree on ``n`` or ``n = 0``.

    Reference:
        Peyré & Cuturi, *Computational Optimal Transport* (2019), Remark 2.30.

    Example:
        >>> import torch
        >>> xs = torch.tensor([0.0, 1.0, 5.0])
        >>> cws = torch.tensor([0.25, 0.5, 1.0])
        >>> quantile_function(torch.tensor([0.1, 0.25, 0.3, 0.9]), cws, xs).tolist()
        [0.0, 0.0, 1.0, 5.0]
    """
    n = xs.shape[-1]
    if n == 0 or cws.shape[-1] != n:
        raise ValueError(
            f"cws: expected cumulative weights of shape (..., n) matching xs (n = {n}), got {tuple(cws.shape)}"
        )
    batch = broadcast_shapes(qs.shape[:-1], cws.shape[:-1], xs.shape[:-1])
    cws = cws.expand(*batch, n).contiguous()
    qs = qs.expand(*batch, qs.shape[-1]).contiguous()
    idx = torch.searchsorted(cws, qs).clamp_(max=n - 1)
    return xs.expand(*batch, n).gather(-1, idx)


def _abs_pow(d: torch.Tensor, p: float) -> torch.Tensor:
    """``|d|^p`` with the cheapest exact formula (the gradient is 0 at d = 0 for p > 1)."""
    if p == 1.0:
        return d.abs()
    if p == 2.0:
        return d * d
    return d.abs() ** p


def _safe_root(s: torch.Tensor, p: float) -> torch.Tensor:
    """``s ** (1/p)`` for ``s >= 0``, with a zero (not NaN) gradient at ``s = 0``."""
    if p == 1.0:
        return s
    pos = s > 0
    zero = torch.where(torch.isnan(s), s, torch.zeros_like(s))  # a NaN stays NaN: never a silent 0
    return torch.where(pos, torch.where(pos, s, torch.ones_like(s)) ** (1.0 / p), zero)


def normalising_scale(x: torch.Tensor, y: torch.Tensor, p: float, event_dims: int = 1) -> torch.Tensor | None:
    r"""Per problem of a batch, a power of two :math:`s` such that :math:`|x/s - y/s|^p` stays inside the
    floating-point range; ``None`` when no problem needs it (coordinates whose p-th powers are far from overflow
    and underflow: the common case, one ``abs().amax()`` pass per side).

    :math:`W_p` is 1-homogeneous, :math:`W_p(x, y) = s\, W_p(x / s, y / s)`, and dividing by a power of two is
    exact, so samples near 1e300 or 1e-300 (where :math:`|x - y|^p` overflows or underflows) give the representable
    :math:`W_p` instead of inf or 0. Problems of a batch at a tame scale keep :math:`s = 1` (a batch may mix scales).

    Args:
        x: ``(..., n)`` samples (``event_dims=1``) or ``(..., n, d)`` points (``event_dims=2``); y: the same for
            the other measure. p: the cost exponent.

    Returns:
        ``None`` or ``s`` of shape ``(..., 1)`` / ``(..., 1, 1)`` (the broadcast batch shape of ``x`` and ``y``).

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 3.0], [1e300, 3e300]], dtype=torch.float64)
        >>> normalising_scale(x[:1], x[:1], p=2) is None   # tame: nothing to do
        True
        >>> torch.log2(normalising_scale(x, x, p=2)).flatten().tolist()   # s = 1 and 2^998 (3e300 ~ 2^998.2)
        [0.0, 998.0]
    """
    limit = float(np.log2(torch.finfo(x.dtype).max)) / (2 * p)  # |log2 s| from which |x - y|^p may leave the range
    if x.dim() == event_dims and y.dim() == event_dims:  # one problem: two passes without temporaries, one sync
        lo_hi = torch.stack([*torch.aminmax(x.detach()), *torch.aminmax(y.detach())]).tolist()
        big = max(-lo_hi[0], lo_hi[1], -lo_hi[2], lo_hi[3])
        if big == 0 or not math.isfinite(big) or abs(math.log2(big)) < limit:
            return None
        return x.new_full((1,) * event_dims, 2.0 ** math.floor(math.log2(big)))
    dims = tuple(range(-event_dims, 0))
    big = torch.maximum(x.detach().abs().amax(dims, keepdim=True), y.detach().abs().amax(dims, keepdim=True))
    e = torch.floor(torch.log2(big))  # -inf at 0 and inf at inf: neither is rescaled
    need = torch.isfinite(e) & (e.abs() >= limit)
    if not bool(need.any()):
        return None
    return torch.where(need, torch.exp2(e), torch.ones_like(big))


def _cumulative(x: torch.Tensor, a: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted values and cumulative weights of ``sum_i a_i delta_{x_i}`` (``a=None``: uniform 1/n)."""
    n = x.shape[-1]
    if a is None:
        xs, _ = _sort(x, with_perm=False)
        return xs, torch.arange(1, n + 1, dtype=x.dtype, device=x.device) / n
    xs, perm = _sort(x, with_perm=True)
    batch = broadcast_shapes(x.shape[:-1], a.shape[:-1])
    a_sorted = a.expand(*batch, n).gather(-1, perm.expand(*batch, n))
    return xs, torch.cumsum(a_sorted, dim=-1)


def _wasserstein_1d_pow(x, y, a, b, p: float) -> torch.Tensor:
    """``W_p^p`` over the broadcast batch, on validated inputs (``a``/``b`` None = uniform, masses equal)."""
    n, m = x.shape[-1], y.shape[-1]
    if a is None and b is None and n == m:
        (xs, _), (ys, _) = _in_parallel(_sort, x, y, (False,), (False,))
        if xs.requires_grad or ys.requires_grad or xs.data_ptr() == x.data_ptr() or xs.shape != ys.shape:
            return _abs_pow(xs - ys, p).mean(-1)
        return _abs_pow(xs.sub_(ys), p).mean(-1)  # xs is a fresh buffer we own: no extra allocation
    (xs, ca), (ys, cb) = _in_parallel(_cumulative, x, y, (a,), (b,))
    batch = broadcast_shapes(xs.shape[:-1], ca.shape[:-1], ys.shape[:-1], cb.shape[:-1])
    levels = torch.cat([ca.expand(*batch, n), cb.expand(*batch, m)], dim=-1)
    qs, _ = _sort(levels, with_perm=False)
    dq = torch.diff(qs, dim=-1, prepend=qs.new_zeros(()).expand(*batch, 1))
    u = quantile_function(qs, ca, xs)
    v = quantile_function(qs, cb, ys)
    return (dq * _abs_pow(u - v, p)).sum(-1)


def _check_samples(x, name: str) -> torch.Tensor:
    t = as_tensor(x, name)
    if t.dim() == 0 or t.shape[-1] == 0:
        raise ValueError(f"{name}: expected a non-empty sample of shape (..., n), got shape {tuple(t.shape)}")
    # A finite sum proves every entry finite (NaN/inf propagate); only then skip the elementwise check,
    # which costs a boolean pass over 10^6 entries. An overflowing sum falls back to the exact check.
    if not bool(torch.isfinite(t.detach().sum())):
        check_finite(t, name)
    return t


def _validate(x, y, a, b, p):
    """Boundary checks shared with the sliced distance: tensors, weights (None kept), balanced masses."""
    p = check_p(p)
    x = _check_samples(x, "x")
    y = _check_samples(y, "y")
    common_dtype_device(x=x, y=y)
    n, m = x.shape[-1], y.shape[-1]
    wa = check_weights(a, "a", n, x, size_name="n")
    wb = check_weights(b, "b", m, x, size_name="m")
    if a is not None or b is not None:
        wb = balance_masses(wa, wb)
    try:
        broadcast_shapes(x.shape[:-1], y.shape[:-1], wa.shape[:-1], wb.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"x, y, a, b: leading batch dimensions must broadcast, got x {tuple(x.shape)}, y {tuple(y.shape)}, "
            f"a {tuple(wa.shape)}, b {tuple(wb.shape)}"
        ) from None
    return x, y, (None if a is None else wa), (None if a is None and b is None else wb), p


def wasserstein_1d(x, y, a=None, b=None, p: float = 2) -> torch.Tensor:
    r"""Exact :math:`W_p` distance between two weighted samples on the real line, by sorting.

    .. math::

        W_p(\mu, \nu) = \Big(\int_0^1 |F^{-1}(t) - G^{-1}(t)|^p \, dt\Big)^{1/p},
        \qquad \mu = \sum_i a_i \delta_{x_i}, \quad \nu = \sum_j b_j \delta_{y_j},

    where :math:`F^{-1}, G^{-1}` are the quantile functions. Both samples are sorted, the two sequences of
    cumulative weights are merged into common quantile levels, both quantile functions are evaluated there
    (``searchsorted``) and the piecewise-constant integrand is summed. Equal sizes with uniform weights take a
    fast path: :math:`\frac1n \sum_i |x_{(i)} - y_{(i)}|^p`.

    Differentiable by autograd with respect to ``x`` and ``y`` (through the sorted values) and ``a``, ``b``
    (through the quantile levels); at :math:`W_p = 0` the gradient is 0, not NaN.

    Args:
        x: ``(..., n)`` sample values.
        y: ``(..., m)`` sample values; ``n != m`` is allowed.
        a: ``(..., n)`` nonnegative weights of ``x`` (zeros allowed), or None for uniform :math:`1/n`.
        b: ``(..., m)`` nonnegative weights of ``y``, or None for uniform :math:`1/m`. The total masses of
            ``a`` and ``b`` must agree (within :data:`monge._validation.MASS_RTOL`; ``b`` is then rescaled).
        p: real exponent, :math:`p \ge 1`.
        Leading batch dimensions of ``x, y, a, b`` broadcast.

    Returns:
        Tensor of the broadcast batch shape (0-d for unbatched inputs) holding :math:`W_p` itself (not its
        p-th power), with the dtype and device of ``x``.

    Raises:
        TypeError: mixed dtypes, non-float inputs, non-real ``p``.
        ValueError: empty samples, NaN/inf values, negative weights or zero mass, weight shapes not matching,
            batch shapes not broadcasting, total masses differing, ``p < 1``, mixed devices.

    Reference:
        Peyré & Cuturi, *Computational Optimal Transport* (2019), Remark 2.30; Santambrogio, *Optimal
        Transport for Applied Mathematicians* (2015), Prop. 2.17.

    Example:
        >>> import torch
        >>> x = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
        >>> round(float(wasserstein_1d(x, x + 3.0, p=2)), 4)
        3.0
        >>> a = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
        >>> y = torch.tensor([0.5], dtype=torch.float64)
        >>> round(float(wasserstein_1d(x, y, a=a, p=1)), 4)
        1.0
    """
    x, y, a, b, p = _validate(x, y, a, b, p)
    s = normalising_scale(x, y, p)
    if s is None:
        return _safe_root(_wasserstein_1d_pow(x, y, a, b, p), p)
    return _safe_root(_wasserstein_1d_pow(x / s, y / s, a, b, p), p) * s[..., 0]



def _staircase(ca, cb):
    """The north-west corner path of two sorted measures: ``(rows, cols, masses, j_step)`` of its ``n + m - 1``
    cells in sorted indices; ``j_step[k]`` says whether cell ``k + 1`` is one column (not one row) further."""
    n, m = ca.shape[-1], cb.shape[-1]
    batch = ca.shape[:-1]
    breaks = torch.cat([ca[..., :-1], cb[..., :-1]], -1)  # the row (column) changes after level ca_i (cb_j)
    # merge the two sorted runs (ties: row step first, a zero-mass cell between); numpy's stable sort on the CPU
    # finds the two runs and merges them in linear time (3x faster than torch.sort at 10^5)
    if breaks.device.type == "cpu":
        order = torch.from_numpy(np.argsort(breaks.numpy(), axis=-1, kind="stable"))
    else:
        order = torch.sort(breaks, stable=True).indices
    levels = breaks.gather(-1, order)
    j_step = order >= n - 1
    zero = torch.zeros((*batch, 1), dtype=torch.int64, device=ca.device)
    rows = torch.cat([zero, torch.cumsum(~j_step, -1)], -1)
    cols = torch.cat([zero, torch.cumsum(j_step, -1)], -1)
    edges = torch.cat([torch.zeros_like(ca[..., :1]), levels, ca[..., -1:]], -1)
    return rows, cols, torch.diff(edges, dim=-1).clamp_min_(0.0), j_step


def _path_potentials(c, j_step, rows, cols, n: int, m: int):
    r"""Potentials with :math:`f_i + g_j = c_k` on every cell of the path: a row step moves ``f``, a column step
    moves ``g`` by the change of cost (``f`` starts at ``c_0``, ``g`` at 0)."""
    delta = torch.diff(c, dim=-1)
    zero = torch.zeros_like(c[..., :1])
    f_path = c[..., :1] + torch.cat([zero, torch.cumsum(delta.masked_fill(j_step, 0.0), -1)], -1)
    g_path = torch.cat([zero, torch.cumsum(delta.masked_fill(~j_step, 0.0), -1)], -1)
    f = c.new_zeros((*c.shape[:-1], n)).scatter_(-1, rows, f_path)
    g = c.new_zeros((*c.shape[:-1], m)).scatter_(-1, cols, g_path)
    return f, g


def solve_1d(x, y, a=None, b=None, p: float = 2):
    r"""Exact OT on the real line with its plan and dual potentials: the monotone coupling, by sorting.

    .. math::
        \min_{P \in \Pi(a, b)} \sum_{ij} P_{ij} |x_i - y_j|^p
        = \max_{f_i + g_j \le |x_i - y_j|^p} \langle a, f\rangle + \langle b, g\rangle

    The plan is the north-west corner rule on the sorted samples (it couples equal quantile levels): a staircase
    of ``n + m - 1`` cells, a basic solution. Along it :math:`f_i + g_j = c_{ij}`; each row step moves :math:`f`
    and each column step moves :math:`g` by the change of cost, which for a convex cost :math:`h(x - y)` gives
    feasible potentials (the cost matrix of sorted samples is a Monge matrix), so the duality gap is 0 up to
    rounding. :math:`O((n + m)\log(n + m))`, batched, on any device.

    Args:
        x: ``(..., n)`` samples. y: ``(..., m)`` samples. a, b: weights (``None``: uniform), equal masses.
        p: cost exponent, :math:`p \ge 1`. Leading dimensions broadcast.

    Returns:
        :class:`~monge.results.ExactResult`: ``value`` = :math:`W_p^p` (:math:`\langle P, C\rangle`; differentiable
        w.r.t. ``x, y`` through the cost and w.r.t. ``a, b`` by the envelope theorem), ``f, g`` (in the input's
        order), the plan as triplets (``rows, cols, vals``; ``plan`` dense), ``convergence`` (marginal error and
        duality gap), and the problem on points ``x[..., None]`` so that ``transport`` / ``inverse_transport``
        give the monotone map :math:`G^{-1} \circ F`.

    Example:
        >>> import torch
        >>> res = solve_1d(torch.tensor([0.0, 2.0]), torch.tensor([3.0, 1.0, 5.0]), p=1)
        >>> round(float(res.value), 4), res.plan.mul(6).round().tolist()
        (2.0, [[1.0, 2.0, 0.0], [1.0, 0.0, 2.0]])
        >>> float(res.convergence.duality_gap.abs()) < 1e-6
        True
    """
    x, y, a, b, p = _validate(x, y, a, b, p)
    n, m = x.shape[-1], y.shape[-1]
    wa = x.new_full((n,), 1.0 / n) if a is None else a
    wb = x.new_full((m,), 1.0 / m) if b is None else b
    batch = broadcast_shapes(x.shape[:-1], y.shape[:-1], wa.shape[:-1], wb.shape[:-1])
    xe, ye = x.expand(*batch, n), y.expand(*batch, m)
    wa, wb = wa.expand(*batch, n), wb.expand(*batch, m)
    px, py = _sort(xe.detach(), True)[1], _sort(ye.detach(), True)[1]  # numpy's sort on the CPU
    rows_s, cols_s, vals, j_step = _staircase(torch.cumsum(wa.detach().gather(-1, px), -1),
                                              torch.cumsum(wb.detach().gather(-1, py), -1))
    rows, cols = px.gather(-1, rows_s), py.gather(-1, cols_s)
    cost = _abs_pow(xe.gather(-1, rows) - ye.gather(-1, cols), p)  # differentiable in x, y
    f_s, g_s = _path_potentials(cost.detach(), j_step, rows_s, cols_s, n, m)
    f = torch.empty_like(f_s).scatter_(-1, px, f_s)
    g = torch.empty_like(g_s).scatter_(-1, py, g_s)
    value = (vals * cost).sum(-1)
    if wa.requires_grad or wb.requires_grad:  # envelope: d value / d a = f (centred: mass-preserving directions)
        value = value + ((wa - wa.detach()) * (f - f.mean(-1, keepdim=True))).sum(-1) \
            + ((wb - wb.detach()) * (g - g.mean(-1, keepdim=True))).sum(-1)
    va, vb = wa.detach(), wb.detach()
    err = ((va.new_zeros(va.shape).scatter_add_(-1, rows, vals) - va).abs().sum(-1)
           + (vb.new_zeros(vb.shape).scatter_add_(-1, cols, vals) - vb).abs().sum(-1))
    gap = value.detach() - (va * f).sum(-1) - (vb * g).sum(-1)
    conv = Convergence.build(err, math.inf, 0, criterion="marginal_l1", duality_gap=gap)
    geom = PointCloud(xe.unsqueeze(-1), ye.unsqueeze(-1), cost="sqeuclidean" if p == 2 else "euclidean",
                      p=None if p == 2 else p, backend="dense")
    return ExactResult(value=value, f=f, g=g, convergence=conv, rows=rows, cols=cols, vals=vals, shape=(n, m),
                       problem=LinearProblem(geom, wa, wb))

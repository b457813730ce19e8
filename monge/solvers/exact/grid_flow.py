r"""Exact OT between histograms on a grid for a separable cost, as a (d+1)-partite min-cost flow.

.. math::
    \min_{P \in \Pi(a, b)} \sum_{x, y} P_{xy} \sum_{k=1}^d h_k^p |x_k - y_k|^p

A separable cost is a sum of one-axis moves, so the transport problem is the uncapacitated flow on d + 1 layers
of the N cells: layer k holds the cells :math:`(y_1, .., y_k, x_{k+1}, .., x_d)` and an arc of layer k - 1 ->
k changes coordinate k only, at cost :math:`h_k^p |x_k - y_k|^p`. Every source -> target path costs
:math:`c(x, y)` and every plan is such a path flow, so the optimal values agree (Auricchio et al. 2018), with
:math:`N \sum_k n_k` arcs instead of :math:`N^2` (64 x 64 images: 0.5 M arcs instead of 16.8 M). The network
simplex of ``csrc/min_cost_flow.cpp`` solves it (from the artificial basis: a basis of 1-D monotone plans was
measured 3x slower, 171k pivots against 54k at 64 x 64), the layer potentials give :math:`f, g` with :math:`f_x + g_y \le c(x, y)` for every pair (a path of arcs with
nonnegative reduced costs), and the flow splits back into a plan with at most 2N - 1 entries.
"""

from __future__ import annotations

import numpy as np
import torch

from ... import _core
from .sparse import pack_sparse

__all__ = ["solve_grid_flow"]


def _layer_arcs(shape, k, h_k, p):
    """Arcs layer k -> k + 1 (0-based axis k): (src, dst, cost) over cell indices, all pairs along axis k."""
    N = int(np.prod(shape))
    n_k = shape[k]
    stride = int(np.prod(shape[k + 1:]))
    z = np.arange(N, dtype=np.int64)
    xk = (z // stride) % n_k
    t = np.arange(n_k, dtype=np.int64)
    src = np.repeat(z, n_k)
    yk = np.tile(t, N)
    dst = src + (yk - np.repeat(xk, n_k)) * stride
    cost = (h_k * np.abs(np.repeat(xk, n_k) - yk).astype(np.float64)) ** p
    return src, dst, cost


def _seg_cumsum(node, mass):
    """Cumulative mass within each run of equal ``node`` (sorted), summed from each run's start (exact per run)."""
    start = np.r_[True, node[1:] != node[:-1]]
    run = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    pos = np.arange(node.size) - first[run]
    out = mass.copy()
    for r in range(1, int(pos.max()) + 1 if node.size else 0):
        k = np.flatnonzero(pos == r)
        out[k] += out[k - 1]
    return out


def _split(in_node, in_src, in_mass, out_node, out_dst, out_mass):
    """Matches, at every node, the incoming pieces (source cell, mass) with the outgoing arcs (next node, mass)
    in order (a north-west corner per node): returns the pieces (source cell, next node, mass)."""
    if in_node.size == 0 or out_node.size == 0:
        return in_src[:0], out_dst[:0], in_mass[:0]
    oi, oo = np.argsort(in_node, kind="stable"), np.argsort(out_node, kind="stable")
    ni, no = in_node[oi], out_node[oo]
    ci, co = _seg_cumsum(ni, in_mass[oi]), _seg_cumsum(no, out_mass[oo])
    last_i = np.r_[ni[1:] != ni[:-1], True]
    last_o = np.flatnonzero(np.r_[no[1:] != no[:-1], True])
    tot = np.zeros(int(max(ni.max(initial=-1), no.max(initial=-1))) + 1)
    tot[ni[last_i]] = ci[last_i]
    co[last_o] = tot[no[last_o]]  # the outgoing pieces end where the incoming ones do: no rounding leak
    node = np.r_[ni, no]
    pos = np.r_[ci, co]
    kind = np.r_[np.zeros(ni.size, np.int8), np.ones(no.size, np.int8)]
    idx = np.r_[oi, oo]
    order = np.lexsort((kind, pos, node))
    node, pos, kind, idx = node[order], pos[order], kind[order], idx[order]
    big = node.size
    k = np.arange(big)
    nxt_in = np.minimum.accumulate(np.where(kind == 0, k, big)[::-1])[::-1]
    nxt_out = np.minimum.accumulate(np.where(kind == 1, k, big)[::-1])[::-1]
    lo = np.r_[0.0, pos[:-1]]
    lo[np.r_[True, node[1:] != node[:-1]]] = 0.0
    mass = pos - lo
    ok = (mass > 0) & (nxt_in < big) & (nxt_out < big)
    ok[ok] &= node[nxt_in[ok]] == node[k[ok]]
    ok[ok] &= node[nxt_out[ok]] == node[k[ok]]
    return in_src[idx[nxt_in[ok]]], out_dst[idx[nxt_out[ok]]], mass[ok]


def _plan(flow, src, dst, N, d):
    """The source -> target plan carried by a (d+1)-layer path flow: (rows, cols, vals), coalesced."""
    pos = flow > 0
    fs, fd, fm = src[pos], dst[pos], flow[pos]
    layer = fs // N
    cur = fs[layer == 0]
    piece_src, piece_node, piece_mass = cur, fd[layer == 0], fm[layer == 0]
    for k in range(1, d):
        sel = layer == k
        piece_src, piece_node, piece_mass = _split(piece_node, piece_src, piece_mass, fs[sel], fd[sel], fm[sel])
    key = piece_src * N + (piece_node - d * N)
    uk, inv = np.unique(key, return_inverse=True)
    return uk // N, uk % N, np.bincount(inv, piece_mass, uk.size)


def _as64(w, name):
    w = np.asarray(w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor) else w, np.float64)
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError(f"{name}: expected finite nonnegative masses, got min {np.nanmin(w) if w.size else 0}")
    return w


def solve_grid_flow(a, b, *, spacing=None, p: float = 2, max_iter: int | None = None,
                    max_bytes: float = 4e9):
    r"""Exact OT between two histograms on the same grid for the separable cost
    :math:`\sum_k h_k^p |x_k - y_k|^p` (p = 2: squared Euclidean between cell centres), by the (d+1)-partite
    min-cost flow (see the module docstring): memory O(N sum_k n_k), never the N x N cost.

    Args:
        a, b: histograms of the same shape ``(n_1, ..., n_d)`` (numpy or torch), nonnegative, equal masses.
        spacing: cell sizes ``h_k``: ``d`` floats, one float for all axes, or None (``1 / n_k``: [0, 1)^d).
        p: power of the per-axis cost (any p > 0; 2 = squared Euclidean, 1 = L1).
        max_iter: pivot cap (None: none). max_bytes: refuse larger problems before allocating.

    Returns:
        :class:`~monge.results.ExactResult` over the flattened cells (row-major): plan with at most
        2N - 1 entries, potentials ``f, g (N,)`` with :math:`f_x + g_y \le c(x, y)` for all pairs, duality gap.

    Example:
        >>> import torch
        >>> a = torch.zeros(8, 8, dtype=torch.float64); a[2, 2] = 1
        >>> b = torch.zeros(8, 8, dtype=torch.float64); b[2, 6] = 1
        >>> float(solve_grid_flow(a, b).value)  # (4/8)^2
        0.25
    """
    like = a if isinstance(a, torch.Tensor) and a.is_floating_point() else None
    a64, b64 = _as64(a, "a"), _as64(b, "b")
    if a64.shape != b64.shape or a64.ndim < 1 or a64.size < 1:
        raise ValueError(f"a, b: expected two histograms of the same grid shape (n_1, ..., n_d), got {a64.shape} "
                         f"and {b64.shape}")
    shape, d, N = a64.shape, a64.ndim, a64.size
    h = [1.0 / k for k in shape] if spacing is None else (
        [float(s) for s in spacing] if isinstance(spacing, (tuple, list)) else [float(spacing)] * d)
    if len(h) != d or not all(s > 0 for s in h):
        raise ValueError(f"spacing: expected {d} positive cell sizes for a grid of shape {shape}, got {spacing!r}")
    if not p > 0:
        raise ValueError(f"p: expected a positive power, got {p!r}")
    sa, sb = a64.sum(), b64.sum()
    rtol = 1e-4 if like is not None and like.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-8
    if not abs(sa - sb) <= rtol * max(sa, sb) or sa <= 0:
        raise ValueError(f"a, b: expected equal positive masses, got {sa:.6g} and {sb:.6g}; normalise both")
    if max_iter is not None and (not isinstance(max_iter, int) or max_iter < 1):
        raise ValueError(f"max_iter: expected a positive int or None, got {max_iter!r}")
    n_arcs = N * sum(shape)
    need = 80.0 * n_arcs + 200.0 * N * (d + 1)
    if need > max_bytes:
        raise ValueError(f"a: a grid of shape {shape} needs {n_arcs} arcs, about {need / 1e9:.1f} GB (max_bytes = "
                         f"{max_bytes / 1e9:.1f} GB); pass a larger max_bytes or use a coarser grid")
    b64 = b64 * (sa / sb)
    parts = [_layer_arcs(shape, k, h[k], float(p)) for k in range(d)]
    src = np.concatenate([s + k * N for k, (s, _, _) in enumerate(parts)])
    dst = np.concatenate([t + (k + 1) * N for k, (_, t, _) in enumerate(parts)])
    cost = np.concatenate([c for _, _, c in parts])
    supply = np.r_[a64.ravel(), np.zeros((d - 1) * N), -b64.ravel()]
    flow, u, status, iters, art, _ = _core.min_cost_flow(src, dst, cost, supply, np.zeros(0), 0, 0.0,
                                                          max_iter or 0, np.zeros(0))
    f, g = u[:N], -u[d * N:]
    shift = 0.5 * (np.dot(a64.ravel(), f) - np.dot(b64.ravel(), g)) / sa
    rows, cols, vals = _plan(flow, src, dst, N, d)
    K = 2 * N - 1
    if rows.size > K:  # a basic flow splits into a forest (<= 2N - 1 pairs); only rounding dust can exceed it
        top = np.sort(np.argsort(vals)[-K:])
        rows, cols, vals = rows[top], cols[top], vals[top]
    value = float(np.dot(flow, cost))
    out = (rows, cols, vals, f - shift, g + shift, value, status, iters, art)
    return pack_sparse(out, a64.ravel(), b64.ravel(), (N, N), like)

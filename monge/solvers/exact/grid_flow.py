r"""Exact OT between histograms on a grid for a separable cost, as a (d+1)-partite min-cost flow.

.. math::
    \min_{P \in \Pi(a, b)} \sum_{x, y} P_{xy} \sum_{k=1}^d h_k^p |x_k - y_k|^p

A separable cost is a sum of one-axis moves, so the transport problem is the uncapacitated flow on d + 1 layers
of the N cells: layer k holds the cells :math:`(y_1, .., y_k, x_{k+1}, .., x_d)` and an arc of layer k - 1 ->
k changes coordinate k only, at cost :math:`h_k^p |x_k - y_k|^p`. Every source -> target path costs
:math:`c(x, y)` and every plan is such a path flow, so the optimal values agree (Auricchio et al. 2018), with
:math:`N \sum_k n_k` arcs instead of :math:`N^2` (64 x 64 images: 0.5 M arcs instead of 16.8 M). The network
simplex of ``csrc/min_cost_flow.cpp`` solves it coarse to fine: the grid of 2^d-cell blocks is solved first
(recursively), its plan is split over the children of its cells (a feasible fine flow, made a basis by cycle
cancelling) and its potentials set the level of each tree component; the fine simplex then runs on the arcs that
move at most ``_SHORT`` cells or carry that flow, and every other arc is priced under the optimum's potentials
(a min-plus check per layer, never stored): the ones that price negative join and the solve resumes, so the
result is the optimum over all arcs (64 x 64: 17k pivots over all levels instead of 54k from the artificial
basis, ~3x less CPU). The layer potentials give :math:`f, g` with :math:`f_x + g_y \le c(x, y)` for every pair (a
path of arcs with nonnegative reduced costs), and the flow splits back into a plan with at most 2N - 1 entries.
"""

from __future__ import annotations

import numpy as np
import torch

from ... import _core
from .sparse import pack_sparse

__all__ = ["solve_grid_flow"]


def _unique(x, inverse=False):
    """Sorted distinct values of an int array (and the index of each entry among them): by one sort (numpy's
    hash-based np.unique took ~0.1 s on 10^5 - 10^6 ids here)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]] if xs.size else np.zeros(0, bool)
    if not inverse:
        return xs[first]
    inv = np.empty(x.size, np.int64)
    inv[order] = np.cumsum(first) - 1
    return xs[first], inv


def _offsets(shape):
    """First arc id of every layer: layer k's arc from cell z to coordinate t along axis k (0-based) has id
    ``off[k] + z n_k + t``, ``off[k] = N (n_0 + .. + n_{k-1})``; N sum_k n_k arcs in all."""
    N = int(np.prod(shape))
    return np.r_[0, np.cumsum([N * n for n in shape])].astype(np.int64)


def _arcs_of(ids, shape, h, p):
    """(src, dst, cost) of the arcs ``ids`` (see ``_offsets``); node ``k N + z`` is cell z in layer k."""
    N, d = int(np.prod(shape)), len(shape)
    off = _offsets(shape)
    k = np.searchsorted(off, ids, side="right") - 1
    n_k = np.asarray(shape, np.int64)[k]
    stride = np.asarray([int(np.prod(shape[j + 1:])) for j in range(d)], np.int64)[k]
    z, t = (ids - off[k]) // n_k, (ids - off[k]) % n_k
    move = t - (z // stride) % n_k
    cost = (np.asarray(h, np.float64)[k] * np.abs(move)) ** p
    return k * N + z, (k + 1) * N + z + move * stride, cost


def _short_ids(shape, R):
    """Ids of the arcs that move at most R cells (all arcs when R >= max n_k)."""
    N, out, off = int(np.prod(shape)), [], _offsets(shape)
    z = np.arange(N, dtype=np.int64)
    for k, n_k in enumerate(shape):
        xk = (z // int(np.prod(shape[k + 1:]))) % n_k
        for step in range(-min(R, n_k - 1), min(R, n_k - 1) + 1):
            t = xk + step
            ok = (t >= 0) & (t < n_k)
            out.append(off[k] + z[ok] * n_k + t[ok])
    return np.sort(np.concatenate(out))  # distinct by construction


def _violations(u, shape, h, p, tol):
    """Ids of the arcs (all N sum_k n_k of them, never stored) whose reduced cost c - u_src + u_dst is below -tol:
    per layer a min-plus check over (n_k, n_k, N / n_k) blocks."""
    N, out, off = int(np.prod(shape)), [], _offsets(shape)
    for k, n_k in enumerate(shape):
        rest = shape[:k] + shape[k + 1:]
        us = np.moveaxis(u[k * N:(k + 1) * N].reshape(shape), k, 0).reshape(n_k, -1)
        ud = np.moveaxis(u[(k + 1) * N:(k + 2) * N].reshape(shape), k, 0).reshape(n_k, -1)
        x = np.arange(n_k)
        C = (h[k] * np.abs(x[:, None] - x[None]).astype(np.float64)) ** p
        xs, ts, r = np.nonzero(C[:, :, None] - us[:, None, :] + ud[None, :, :] < -tol)
        idx = list(np.unravel_index(r, rest)) if rest else []
        idx.insert(k, xs)
        out.append(off[k] + np.ravel_multi_index(tuple(idx), shape).astype(np.int64) * n_k + ts)
    return np.concatenate(out)


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
    uk, inv = _unique(key, inverse=True)
    return uk // N, uk % N, np.bincount(inv, piece_mass, uk.size)


def _path_ids(rows, cols, vals, shape):
    """The layered flow of a plan: mass ``vals`` from cell ``rows`` to cell ``cols`` moves along axis 0, then
    axis 1, ..., so through the cells (y_1, .., y_k, x_{k+1}, .., x_d); returns (arc ids, flow), coalesced."""
    d, off = len(shape), _offsets(shape)
    z, y = np.array(np.unravel_index(rows, shape)), np.array(np.unravel_index(cols, shape))
    idx = []
    for k in range(d):
        idx.append(off[k] + np.ravel_multi_index(tuple(z), shape) * shape[k] + y[k])
        z[k] = y[k]
    ids, inv = _unique(np.concatenate(idx), inverse=True)
    return ids, np.bincount(inv, np.tile(vals, d), ids.size)


def _prolong(rows, cols, vals, a, b, parent):
    r"""A feasible fine plan from a coarse plan (coarse cell = ``parent`` of a fine cell): each coarse entry
    :math:`(I, J, m)` takes its mass from the children of I and delivers it to the children of J, matched by
    north-west corners (at every I over its entries, at every J over its entries, then within every entry)."""
    fi, fj, e = np.flatnonzero(a > 0), np.flatnonzero(b > 0), np.arange(rows.size)
    i1, e1, m1 = _split(parent[fi], fi, a[fi], rows, e, vals)
    e2, j2, m2 = _split(cols, e, vals, parent[fj], fj, b[fj])
    return _split(e1, i1, m1, e2, j2, m2)


# Coarse-to-fine start: grids of at least this many cells start from the optimum of the grid with blocks of 2
# cells per axis (64 x 64 images: 54k pivots from the artificial basis; 13k at 64 x 64 plus 3k on the coarser
# levels), on the arcs that move at most _SHORT cells or carry the prolonged flow, until every arc prices.
_WARM_MIN_CELLS = 256
_SHORT = 8


def _coarse_start(a, b, shape, h, p):
    """Solves the grid of 2^d-cell blocks and prolongs its optimum: (arc ids, feasible flow on them, potentials
    pi0 = -u of every fine node: its block's) or None when that solve stopped early."""
    d, N = len(shape), a.size
    cshape = tuple((n + 1) // 2 for n in shape)
    parent = np.ravel_multi_index(tuple(np.indices(shape).reshape(d, -1) // 2), cshape)
    Nc = int(np.prod(cshape))
    ac, bc = np.bincount(parent, a, Nc), np.bincount(parent, b, Nc)
    cflow, cu, cstatus, citers, _, (cs, cd, _) = _solve_layers(ac, bc * (ac.sum() / bc.sum()), cshape,
                                                               [2 * x for x in h], p, 0)
    if cstatus != 0:
        return None, citers
    ids, flow = _path_ids(*_prolong(*_plan(cflow, cs, cd, Nc, d), a, b, parent), shape)
    return (ids, flow, -cu.reshape(d + 1, Nc)[:, parent].ravel()), citers


def _solve_layers(a, b, shape, h, p, max_iter):
    """The layered flow's simplex. Large grids start from the prolonged coarse optimum (``_coarse_start``; made
    basic in C++ by cycle cancelling) on a restricted arc set (short arcs and the start's support); arcs that
    price negative under the optimum's potentials (checked over all arcs, ``_violations``) join it and the solve
    resumes from there, until none does. Returns (flow, u, status, n_iter, artificial flow, (src, dst, cost) of
    the arcs the flow is on); n_iter sums the pivots of every level and round."""
    N, d = a.size, len(shape)
    supply = np.r_[a, np.zeros((d - 1) * N), -b]
    n_arcs = int(_offsets(shape)[-1])
    start, iters = (None, 0)
    if N >= _WARM_MIN_CELLS and 2 * max(shape) > _SHORT:
        start, iters = _coarse_start(a, b, shape, h, p)
    if start is None:
        keep, flow0, pi0 = np.arange(n_arcs, dtype=np.int64), np.zeros(0), np.zeros(0)
    else:
        keep = _unique(np.r_[_short_ids(shape, _SHORT), start[0]])
        flow0, pi0 = np.zeros(keep.size), start[2]
        flow0[np.searchsorted(keep, start[0])] = start[1]
    tol = 1e-13 * max((hk * (n - 1)) ** p for hk, n in zip(h, shape))
    for rnd in range(8):
        arcs = _arcs_of(keep, shape, h, p)
        flow, u, status, it, art, _ = _core.min_cost_flow(*arcs, supply, pi0, 0, 0.0, max_iter, flow0)
        iters += it
        if keep.size == n_arcs or status != 0:
            break
        bad = _violations(u, shape, h, p, tol) if art <= 1e-9 * a.sum() else np.arange(n_arcs, dtype=np.int64)
        if bad.size == 0:
            break
        pos = flow > 0
        new = _unique(np.r_[keep, bad])
        flow0, pi0 = np.zeros(new.size), -u
        flow0[np.searchsorted(new, keep[pos])] = flow[pos]
        keep = new if rnd < 6 else np.arange(n_arcs, dtype=np.int64)  # the last round prices every arc
    return flow, u, status, iters, art, arcs


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
    flow, u, status, iters, art, (src, dst, cost) = _solve_layers(a64.ravel(), b64.ravel(), shape, h, float(p),
                                                                   max_iter or 0)
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

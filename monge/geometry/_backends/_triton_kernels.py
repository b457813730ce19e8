r"""Triton kernels of the fused soft-min (imported only by :mod:`.triton_softmin`, and only when triton is used).

One program reduces a block of ``BM`` rows of ``x`` against every tile of ``BN`` points of ``y`` (or, in the
column backward, a block of ``y`` against every tile of ``x``); a cost tile lives only in registers:

- ``COST == 0``: :math:`s\,\|x - y\|^2 = s(\|x\|^2 + \|y\|^2 - 2\langle x, y\rangle)`, one ``tl.dot`` per tile;
- ``COST == 1``: :math:`\|x - y\|^p = (\|x\|^2 + \|y\|^2 - 2\langle x, y\rangle)^{p/2}`;
- ``COST == 2``: :math:`1 - \langle x, y\rangle` on points normalised by the caller (the cosine cost).

The forward pass keeps an online log-sum-exp per row (running max ``mx`` and a float64 running sum ``s``
rescaled by ``exp(mx_old - mx_new)`` when the max grows). The backward passes recompute the tiles with the
softmax weights :math:`P_{ij} = e^{(h_j - C_{ij} + \mathrm{out}_i)/\varepsilon}`; with
:math:`W_{ij} = u_i P_{ij}\,\partial c/\partial\langle\cdot\rangle` the point gradients are
:math:`x_i \sum_j W_{ij} - (W y)_i` (distance costs) or :math:`-(W y)_i` (cosine), by one more ``tl.dot``.
``PREC`` is the ``tl.dot`` input precision: ``"ieee"`` (float32 products, the default) or ``"tf32"``.
"""

from __future__ import annotations

import os

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - importable without triton (doctest collection): plain functions
    triton = tl = None

__all__ = ["softmin_fwd", "softmin_bwd_rows", "softmin_bwd_cols", "INTERPRETED"]

#: whether the kernels below were decorated for Triton's interpreter (read once, when they are decorated)
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
_jit = triton.jit if triton is not None else (lambda fn: fn)


@_jit
def _cost_tile(xt, yt, x2, y2, scale, p, COST: tl.constexpr, PREC: tl.constexpr):
    """The cost tile ``(BM, BN)`` and its derivative in the inner variable (``d2`` or ``<x, y>``)."""
    xy = tl.dot(xt, tl.trans(yt), input_precision=PREC)
    if COST == 2:
        c = tl.minimum(tl.maximum(1.0 - xy, 0.0), 2.0)
        dc = tl.full(c.shape, 1.0, tl.float32)
    else:
        d2 = tl.maximum(x2[:, None] + y2[None, :] - 2.0 * xy, 0.0)
        if COST == 0:
            c = scale * d2
            dc = tl.full(c.shape, 2.0, tl.float32) * scale
        else:
            pos = d2 > 0.0
            lg = tl.log(tl.where(pos, d2, 1.0))
            c = tl.where(pos, tl.exp(lg * (0.5 * p)), 0.0)
            dc = tl.where(pos, p * tl.exp(lg * (0.5 * p - 1.0)), 0.0)  # 2 d(d2^(p/2))/d(d2)
    return c, dc


@_jit
def softmin_fwd(X, Y, H, OUT, n, m, d, sxb, syb, shb, scale, p, inv_eps, eps,
                COST: tl.constexpr, PREC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    """``OUT[b, i] = -eps log sum_j exp((H[b, j] - C_ij) / eps)`` for the rows of one block."""
    pid, b = tl.program_id(0), tl.program_id(1)
    rows = pid * BM + tl.arange(0, BM)
    ks = tl.arange(0, BD)
    rmask, kmask = rows < n, ks < d
    xt = tl.load(X + b * sxb + rows[:, None] * d + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
    x2 = tl.sum(xt * xt, 1)
    mx = tl.full([BM], float("-inf"), tl.float32)
    s = tl.zeros([BM], tl.float64)
    for j0 in range(0, m, BN):
        cols = j0 + tl.arange(0, BN)
        cmask = cols < m
        yt = tl.load(Y + b * syb + cols[:, None] * d + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0)
        hj = tl.load(H + b * shb + cols, mask=cmask, other=float("-inf"))
        c, dc = _cost_tile(xt, yt, x2, tl.sum(yt * yt, 1), scale, p, COST, PREC)
        z = (hj[None, :] - c) * inv_eps
        m_new = tl.maximum(mx, tl.max(z, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(mx - m_safe)
        tile = tl.sum(tl.exp(z - m_safe[:, None]), 1)
        s = s * alpha.to(tl.float64) + tile.to(tl.float64)
        mx = m_new
    m_safe = tl.where(mx == float("-inf"), 0.0, mx)
    sf = s.to(tl.float32)
    out = tl.where(sf > 0.0, -eps * (m_safe + tl.log(tl.where(sf > 0.0, sf, 1.0))), float("inf"))
    tl.store(OUT + b * n + rows, out, mask=rmask)


@_jit
def _weights(xt, yt, x2, y2, hj, out, u, scale, p, inv_eps, COST: tl.constexpr, PREC: tl.constexpr):
    """The tile of ``u_i P_ij`` and of ``W_ij = u_i P_ij dc_ij`` (``out = +inf``: a row with no mass, ``P = 0``)."""
    c, dc = _cost_tile(xt, yt, x2, y2, scale, p, COST, PREC)
    out = tl.where(out == float("inf"), 0.0, out)
    up = tl.exp((hj[None, :] - c + out[:, None]) * inv_eps) * u[:, None]
    return up, up * dc


@_jit
def _point_grad(pts, acc, wsum, COST: tl.constexpr):
    """``pts * sum W - W @ other`` for the distance costs, ``-W @ other`` for the cosine cost."""
    if COST == 2:
        g = -acc
    else:
        g = pts * wsum[:, None] - acc
    return g


@_jit
def softmin_bwd_rows(X, Y, H, OUT, U, GX, n, m, d, sxb, syb, shb, scale, p, inv_eps,
                     COST: tl.constexpr, PREC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     BD: tl.constexpr):
    """``GX[b, i] = sum_j u_i P_ij grad_x c(x_i, y_j)``, the tiles of ``C`` recomputed."""
    pid, b = tl.program_id(0), tl.program_id(1)
    rows = pid * BM + tl.arange(0, BM)
    ks = tl.arange(0, BD)
    rmask, kmask = rows < n, ks < d
    xmask = rmask[:, None] & kmask[None, :]
    xt = tl.load(X + b * sxb + rows[:, None] * d + ks[None, :], mask=xmask, other=0.0)
    x2 = tl.sum(xt * xt, 1)
    out = tl.load(OUT + b * n + rows, mask=rmask, other=0.0)
    u = tl.load(U + b * n + rows, mask=rmask, other=0.0)
    acc = tl.zeros([BM, BD], tl.float32)
    wsum = tl.zeros([BM], tl.float32)
    for j0 in range(0, m, BN):
        cols = j0 + tl.arange(0, BN)
        cmask = cols < m
        yt = tl.load(Y + b * syb + cols[:, None] * d + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0)
        hj = tl.load(H + b * shb + cols, mask=cmask, other=float("-inf"))
        up, w = _weights(xt, yt, x2, tl.sum(yt * yt, 1), hj, out, u, scale, p, inv_eps, COST, PREC)
        wsum += tl.sum(w, 1)
        acc += tl.dot(w, yt, input_precision=PREC)
    tl.store(GX + b * n * d + rows[:, None] * d + ks[None, :], _point_grad(xt, acc, wsum, COST), mask=xmask)


@_jit
def softmin_bwd_cols(X, Y, H, OUT, U, GY, GH, n, m, d, sxb, syb, shb, scale, p, inv_eps,
                     COST: tl.constexpr, PREC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     BD: tl.constexpr):
    """``GY[b, j] = sum_i u_i P_ij grad_y c(x_i, y_j)`` and ``GH[b, j] = -sum_i u_i P_ij``."""
    pid, b = tl.program_id(0), tl.program_id(1)
    cols = pid * BN + tl.arange(0, BN)
    ks = tl.arange(0, BD)
    cmask, kmask = cols < m, ks < d
    ymask = cmask[:, None] & kmask[None, :]
    yt = tl.load(Y + b * syb + cols[:, None] * d + ks[None, :], mask=ymask, other=0.0)
    y2 = tl.sum(yt * yt, 1)
    hj = tl.load(H + b * shb + cols, mask=cmask, other=float("-inf"))
    acc = tl.zeros([BN, BD], tl.float32)
    wsum = tl.zeros([BN], tl.float32)
    psum = tl.zeros([BN], tl.float32)
    for i0 in range(0, n, BM):
        rows = i0 + tl.arange(0, BM)
        rmask = rows < n
        xt = tl.load(X + b * sxb + rows[:, None] * d + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        out = tl.load(OUT + b * n + rows, mask=rmask, other=0.0)
        u = tl.load(U + b * n + rows, mask=rmask, other=0.0)
        up, w = _weights(xt, yt, tl.sum(xt * xt, 1), y2, hj, out, u, scale, p, inv_eps, COST, PREC)
        psum += tl.sum(up, 0)
        wsum += tl.sum(w, 0)
        acc += tl.dot(tl.trans(w), xt, input_precision=PREC)
    tl.store(GY + b * m * d + cols[:, None] * d + ks[None, :], _point_grad(yt, acc, wsum, COST), mask=ymask)
    tl.store(GH + b * m + cols, -psum, mask=cmask)

r"""The conditional-gradient iterate and what the loop measures on it, for dense and for low-rank costs.

A step moves the plan towards a vertex ``Q`` of the transport polytope (sparse: at most ``n + m - 1`` entries,
given as triplets ``(rows, cols, vals)``). With dense costs the state keeps :math:`X = h_1(C^x) P h_2(C^y)^\top`
``(n, m)`` and updates it linearly. With low-rank costs :math:`h_1(C^x) = U_x V_x^\top`, :math:`h_2(C^y) = U_y V_y^\top`
it keeps two ``r x r`` cores instead,

.. math::
    K(P) = V_x^\top P V_y, \qquad S(P) = U_x^\top P U_y, \qquad \langle X(P), P\rangle = \langle K(P), S(P)\rangle,

so that the objective, the line-search curvature and :math:`\langle \nabla F(P), P\rangle` cost O(r^2) per step, a
vertex's cores O((n + m) r^2), and the only ``n x m`` passes are the gradient (one matrix product) and the plan
update.
"""

from __future__ import annotations

import torch

from ...problems.quadratic import LowRank
from .common import Objective, dot

__all__ = ["make_state", "DenseState", "LowRankState", "densify"]


def densify(Q, n: int, m: int, like: torch.Tensor) -> torch.Tensor:
    """Dense ``(n, m)`` plan from triplets ``(rows, cols, vals)``."""
    rows, cols, vals = Q
    return like.new_zeros(n, m).index_put_((rows, cols), vals, accumulate=True)


def make_state(obj: Objective, P: torch.Tensor | None, vertex=None):
    """The state for the objective's costs, from the plan ``P`` (``None``: the product ``a b^T``) or from a vertex
    given as triplets ``(rows, cols, vals)`` (no ``(n, m)`` plan for low-rank costs)."""
    both = isinstance(obj.sx.H, LowRank) and isinstance(obj.sy.H, LowRank)
    if both:
        return LowRankState(obj, P, vertex)
    if vertex is not None:
        P = densify(vertex, obj.a.shape[-1], obj.b.shape[-1], obj.a)
    return DenseState(obj, torch.outer(obj.a, obj.b) if P is None else P)


class DenseState:
    """Plan ``P`` and ``X = cross(P)``, both dense."""

    def __init__(self, obj: Objective, P: torch.Tensor):
        self.obj, self.P = obj, P
        self.X = obj.cross(P)

    def grad(self) -> torch.Tensor:
        return self.obj.grad(self.X)

    def terms(self):
        return self.obj.terms(self.P, self.X)

    def value(self) -> float:
        return float(self.obj.value(*self.terms()))

    def curvature(self, Q) -> float:
        r""":math:`\alpha E(Q - P)` (the coefficient of ``t^2``); remembers the direction for :meth:`step`."""
        Qd = densify(Q, *self.P.shape, self.P)
        self.XD = self.obj.cross(Qd).sub_(self.X)
        self.D = Qd.sub_(self.P)
        return -self.obj.alpha * float(dot(self.XD, self.D))

    def step(self, t: float) -> None:
        self.P.add_(self.D, alpha=t)
        self.X.add_(self.XD, alpha=t)

    def dot_plan(self, A: torch.Tensor) -> torch.Tensor:
        return dot(A, self.P)

    def triplets(self):
        rows, cols = self.P.nonzero(as_tuple=True)
        return rows, cols, self.P[rows, cols]

    def dense(self) -> torch.Tensor:
        return self.P


class LowRankState:
    r"""Plan held as :math:`P = s P_0 + \sum_k w_k Q_k` (the start, scaled, plus sparse vertices, coalesced into one set
    of triplets); ``cross(P)`` held by its cores ``K(P)``, ``S(P)`` (``r x r``). No ``(n, m)`` plan is ever formed:
    the product start ``a b^T`` is kept as its marginals, and once a step reaches its vertex (``t = 1``, every step
    of a concave objective) the start is dropped and the plan is the vertex, ``n + m - 1`` triplets at most.
    The gradient is written into one reused ``(n, m)`` buffer."""

    def __init__(self, obj: Objective, P0: torch.Tensor | None, vertex=None):
        self.obj, self.P0, self.s = obj, P0, 1.0
        self.Hx, self.Hy = obj.sx.H, obj.sy.H
        self.part = tuple(obj.a.new_zeros(0, dtype=t) for t in (torch.int64, torch.int64, obj.a.dtype))
        self.G = None
        if vertex is not None:  # a sparse start: the plan is its triplets alone
            self.s, self.part = 0.0, vertex
            self.K, self.S = self._cores(vertex)
        elif P0 is None:  # the product a b^T: rank one, so are its cores
            self.K = torch.outer(self.Hx.V.mT @ obj.a, self.Hy.V.mT @ obj.b)
            self.S = torch.outer(self.Hx.U.mT @ obj.a, self.Hy.U.mT @ obj.b)
        else:
            self.K, self.S = self.Hx.V.mT @ P0 @ self.Hy.V, self.Hx.U.mT @ P0 @ self.Hy.U

    def grad(self) -> torch.Tensor:
        r""":math:`\nabla F(P) = 2\alpha(c_1 1^\top + 1 c_2^\top - U_x K U_y^\top) + (1 - \alpha) M`, one product, in
        the state's buffer (overwritten by the next call)."""
        o = self.obj
        if self.G is None:
            self.G = o.a.new_empty(o.a.shape[-1], o.b.shape[-1])
        # one product of rank r + 2 writes all of it: [U_x, c_1, 1] [-U_y K^T, 1, c_2]^T
        left = torch.cat([self.Hx.U, o.c1.unsqueeze(-1), torch.ones_like(o.c1).unsqueeze(-1)], -1).mul_(2 * o.alpha)
        right = torch.cat([-(self.Hy.U @ self.K.mT), torch.ones_like(o.c2).unsqueeze(-1), o.c2.unsqueeze(-1)], -1)
        G = torch.mm(left, right.mT, out=self.G)
        return G if o.M is None or o.alpha == 1.0 else G.add_(o.M, alpha=1.0 - o.alpha)

    def dot_plan(self, A: torch.Tensor) -> torch.Tensor:
        """``<A, P>`` for a dense ``(n, m)`` matrix ``A``."""
        rows, cols, vals = self.part
        out = A[rows, cols] @ vals
        if self.s > 0.0:
            o = self.obj
            out = out + self.s * (o.a @ (A @ o.b) if self.P0 is None else dot(A, self.P0))
        return out

    def terms(self):
        o = self.obj
        quad = o.a @ o.c1 + o.b @ o.c2 - dot(self.K, self.S)
        lin = self.dot_plan(o.M) if o.M is not None else quad.new_zeros(())
        return lin, quad

    def value(self) -> float:
        return float(self.obj.value(*self.terms()))

    def _cores(self, Q):
        rows, cols, vals = Q
        wx, wy = self.Hx.V[rows] * vals.unsqueeze(-1), self.Hx.U[rows] * vals.unsqueeze(-1)
        return wx.mT @ self.Hy.V[cols], wy.mT @ self.Hy.U[cols]

    def curvature(self, Q) -> float:
        self.Q = Q
        KQ, SQ = self._cores(Q)
        self.KD, self.SD = KQ - self.K, SQ - self.S
        return -self.obj.alpha * float(dot(self.KD, self.SD))

    def step(self, t: float) -> None:
        rows, cols, vals = self.Q
        keep = vals > 0
        Q = rows[keep], cols[keep], vals[keep]
        if t >= 1.0:
            self.s, self.P0, self.part = 0.0, None, Q
        else:
            self.s *= 1.0 - t
            (r0, c0, v0), m = self.part, self.obj.b.shape[-1]
            vals = torch.cat([v0 * (1.0 - t), Q[2] * t])
            self.part = _coalesce(torch.cat([r0, Q[0]]), torch.cat([c0, Q[1]]), vals, m)
        self.K, self.S = self.K + t * self.KD, self.S + t * self.SD

    def triplets(self):
        """The plan as ``(rows, cols, vals)`` (all its nonzeros; dense support while the start is still in it)."""
        if self.s == 0.0:
            return self.part
        P = self.dense()
        rows, cols = P.nonzero(as_tuple=True)
        return rows, cols, P[rows, cols]

    def dense(self) -> torch.Tensor:
        o = self.obj
        P0 = torch.outer(o.a, o.b) if self.P0 is None else self.P0
        return densify(self.part, *P0.shape, P0).add_(P0, alpha=self.s)


def _coalesce(rows, cols, vals, m: int):
    """Triplets with duplicate entries summed."""
    key, inv = torch.unique(rows * m + cols, return_inverse=True)
    return key // m, key % m, vals.new_zeros(len(key)).index_add_(0, inv, vals)

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


def make_state(obj: Objective, P: torch.Tensor):
    both = isinstance(obj.sx.H, LowRank) and isinstance(obj.sy.H, LowRank)
    return LowRankState(obj, P) if both else DenseState(obj, P)


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


class LowRankState:
    """Plan ``P`` dense; ``cross(P)`` held by its cores ``K(P)``, ``S(P)`` (``r x r``)."""

    def __init__(self, obj: Objective, P: torch.Tensor):
        self.obj, self.P = obj, P
        self.Hx, self.Hy = obj.sx.H, obj.sy.H
        self.K, self.S = self.Hx.V.mT @ P @ self.Hy.V, self.Hx.U.mT @ P @ self.Hy.U

    def grad(self) -> torch.Tensor:
        r""":math:`\nabla F(P) = 2\alpha(c_1 1^\top + 1 c_2^\top - U_x K U_y^\top) + (1 - \alpha) M`, one product."""
        o = self.obj
        base = torch.add(o.c1.unsqueeze(-1), o.c2.unsqueeze(-2))
        G = base.addmm_(self.Hx.U, self.K @ self.Hy.U.mT, alpha=-1.0).mul_(2 * o.alpha)  # one (n, m) buffer
        return G if o.M is None or o.alpha == 1.0 else G.add_(o.M, alpha=1.0 - o.alpha)

    def terms(self):
        o = self.obj
        quad = o.a @ o.c1 + o.b @ o.c2 - dot(self.K, self.S)
        lin = dot(o.M, self.P) if o.M is not None else quad.new_zeros(())
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
        self.P.mul_(1.0 - t).index_put_((rows, cols), t * vals, accumulate=True)
        self.K, self.S = self.K + t * self.KD, self.S + t * self.SD

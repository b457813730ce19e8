r"""Entropic GW steps on low-rank (squared-Euclidean) intra-domain costs without any ``n x n`` or stored ``n x m``
cost: the linearised cost is itself a squared Euclidean cost between two small point clouds, plus row and column
shifts.

With :math:`H_x = U_x V_x^\top` and :math:`H_y = U_y V_y^\top` (ranks ``d_x + 2``, ``d_y + 2``) the gradient of the
square-loss GW term at a plan ``P`` is

.. math::
    G_{ij} = 2\alpha\big(c^1_i + c^2_j - \langle A_i, B_j\rangle\big), \qquad A = U_x (V_x^\top P V_y),\ B = U_y,

a bilinear form of rank ``d_y + 2``. With :math:`p = \sqrt\alpha\,\lambda A - t`, :math:`q = \sqrt\alpha\,B/\lambda - t`
(any ``lambda > 0``, any translation ``t``: chosen to balance and centre the two clouds)

.. math::
    G_{ij} = \|p_i - q_j\|^2 + r_i + s_j, \qquad r_i = 2\alpha c^1_i - \alpha\lambda^2\|A_i\|^2, \quad
    s_j = 2\alpha c^2_j - \alpha\|B_j\|^2/\lambda^2,

so the inner Sinkhorn runs on :class:`LinearisedCost`, the lazy soft-min of a point cloud in dimension ``d_y + 2``
shifted by ``r`` and ``s`` (O(n + m) memory per soft-min, the compiled kernel on the CPU). The plan of a step is
held as its potentials (:class:`LazyPlan`); what the next step needs from it (the ``r x r`` core
:math:`V_x^\top P V_y`, the marginals, the l1 change to the previous plan) is reduced over row tiles. The returned
plan is the only ``n x m`` array, built once at the end.
"""

from __future__ import annotations

import math

import torch

from ...geometry.base import Geometry
from ...geometry.dense import DenseCost
from ...geometry.pointcloud import PointCloud
from ...problems.quadratic import LowRank

__all__ = ["LinearisedCost", "LazyPlan", "ProductPlan", "DenseSteps", "LazySteps", "TILE", "scan"]

#: Entries per row tile of the reductions over a lazy plan (32 MB in float64).
TILE = 1 << 22


class LinearisedCost(Geometry):
    r"""The cost :math:`G_{ij} = \|p_i - q_j\|^2 + r_i + s_j` between ``p (n, k)`` and ``q (m, k)``, never stored.

    Example:
        >>> import torch
        >>> p, q = torch.rand(4, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64)
        >>> r, s = torch.rand(4, dtype=torch.float64), torch.rand(5, dtype=torch.float64)
        >>> geom, h = LinearisedCost(p, q, r, s), torch.rand(5, dtype=torch.float64)
        >>> dense = -0.1 * torch.logsumexp((h - geom.cost()) / 0.1, 1)
        >>> bool(torch.allclose(geom.softmin(h, 0.1, 1), dense))
        True
    """

    def __init__(self, p: torch.Tensor, q: torch.Tensor, r: torch.Tensor, s: torch.Tensor):
        self.cloud = PointCloud(p, q, backend="lazy")
        self.p, self.q, self.r, self.s = p, q, r, s

    def softmin(self, h, eps, dim):
        if dim == 1:
            return self.r + self.cloud.softmin(h - self.s, eps, 1)
        return self.s + self.cloud.softmin(h - self.r, eps, 0)

    @property
    def shape(self):
        return self.cloud.shape

    @property
    def batch_shape(self):
        return torch.Size([])

    @property
    def dtype(self):
        return self.p.dtype

    @property
    def device(self):
        return self.p.device

    def like(self):
        return self.p

    def detach(self):
        return self

    def cost(self):
        return self.cloud.cost() + self.r.unsqueeze(-1) + self.s.unsqueeze(-2)

    def cost_scale(self) -> float:
        spread = lambda t: float(t.max() - t.min())  # noqa: E731
        return self.cloud.cost_scale() + spread(self.r) + spread(self.s)


class LazyPlan:
    r"""The plan :math:`P_{ij} = \exp((u_i + v_j - G_{ij})/\varepsilon)` of a :class:`LinearisedCost`, by row tiles."""

    def __init__(self, geom: LinearisedCost, u: torch.Tensor, v: torch.Tensor, eps: float):
        p, q = geom.p, geom.q
        self.p, self.q, self.eps = p, q, eps
        # log P = (u'_i + v'_j + 2 <p_i, q_j>) / eps
        self.u = u - geom.r - (p * p).sum(-1)
        self.v = v - geom.s - (q * q).sum(-1)
        n, m = geom.shape
        self.shape, self.rows = (n, m), max(1, min(n, TILE // max(m, 1)))

    def tile(self, i0: int, i1: int) -> torch.Tensor:
        logits = torch.addmm(self.u[i0:i1].unsqueeze(-1) + self.v.unsqueeze(-2), self.p[i0:i1], self.q.mT, alpha=2.0)
        return logits.div_(self.eps).exp_()

    def dense(self) -> torch.Tensor:
        n = self.shape[0]
        P = self.p.new_empty(self.shape)
        for i0 in range(0, n, self.rows):
            P[i0:i0 + self.rows] = self.tile(i0, min(i0 + self.rows, n))
        return P


def _tile(P, i0: int, i1: int) -> torch.Tensor:
    return P[i0:i1] if isinstance(P, torch.Tensor) else P.tile(i0, i1)


def scan(P, old, Vx: torch.Tensor, Vy: torch.Tensor, rows: int):
    """One pass over the row tiles of ``P``: ``(Vx^T P Vy, P 1, P^T 1, ||P - old||_1)`` (``old=None``: 0)."""
    n, m = Vx.shape[0], Vy.shape[0]
    core = Vx.new_zeros(Vx.shape[1], Vy.shape[1])
    r, c, diff = Vx.new_zeros(n), Vx.new_zeros(m), 0.0
    for i0 in range(0, n, rows):
        i1 = min(i0 + rows, n)
        T = _tile(P, i0, i1)
        core += Vx[i0:i1].mT @ (T @ Vy)
        r[i0:i1] = T.sum(-1)
        c += T.sum(-2)
        if old is not None:
            diff += float((T - _tile(old, i0, i1)).abs().sum())
    return core, r, c, diff


class DenseSteps:
    """The mirror-descent steps on dense linearised costs (:class:`~monge.geometry.DenseCost`), one problem or a
    batch (plans ``(..., n, m)``, an objective stacked by :meth:`~monge.solvers.gromov.common.Objective.stack`)."""

    lazy = False

    def __init__(self, obj, unbalanced: bool):
        self.obj, self.unbalanced = obj, unbalanced

    def geometry(self, P, obj=None):
        """The linearised cost at ``P`` (``obj``: the objective of these elements, default the steps' own)."""
        obj = self.obj if obj is None else obj
        return DenseCost(obj.grad(obj.cross(P), P if self.unbalanced else None))

    def plan(self, res, geom, P_old):
        """The new plan and its l1 change per element."""
        P = res.plan
        return P, (P - P_old).abs().sum((-2, -1))

    def dense(self, P):
        return P


class LazySteps:
    """The steps on :class:`LinearisedCost` with plans held as :class:`LazyPlan` (square loss, low-rank sides)."""

    lazy = True

    def __init__(self, obj, unbalanced: bool):
        self.obj, self.unbalanced = obj, unbalanced
        Hx, Hy = obj.sx.H, obj.sy.H
        self.Ux, self.Vx, self.B, self.Vy = Hx.U, Hx.V, Hy.U, Hy.V
        self.summary = None  # (core, P 1, P^T 1) of the current plan

    @staticmethod
    def applies(obj) -> bool:
        return (isinstance(obj.sx.H, LowRank) and isinstance(obj.sy.H, LowRank)
                and (obj.M is None or obj.alpha == 1.0))

    def _summary(self, P):
        if self.summary is None:  # the starting plan (dense: the product or the user's)
            n, m = P.shape
            core, r, c, _ = scan(P, None, self.Vx, self.Vy, max(1, min(n, TILE // max(m, 1))))
            self.summary = (core, r, c)
        return self.summary

    def geometry(self, P, obj=None) -> LinearisedCost:
        core, r, c = self._summary(P)
        o, al = self.obj, self.obj.alpha
        c1, c2 = (o.sx.fvec(r), o.sy.fvec(c)) if self.unbalanced else (o.c1, o.c2)
        A = self.Ux @ core
        na, nb = float(A.square().sum(-1).mean()), float(self.B.square().sum(-1).mean())
        lam = (nb / na) ** 0.25 if na > 0 and nb > 0 else 1.0
        p, q = math.sqrt(al) * lam * A, math.sqrt(al) / lam * self.B
        t = 0.5 * (p.mean(0) + q.mean(0))
        rr = 2 * al * c1 - (p * p).sum(-1)
        ss = 2 * al * c2 - (q * q).sum(-1)
        return LinearisedCost(p - t, q - t, rr, ss)  # |p - q|^2 does not see the translation

    def plan(self, res, geom: LinearisedCost, P_old):
        eps = res.eps
        a, b = res.problem.a, res.problem.b
        P = LazyPlan(geom, res.f + eps * torch.log(a), res.g + eps * torch.log(b), eps)
        core, r, c, diff = scan(P, P_old, self.Vx, self.Vy, P.rows)
        self.summary = (core, r, c)
        return P, a.new_tensor(diff)

    def dense(self, P):
        return P if isinstance(P, torch.Tensor) else P.dense()


class ProductPlan:
    """The product plan ``a b^T`` by row tiles (the default start of the lazy steps)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        self.a, self.b, self.shape = a, b, (a.shape[-1], b.shape[-1])

    def tile(self, i0: int, i1: int) -> torch.Tensor:
        return self.a[i0:i1].unsqueeze(-1) * self.b.unsqueeze(-2)

    def dense(self) -> torch.Tensor:
        return self.tile(0, self.shape[0])

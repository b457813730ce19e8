r"""Exact integrals of a piecewise-constant 2-D density over polygons and along segments.

Cell integrals go to the boundary by Green's theorem, :math:`\int_C \rho\, g = \oint_{\partial C} A\, dx_2`
with :math:`\partial_1 A = \rho g`. Each boundary edge is split at the grid lines; on a piece the density is
one constant, so the antiderivatives :math:`F = \int \rho`, :math:`G = \int \rho s`, :math:`K = \int \rho s^2`
along :math:`x_1` are polynomials of degree 1-3 in the edge parameter, and Simpson's rule integrates them
(and :math:`x_2 F`, :math:`x_2^2 F`) exactly. A uniform density is the 1 x 1 grid.

Example:
    >>> import numpy as np
    >>> g = GridDensity(np.ones((1, 1)), (np.zeros(2), np.ones(2)))
    >>> sq = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> m = polygon_moments(g, sq, np.zeros(4, dtype=int), 1)
    >>> [round(float(v), 12) for v in (m[0][0], m[1][0, 0], m[2][0])]  # mass, x-moment, second moment
    [1.0, 0.5, 0.666666666667]
"""

from __future__ import annotations

import numpy as np

__all__ = ["GridDensity", "polygon_moments", "segment_mass"]


class GridDensity:
    """A density on the box ``(lo, hi)``, constant on the cells of an ``(n1, n2)`` grid; ``w[i1, i2] >= 0`` is the
    mass of cell ``(i1, i2)`` (normalised to total mass 1). Axis 0 is :math:`x_1`. With a convex ``domain``
    (:class:`~monge.solvers.semidiscrete.polygon.ConvexPolygon` inside the box) the density is restricted to it
    and renormalised to mass 1 there; ``self.domain`` keeps it (None: the whole box)."""

    def __init__(self, w: np.ndarray, box, domain=None):
        self.lo, self.hi = (np.asarray(v, dtype=np.float64) for v in box)
        self.shape = w.shape
        self.h = (self.hi - self.lo) / np.array(w.shape)
        w = np.asarray(w, dtype=np.float64)
        self.rho = w / w.sum() / (self.h[0] * self.h[1])
        self.x1 = self.lo[0] + self.h[0] * np.arange(w.shape[0])  # left edge of each column
        zero = np.zeros((1, w.shape[1]))
        step = lambda a: np.r_[zero, np.cumsum(a, axis=0)][:-1]  # noqa: E731
        x0, x1 = self.x1[:, None], self.x1[:, None] + self.h[0]
        self.F = step(self.rho * (x1 - x0))
        self.G = step(self.rho * (x1 ** 2 - x0 ** 2) / 2)
        self.K = step(self.rho * (x1 ** 3 - x0 ** 3) / 3)
        self.domain = domain
        if domain is not None:
            v = domain.vertices
            total = float(polygon_moments(self, v, np.zeros(len(v), dtype=np.int64), 1)[0][0])
            if not total > 0:
                raise ValueError("density: expected positive mass inside the domain polygon, found none; the "
                                 "density vanishes on the domain")
            for name in ("rho", "F", "G", "K"):
                setattr(self, name, getattr(self, name) / total)

    def split(self, p, q):
        """Pieces of the segments ``p -> q`` between grid lines: ``(a, b, owner, i1, i2)``."""
        if self.shape == (1, 1):  # uniform: no grid line inside the box
            zero = np.zeros(len(p), dtype=np.int64)
            return p, q, np.arange(len(p)), zero, zero
        u, v = (p - self.lo) / self.h, (q - self.lo) / self.h
        ts, owners = [np.zeros(len(p)), np.ones(len(p))], [np.arange(len(p))] * 2
        for ax in range(2):
            if self.shape[ax] == 1:
                continue
            k0 = np.floor(np.minimum(u[:, ax], v[:, ax])) + 1
            cnt = np.maximum(np.ceil(np.maximum(u[:, ax], v[:, ax])) - k0, 0).astype(np.int64)
            own = np.repeat(np.arange(len(p)), cnt)
            offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            k = k0[own] + offs
            ts.append((k - u[own, ax]) / (v[own, ax] - u[own, ax]))
            owners.append(own)
        t, own = np.concatenate(ts), np.concatenate(owners)
        order = np.lexsort((t, own))
        t, own = t[order], own[order]
        same = own[1:] == own[:-1]
        t0, t1, own = t[:-1][same], t[1:][same], own[:-1][same]
        d = q[own] - p[own]
        a, b = p[own] + t0[:, None] * d, p[own] + t1[:, None] * d
        idx = np.floor(((a + b) / 2 - self.lo) / self.h).astype(np.int64)
        i1 = np.clip(idx[:, 0], 0, self.shape[0] - 1)
        i2 = np.clip(idx[:, 1], 0, self.shape[1] - 1)
        return a, b, own, i1, i2

    def antiderivatives(self, x, i1, i2):
        """:math:`F, G, K` at abscissae ``x`` in the grid row ``i2``, column ``i1`` (frozen per piece)."""
        r, x0 = self.rho[i1, i2], self.x1[i1]
        return (self.F[i1, i2] + r * (x - x0), self.G[i1, i2] + r * (x * x - x0 * x0) / 2,
                self.K[i1, i2] + r * (x ** 3 - x0 ** 3) / 3)


def polygon_moments(g: GridDensity, verts: np.ndarray, cell: np.ndarray, n: int):
    r"""Per cell: mass :math:`\int\rho`, first moment :math:`\int\rho x` ``(n, 2)``, second moment
    :math:`\int\rho|x|^2`, for ragged counter-clockwise polygons (contiguous groups in ``cell``)."""
    from .polygon import next_index

    nxt = next_index(cell)
    a, b, own, i1, i2 = g.split(verts, verts[nxt])
    m = (a + b) / 2
    out = np.zeros((4, len(a)))
    for pt, wt in ((a, 1.0), (m, 4.0), (b, 1.0)):
        F, G, K = g.antiderivatives(pt[:, 0], i1, i2)
        x2 = pt[:, 1]
        out += wt * np.stack([F, G, x2 * F, K + x2 * x2 * F])
    out *= (b[:, 1] - a[:, 1]) / 6
    owner = cell[own]
    mass, m1, m2, sec = (np.bincount(owner, o, minlength=n) for o in out)
    return mass, np.stack([m1, m2], 1), sec


def segment_mass(g: GridDensity, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    r""":math:`\int_{[p, q]} \rho\, ds` for each segment (exact: the density is constant on each piece)."""
    a, b, own, i1, i2 = g.split(p, q)
    val = g.rho[i1, i2] * np.linalg.norm(b - a, axis=1)
    return np.bincount(own, val, minlength=len(p))

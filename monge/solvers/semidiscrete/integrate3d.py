r"""Exact integrals of a piecewise-constant 3-D density over polyhedra given by their boundary polygons.

By the divergence theorem with the field :math:`(A, 0, 0)`, :math:`\partial_1 A = \rho`,
:math:`\int_C \rho = \oint_{\partial C} A\, n_1\, dS`; likewise :math:`\int_C \rho x_1` with
:math:`G = \int \rho s\, ds`, :math:`\int_C \rho x_k` (k = 2, 3) with :math:`x_k A`, and
:math:`\int_C \rho |x|^2` with :math:`K + (x_2^2 + x_3^2) A`, :math:`K = \int \rho s^2 ds`, all antiderivatives
along :math:`x_1` from the box's face. Every boundary polygon is cut by the grid planes (ragged, vectorised
clipping); on a piece the integrands are polynomials of degree at most 3, integrated exactly by a degree-3
rule on the fan triangles.

Example:
    >>> import numpy as np
    >>> g = GridDensity3D(np.ones((2, 1, 1)), (np.zeros(3), np.ones(3)))
    >>> sq = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])  # the face x1 = 1
    >>> out = g.flux(sq, np.zeros(4, dtype=np.int64), np.ones(1), 1)  # n_1 = 1: the whole cube's integrals
    >>> [round(float(v), 12) for v in (out[0][0], out[1][0, 0], out[2][0])]
    [1.0, 0.5, 1.0]
"""

from __future__ import annotations

import numpy as np

from .polygon import clip_ragged, fan

__all__ = ["GridDensity3D"]

#: Degree-3 rule on a triangle (Strang and Fix): barycentric points and weights summing to 1.
_BARY = np.array([[1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]])
_W = np.array([-27 / 48, 25 / 48, 25 / 48, 25 / 48])


def _replicate(v, grp, lo_k, reps):
    """Copy each contiguous group ``g`` ``reps[g]`` times; copy ``c`` of ``g`` gets slab ``lo_k[g] + c``.
    Returns the vertices, the new group of each, and per new group its parent group and slab."""
    m = len(grp)
    start = np.flatnonzero(np.r_[True, grp[1:] != grp[:-1]])
    length = np.diff(np.r_[start, m])
    g = grp[start]
    parent_run = np.repeat(np.arange(len(start)), reps[g])
    copy = np.arange(len(parent_run)) - np.repeat(np.cumsum(reps[g]) - reps[g], reps[g])
    ln = length[parent_run]
    first = np.repeat(np.cumsum(ln) - ln, ln)
    idx = np.repeat(start[parent_run], ln) + np.arange(ln.sum()) - first
    new_grp = np.repeat(np.arange(len(parent_run)), ln)
    return v[idx], new_grp, g[parent_run], lo_k[g[parent_run]] + copy


class GridDensity3D:
    """A density on the box ``(lo, hi)`` constant on the cells of an ``(n1, n2, n3)`` grid (``w`` the cell masses,
    normalised to total mass 1); axis k is :math:`x_{k+1}`."""

    def __init__(self, w: np.ndarray, box):
        self.lo, self.hi = (np.asarray(v, dtype=np.float64) for v in box)
        w = np.asarray(w, dtype=np.float64)
        self.shape = w.shape
        self.h = (self.hi - self.lo) / np.array(w.shape)
        self.rho = w / w.sum() / np.prod(self.h)
        self.xl = self.lo[0] + self.h[0] * np.arange(w.shape[0])  # left face of each slab in x1
        x0, x1 = self.xl[:, None, None], self.xl[:, None, None] + self.h[0]
        step = lambda a: np.cumsum(a, axis=0) - a  # noqa: E731  (the integral up to the slab's left face)
        self.A0 = step(self.rho * (x1 - x0))
        self.G0 = step(self.rho * (x1 ** 2 - x0 ** 2) / 2)
        self.K0 = step(self.rho * (x1 ** 3 - x0 ** 3) / 3)

    def split(self, v, grp, n_groups):
        """Cut ragged polygons by the grid planes: pieces ``(v, grp)``, and per piece group its original group and
        voxel ``(P, 3)``."""
        parent, vox = np.arange(n_groups), np.zeros((n_groups, 3), dtype=np.int64)
        for a in range(3):
            if self.shape[a] == 1:
                continue
            u = (v[:, a] - self.lo[a]) / self.h[a]
            big = np.full(len(parent), -np.inf)
            small = np.full(len(parent), np.inf)
            np.maximum.at(big, grp, u)
            np.minimum.at(small, grp, u)
            k0 = np.clip(np.floor(small), 0, self.shape[a] - 1).astype(np.int64)
            k1 = np.clip(np.floor(big), 0, self.shape[a] - 1).astype(np.int64)
            reps = np.where(np.isfinite(big), k1 - k0 + 1, 0)
            v, grp, par, slab = _replicate(v, grp, k0, reps)
            parent, vox = parent[par], vox[par]
            vox[:, a] = slab
            e, cut = np.eye(3)[a], (reps[par] > 1)[grp]  # a polygon inside one slab needs no clipping
            w, g = v[cut], grp[cut]
            w, g = clip_ragged(w, g, e, (self.lo[a] + (slab + 1) * self.h[a])[g])
            w, g = clip_ragged(w, g, -e, -(self.lo[a] + slab * self.h[a])[g])
            v, grp = np.r_[v[~cut], w], np.r_[grp[~cut], g]
        return v, grp, parent, vox

    def flux(self, v, grp, n1, n_groups):
        r"""Per polygon ``g``: :math:`n_1 \int (A, G, x_2 A, x_3 A, K + (x_2^2 + x_3^2) A)\, dS`, i.e. its
        contribution to a cell's mass, first moment ``(., 3)`` and :math:`\int \rho |x|^2`, and its own mass
        :math:`\int \rho\, dS`; ``n1 (G,)`` the first component of each polygon's outward unit normal."""
        v, grp, parent, vox = self.split(v, grp, n_groups)
        s, p, q = fan(grp)
        A, B, C = v[s], v[p], v[q]
        area = 0.5 * np.linalg.norm(np.cross(B - A, C - A), axis=1)
        g = grp[s]
        i1, i2, i3 = vox[g].T
        r, xl = self.rho[i1, i2, i3], self.xl[i1]
        out = np.zeros((5, len(s)))
        for bary, wt in zip(_BARY, _W):
            x = bary[0] * A + bary[1] * B + bary[2] * C
            a_ = self.A0[i1, i2, i3] + r * (x[:, 0] - xl)
            g_ = self.G0[i1, i2, i3] + r * (x[:, 0] ** 2 - xl ** 2) / 2
            k_ = self.K0[i1, i2, i3] + r * (x[:, 0] ** 3 - xl ** 3) / 3
            out += wt * np.stack([a_, g_, x[:, 1] * a_, x[:, 2] * a_, k_ + (x[:, 1] ** 2 + x[:, 2] ** 2) * a_])
        out *= area * n1[parent[g]]
        tot = [np.bincount(parent[g], o, minlength=n_groups) for o in out]
        surface = np.bincount(parent[g], area * r, minlength=n_groups)
        return tot[0], np.stack(tot[1:4], 1), tot[4], surface

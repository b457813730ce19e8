r"""Exact 3-D power (Laguerre) diagrams clipped to a box, with the exact integrals of the uniform density.

The regular triangulation is the lower convex hull of the lifted points :math:`(y_j, |y_j|^2 - \psi_j)` in
:math:`\mathbb{R}^4` (Qhull through :class:`scipy.spatial.ConvexHull`); eight far *ghost* sites, whose cells
provably miss the box, bound every real cell. The power centre of a lower facet :math:`n \cdot (u, h) + c = 0`
is :math:`-n_u / (2 n_h)` (read from the facet's hyperplane, so degenerate cospherical sites give one centre).

The facet :math:`F_{ij}` between adjacent sites is the polygon of the power centres of the tetrahedra around the
edge :math:`ij`, ordered by angle about :math:`y_j - y_i`, clipped to the box (ragged Sutherland-Hodgman).
The part of the box's face :math:`x_a = c` in a cell is the 2-D power diagram of the projected sites with
weights :math:`\psi_j - (c - y_{j,a})^2`. Each cell's boundary, fanned into triangles, is the base of cones
with apex :math:`y_i`; the cones' signed volumes, first and second moments (exact for tetrahedra:
:math:`\int_T |x - a|^2 = \tfrac{V}{20}(\sum_k |w_k|^2 + |\sum_k w_k|^2)`, :math:`w_k` the vertices minus the
apex) give mass, centroid and transport cost; the Newton Hessian is
:math:`\partial G_i / \partial \psi_j = -\rho\, |F_{ij}| / (2 |y_i - y_j|)`.

Example:
    >>> import numpy as np
    >>> c = power_cells3d(np.array([[0.25, 0.5, 0.5], [0.75, 0.5, 0.5]]), np.zeros(2), (np.zeros(3), np.ones(3)))
    >>> c.mass.round(12).tolist(), c.pairs.tolist(), round(float(c.area[0]), 12)
    ([0.5, 0.5], [[0, 1]], 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.spatial import ConvexHull

from .polygon import clip_ragged, fan
from .power2d import power_diagram

__all__ = ["Cells3D", "power_cells3d"]


@dataclass(frozen=True)
class Cells3D:
    r"""Per-cell integrals of the density on the box, and the adjacency with facet areas.

    Attributes:
        mass: ``(n,)`` :math:`\mu(\mathrm{Lag}_i)`. moment: ``(n, 3)`` :math:`\int_{\mathrm{Lag}_i} x\, d\mu`.
        cost: ``(n,)`` :math:`\int_{\mathrm{Lag}_i} |x - y_i|^2 d\mu`.
        pairs: ``(E, 2)`` adjacent sites ``i < j`` whose facet meets the box. area: ``(E,)`` the clipped facets'
        areas. weight: ``(E,)`` their masses under the density, :math:`\int_{F_{ij}} \rho\, dS`.
    """

    mass: np.ndarray
    moment: np.ndarray
    cost: np.ndarray
    pairs: np.ndarray
    area: np.ndarray
    weight: np.ndarray


def _ghosts(diam):
    """Eight sites whose cells miss the box (centred at 0): their power exceeds every real cell's there."""
    r = 4.0 * diam
    g = r * np.array([[sx, sy, sz] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], dtype=np.float64)
    near = r * np.sqrt(3.0) - 0.5 * diam
    return g, np.full(8, near ** 2 - 2 * diam ** 2)


def _lower_tets(z, w):
    """Lower facets of the lifted hull: simplices ``(T, 4)`` and their power centres ``(T, 3)``."""
    hull = ConvexHull(np.c_[z, (z ** 2).sum(1) - w], qhull_options="Qt")
    eq = hull.equations
    lower = eq[:, 3] < -1e-12 * np.abs(eq[:, :3]).sum(1).max()
    return hull.simplices[lower], -eq[lower, :3] / (2 * eq[lower, 3:4])


def _edge_rings(z, tets, centres, n):
    """Facet polygons of the real-real edges: vertices grouped by edge, ordered by angle about the edge."""
    ii, jj, tt = [], [], []
    for a, b in combinations(range(4), 2):
        i, j = tets[:, a], tets[:, b]
        ii.append(np.minimum(i, j))
        jj.append(np.maximum(i, j))
        tt.append(np.arange(len(tets)))
    i, j, t = np.concatenate(ii), np.concatenate(jj), np.concatenate(tt)
    real = j < n
    i, j, t = i[real], j[real], t[real]
    keys, e = np.unique(i * n + j, return_inverse=True)
    pairs = np.stack([keys // n, keys % n], 1)
    u = z[pairs[:, 1]] - z[pairs[:, 0]]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    ref = np.eye(3)[np.argmin(np.abs(u), axis=1)]  # the axis least aligned with u
    e1 = np.cross(u, ref)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(u, e1)
    pts = centres[t]
    cnt = np.bincount(e, minlength=len(keys)).astype(float)
    mean = np.stack([np.bincount(e, pts[:, k], minlength=len(keys)) for k in range(3)], 1) / cnt[:, None]
    rel = pts - mean[e]
    ang = np.arctan2((rel * e2[e]).sum(1), (rel * e1[e]).sum(1))
    order = np.argsort(e + (ang + np.pi) * (0.49 / np.pi))
    return pairs, u, pts[order], e[order]


def _clip_box(v, grp, lo, hi, n_groups):
    """Clip to the box the facet polygons with a vertex outside it; the others are kept as they are."""
    out = ((v < lo) | (v > hi)).any(1)
    sel = (np.bincount(grp[out], minlength=n_groups) > 0)[grp]
    w, g = v[sel], grp[sel]
    for a in range(3):
        e = np.eye(3)[a]
        w, g = clip_ragged(w, g, e, hi[a])
        w, g = clip_ragged(w, g, -e, -lo[a])
    return np.r_[v[~sel], w], np.r_[grp[~sel], g]


def _cone_moments(apex, A, B, C, area, h):
    """Signed volume, first moment and :math:`\\int |x - apex|^2` of the cones over triangles ``ABC``."""
    vol = area * h / 3.0
    wa, wb, wc = A - apex, B - apex, C - apex
    s = wa + wb + wc
    mom = vol[:, None] * (apex + s / 4.0)
    sec = vol / 20.0 * ((wa ** 2).sum(1) + (wb ** 2).sum(1) + (wc ** 2).sum(1) + (s ** 2).sum(1))
    return vol, mom, sec


def _accumulate(acc, owner, apex, A, B, C, area, h):
    vol, mom, sec = _cone_moments(apex, A, B, C, area, h)
    acc[0] += np.bincount(owner, vol, minlength=len(acc[0]))
    acc[2] += np.bincount(owner, sec, minlength=len(acc[0]))
    for k in range(3):
        acc[1][:, k] += np.bincount(owner, mom[:, k], minlength=len(acc[0]))


def _box_faces(acc, y, psi, lo, hi):
    """Add the cones over each cell's part of the six box faces (2-D power diagrams of the projected sites)."""
    for a in range(3):
        o = [(a + 1) % 3, (a + 2) % 3]
        for c, sign in ((lo[a], -1.0), (hi[a], 1.0)):
            d2 = power_diagram(y[:, o], psi - (c - y[:, a]) ** 2, (lo[o], hi[o]))
            v = np.empty((len(d2.verts), 3))
            v[:, o], v[:, a] = d2.verts, c
            s, p, q = fan(d2.cell)
            A, B, C = v[s], v[p], v[q]
            area = 0.5 * np.abs(np.cross(B - A, C - A)[:, a])
            owner = d2.cell[s]
            _accumulate(acc, owner, y[owner], A, B, C, area, sign * (c - y[owner, a]))


def _facets(y, psi, lo, hi):
    """Adjacent pairs ``(E, 2)``, unit normals ``(E, 3)`` from ``i`` to ``j`` and the facet polygons clipped to
    the box (ragged, grouped by pair)."""
    n = y.shape[0]
    centre, diam = 0.5 * (lo + hi), float(np.linalg.norm(hi - lo))
    g, psi_g = _ghosts(diam)
    z = np.r_[y - centre, g]
    tets, centres = _lower_tets(z, np.r_[psi, psi_g])
    pairs, u, v, grp = _edge_rings(z, tets, centres, n)
    v, grp = _clip_box(v, grp, lo - centre, hi - centre, len(pairs))
    return pairs, u, v + centre, grp


def _grid_cells(y, psi, lo, hi, dens, pairs, u, v, grp):
    """Divergence-theorem integrals against a grid density: only the facets and the face x1 = hi carry flux."""
    n, E = y.shape[0], len(pairs)
    mass, mom, sec, weight = np.zeros(n), np.zeros((n, 3)), np.zeros(n), np.zeros(E)
    if E:
        fm, fmom, fsec, weight = dens.flux(v, grp, u[:, 0], E)
        for side, sign in ((0, 1.0), (1, -1.0)):
            mass += sign * np.bincount(pairs[:, side], fm, minlength=n)
            sec += sign * np.bincount(pairs[:, side], fsec, minlength=n)
            for k in range(3):
                mom[:, k] += sign * np.bincount(pairs[:, side], fmom[:, k], minlength=n)
    d2 = power_diagram(y[:, 1:], psi - (hi[0] - y[:, 0]) ** 2, (lo[1:], hi[1:]))
    face = np.c_[np.full(len(d2.verts), hi[0]), d2.verts]
    fm, fmom, fsec, _ = dens.flux(face, d2.cell, np.ones(n), n)
    mass, mom, sec = mass + fm, mom + fmom, sec + fsec
    cost = sec - 2 * (y * mom).sum(1) + (y ** 2).sum(1) * mass
    return mass, mom, cost, weight


def power_cells3d(y: np.ndarray, psi: np.ndarray, box, dens=None) -> Cells3D:
    """The power diagram of ``y (n, 3)`` with weights ``psi (n,)``, clipped to ``box = (lo, hi)``, integrated
    against the uniform density on the box, or a :class:`~.integrate3d.GridDensity3D` ``dens`` on it."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in box)
    n = y.shape[0]
    psi = np.asarray(psi, dtype=np.float64)
    psi = psi - psi.max()
    pairs, u = np.zeros((0, 2), dtype=np.int64), np.zeros((0, 3))
    v, grp = np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    if n > 1:
        pairs, u, v, grp = _facets(y, psi, lo, hi)
    s, p, q = fan(grp)
    A, B, C, owner = v[s], v[p], v[q], grp[s]
    tri = 0.5 * np.abs((np.cross(B - A, C - A) * u[owner]).sum(1))
    area = np.bincount(owner, tri, minlength=len(pairs))
    if dens is not None:
        mass, mom, cost, weight = _grid_cells(y, psi, lo, hi, dens, pairs, u, v, grp)
    else:
        acc = [np.zeros(n), np.zeros((n, 3)), np.zeros(n)]
        for side, sign in ((0, 1.0), (1, -1.0)):  # the facet bounds both cells, outward normal +-u
            site = pairs[owner, side]
            h = sign * ((A - y[site]) * u[owner]).sum(1)
            _accumulate(acc, site, y[site], A, B, C, tri, h)
        _box_faces(acc, y, psi, lo, hi)
        rho = 1.0 / float(np.prod(hi - lo))
        mass, mom, cost, weight = rho * acc[0], rho * acc[1], rho * acc[2], rho * area
    keep = area > 0
    return Cells3D(mass=mass, moment=mom, cost=cost, pairs=pairs[keep], area=area[keep], weight=weight[keep])

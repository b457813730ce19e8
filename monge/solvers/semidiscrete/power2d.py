r"""Exact 2-D power (Laguerre) diagrams clipped to a box, in float64 numpy.

The Laguerre cell of site :math:`y_j` with weight :math:`\psi_j` is

.. math::
    \mathrm{Lag}_j(\psi) = \{x : |x - y_j|^2 - \psi_j \le |x - y_k|^2 - \psi_k \ \forall k\}.

The regular triangulation (the dual of the diagram) is the lower convex hull of the lifted points
:math:`(y_j, |y_j|^2 - \psi_j)` (Qhull, through :class:`scipy.spatial.ConvexHull`). Four far *ghost* sites,
whose cells provably miss the box, make every real cell bounded and the lifted set full-dimensional (one
point, collinear points). A cell's vertices are the power centres of its incident triangles, ordered by
angle; all cells are then clipped to the box at once by a ragged, vectorised Sutherland-Hodgman pass. The
facet between adjacent sites ``i, j`` is the segment between the power centres of the two triangles sharing
the edge ``ij``, clipped to the box (Liang-Barsky).

Example:
    >>> import numpy as np
    >>> d = power_diagram(np.array([[0.25, 0.5], [0.75, 0.5]]), np.zeros(2), (np.zeros(2), np.ones(2)))
    >>> sorted(set(d.cell.tolist())), d.pairs.tolist()
    ([0, 1], [[0, 1]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull

from .polygon import ConvexPolygon, clip_ragged, clip_segments_convex, next_index

__all__ = ["PowerDiagram", "power_diagram", "next_index", "clip_segments"]


@dataclass(frozen=True)
class PowerDiagram:
    """A clipped power diagram.

    Attributes:
        verts: ``(M, 2)`` polygon vertices of all cells, counter-clockwise, grouped by cell.
        cell: ``(M,)`` the cell of each vertex; each cell's vertices are contiguous (hidden or empty cells have
            no vertex).
        pairs: ``(E, 2)`` adjacent sites ``i < j`` whose common facet meets the box.
        facets: ``(E, 2, 2)`` the facet segments, clipped to the box.
    """

    verts: np.ndarray
    cell: np.ndarray
    pairs: np.ndarray
    facets: np.ndarray


def _ghosts(center, diam, psi_max):
    """Four sites whose cells provably miss the box: power at any box point exceeds every real cell's."""
    r = 4.0 * diam
    g = center + r * np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    near = r * np.sqrt(2.0) - 0.5 * diam  # distance from a ghost to the box, at least
    psi_g = near ** 2 - (diam ** 2 - psi_max) - diam ** 2  # margin diam^2
    return g, np.full(4, psi_g)


def _power_centres(z, psi, tri):
    r"""Points of equal power to the three sites of each triangle: :math:`2u\cdot(z_j - z_i) = |z_j - z_i|^2
    - \psi_j + \psi_i` in coordinates relative to the first site (Cramer's rule)."""
    zi = z[tri[:, 0]]
    e1 = z[tri[:, 1]] - zi
    e2 = z[tri[:, 2]] - zi
    r1 = 0.5 * ((e1 ** 2).sum(1) - psi[tri[:, 1]] + psi[tri[:, 0]])
    r2 = 0.5 * ((e2 ** 2).sum(1) - psi[tri[:, 2]] + psi[tri[:, 0]])
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ux = (r1 * e2[:, 1] - r2 * e1[:, 1]) / det
    uy = (e1[:, 0] * r2 - e2[:, 0] * r1) / det
    return zi + np.stack([ux, uy], 1)


def _clip_halfplane(v, cell, axis, bound, keep_ge):
    """One Sutherland-Hodgman pass over every ragged polygon at once."""
    nxt = next_index(cell)
    s = v[:, axis] >= bound if keep_ge else v[:, axis] <= bound
    w = v[nxt]
    cross = s != s[nxt]
    den = np.where(cross, w[:, axis] - v[:, axis], 1.0)
    t = np.where(cross, (bound - v[:, axis]) / den, 0.0)
    inter = v + t[:, None] * (w - v)
    inter[:, axis] = bound
    out = np.empty((2 * len(v), 2))
    out[0::2], out[1::2] = v, inter
    keep = np.empty(2 * len(v), dtype=bool)
    keep[0::2], keep[1::2] = s, cross
    return out[keep], np.repeat(cell, 2)[keep]


def _clip_box(verts, cell, lo, hi, n):
    """Clip only the cells with a vertex outside the box; groups stay contiguous (not sorted)."""
    out = ((verts < lo) | (verts > hi)).any(1)
    bad = np.bincount(cell[out], minlength=n) > 0
    sel = bad[cell]
    v, c = verts[sel], cell[sel]
    for axis in range(2):
        v, c = _clip_halfplane(v, c, axis, lo[axis], True)
        v, c = _clip_halfplane(v, c, axis, hi[axis], False)
    return np.r_[verts[~sel], v], np.r_[cell[~sel], c]


def clip_segments(p, q, lo, hi):
    """Liang-Barsky: the part of each segment ``p -> q`` inside the box ``[lo, hi]`` (empty: ``p == q``)."""
    d = q - p
    t0 = np.zeros(len(p))
    t1 = np.ones(len(p))
    for a in range(2):
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = (lo[a] - p[:, a]) / d[:, a]
            tb = (hi[a] - p[:, a]) / d[:, a]
        par = d[:, a] == 0
        tmin = np.where(par, -np.inf, np.minimum(ta, tb))
        tmax = np.where(par, np.inf, np.maximum(ta, tb))
        outside = par & ((p[:, a] < lo[a]) | (p[:, a] > hi[a]))
        t0 = np.maximum(t0, tmin)
        t1 = np.where(outside, -1.0, np.minimum(t1, tmax))
    t1 = np.maximum(t1, t0)
    a_ = p + t0[:, None] * d
    b_ = p + t1[:, None] * d
    return np.clip(a_, lo, hi), np.clip(b_, lo, hi)


def _lower_triangles(z, psi):
    lifted = np.c_[z, (z ** 2).sum(1) - psi]
    hull = ConvexHull(lifted, qhull_options="Qt")
    lower = hull.equations[:, 2] < 0
    return hull.simplices, hull.neighbors, lower


def _cells(centres, tri, lower, n):
    """Ragged counter-clockwise polygons of the real cells from the power centres of their triangles."""
    idx = np.flatnonzero(lower)
    owner = tri[idx].reshape(-1)
    pts = np.repeat(centres[idx], 3, axis=0)
    real = owner < n
    owner, pts = owner[real], pts[real]
    cnt = np.bincount(owner, minlength=n).astype(float)
    mean = np.stack([np.bincount(owner, pts[:, k], minlength=n) for k in range(2)], 1) / np.maximum(cnt, 1)[:, None]
    rel = pts - mean[owner]
    key = owner + (np.arctan2(rel[:, 1], rel[:, 0]) + np.pi) * (0.49 / np.pi)  # owner, then angle in [0, 0.98]
    order = np.argsort(key)
    return pts[order], owner[order]


def _facets(centres, tri, nbr, lower, n):
    idx = np.flatnonzero(lower)
    t = np.repeat(idx, 3)
    k = np.tile(np.arange(3), len(idx))
    i = tri[t, (k + 1) % 3]
    j = tri[t, (k + 2) % 3]
    nb = nbr[t, k]
    keep = (i < n) & (j < n) & (t < nb) & lower[nb]
    i, j, t, nb = i[keep], j[keep], t[keep], nb[keep]
    return np.stack([np.minimum(i, j), np.maximum(i, j)], 1), centres[t], centres[nb]


def _clip_polygon(verts, cell, dom: ConvexPolygon, center, n):
    """Clip only the cells with a vertex outside the convex domain (shifted by ``-center``)."""
    off = dom.offsets - dom.normals @ center
    out = (verts @ dom.normals.T > off).any(1)
    bad = np.bincount(cell[out], minlength=n) > 0
    sel = bad[cell]
    v, c = verts[sel], cell[sel]
    for nrm, o in zip(dom.normals, off):
        v, c = clip_ragged(v, c, nrm, o)
    return np.r_[verts[~sel], v], np.r_[cell[~sel], c]


def power_diagram(y: np.ndarray, psi: np.ndarray, box, domain: ConvexPolygon | None = None) -> PowerDiagram:
    """The power diagram of sites ``y (n, 2)`` with weights ``psi (n,)``, clipped to ``box = (lo, hi)`` or, if
    given, to the convex polygon ``domain`` (then ``box`` must contain it, e.g. its bounding box)."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in box)
    n = y.shape[0]
    center = 0.5 * (lo + hi)
    diam = float(np.linalg.norm(hi - lo))
    psi = psi - psi.max()
    g, psi_g = _ghosts(np.zeros(2), diam, 0.0)
    z = np.r_[y - center, g]
    w = np.r_[psi, psi_g]
    tri, nbr, lower = _lower_triangles(z, w)
    centres = _power_centres(z, w, tri)
    verts, cell = _cells(centres, tri, lower, n)
    pairs, p, q = _facets(centres, tri, nbr, lower, n)
    if domain is None:
        verts, cell = _clip_box(verts, cell, lo - center, hi - center, n)
        p, q = clip_segments(p, q, lo - center, hi - center)
    else:
        verts, cell = _clip_polygon(verts, cell, domain, center, n)
        p, q = clip_segments_convex(p, q, domain.normals, domain.offsets - domain.normals @ center)
    return PowerDiagram(verts=verts + center, cell=cell, pairs=pairs, facets=np.stack([p, q], 1) + center)

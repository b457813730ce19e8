r"""Convex domains and ragged polygon operations shared by the 2-D and 3-D power diagrams.

A convex polygon with counter-clockwise vertices :math:`p_0, \dots, p_{k-1}` is the intersection of the
half-planes :math:`\{x : n_e \cdot x \le c_e\}` of its edges (outward normals :math:`n_e`). Ragged polygons
(one vertex list, a group id per vertex, each group contiguous and cyclically ordered) are clipped by one
half-space at a time, all groups at once (Sutherland-Hodgman), in any dimension; segments are clipped by
Cyrus-Beck.

Example:
    >>> import numpy as np
    >>> tri = ConvexPolygon(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    >>> tri.area, tri.normals.shape
    (0.5, (3, 2))
    >>> sq = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> v, g = clip_ragged(sq, np.zeros(4, dtype=int), np.array([1.0, 1.0]), 1.0)  # keep x1 + x2 <= 1
    >>> v.tolist()
    [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["ConvexPolygon", "next_index", "fan", "clip_ragged", "clip_segments_convex"]


def next_index(cell: np.ndarray) -> np.ndarray:
    """Index of the next vertex of the same polygon (cyclic) in a ragged, grouped vertex list."""
    m = cell.shape[0]
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.r_[True, cell[1:] != cell[:-1]]
    starts = np.flatnonzero(change)
    ends = np.r_[starts[1:], m] - 1
    nxt = np.arange(1, m + 1)
    nxt[ends] = starts
    return nxt


def fan(grp: np.ndarray):
    """Fan triangulation of ragged convex polygons: index triples ``(start, k, next(k))``, one per triangle."""
    m = grp.shape[0]
    if m == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    nxt = next_index(grp)
    change = np.r_[True, grp[1:] != grp[:-1]]
    start = np.maximum.accumulate(np.where(change, np.arange(m), 0))
    idx = np.arange(m)
    sel = (idx != start) & (nxt != start)
    return start[sel], idx[sel], nxt[sel]


def clip_ragged(v: np.ndarray, grp: np.ndarray, normal: np.ndarray, offset: float):
    """Keep the part of every ragged polygon ``v (M, d)`` in the half-space ``normal . x <= offset``."""
    if len(v) == 0:
        return v, grp
    nxt = next_index(grp)
    side = v @ normal - offset
    if not (side > 0).any():
        return v, grp
    s = side <= 0
    cross = ((side < 0) & (side[nxt] > 0)) | ((side > 0) & (side[nxt] < 0))
    den = np.where(cross, side - side[nxt], 1.0)
    t = np.where(cross, side / den, 0.0)
    inter = v + t[:, None] * (v[nxt] - v)
    out = np.empty((2 * len(v), v.shape[1]))
    out[0::2], out[1::2] = v, inter
    keep = np.empty(2 * len(v), dtype=bool)
    keep[0::2], keep[1::2] = s, cross
    return out[keep], np.repeat(grp, 2)[keep]


def clip_segments_convex(p: np.ndarray, q: np.ndarray, normals: np.ndarray, offsets: np.ndarray):
    """Cyrus-Beck: the part of each segment ``p -> q`` in ``{x : normals @ x <= offsets}`` (empty: ``p == q``)."""
    d = q - p
    t0, t1 = np.zeros(len(p)), np.ones(len(p))
    for nrm, c in zip(normals, offsets):
        num, den = c - p @ nrm, d @ nrm
        with np.errstate(divide="ignore", invalid="ignore"):
            tb = num / den
        t1 = np.where(den > 0, np.minimum(t1, tb), t1)
        t0 = np.where(den < 0, np.maximum(t0, tb), t0)
        t1 = np.where((den == 0) & (num < 0), -1.0, t1)
    t1 = np.maximum(t1, t0)
    return p + t0[:, None] * d, p + t1[:, None] * d


class ConvexPolygon:
    r"""A convex polygon from its vertices ``(k, 2)`` (either orientation; stored counter-clockwise).

    Attributes: ``vertices (k, 2)``, outward unit ``normals (k, 2)`` and ``offsets (k,)`` of the edges
    (:math:`n_e \cdot x \le c_e` inside), ``area``, bounding box ``lo, hi``.
    """

    def __init__(self, vertices):
        v = np.asarray(vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] < 3 or v.shape[1] != 2 or not np.all(np.isfinite(v)):
            raise ValueError(f"domain: expected the vertices (k, 2), k >= 3, of a convex polygon, got shape "
                             f"{v.shape}")
        e = np.roll(v, -1, 0) - v
        cross = e[:, 0] * np.roll(e, -1, 0)[:, 1] - e[:, 1] * np.roll(e, -1, 0)[:, 0]
        area2 = float((v[:, 0] * np.roll(v, -1, 0)[:, 1] - np.roll(v, -1, 0)[:, 0] * v[:, 1]).sum())
        tol = 1e-12 * abs(area2)
        if abs(area2) <= 0 or not (np.all(cross >= -tol) or np.all(cross <= tol)):
            raise ValueError("domain: expected the vertices of a convex polygon with positive area, in order "
                             "around it (no self-intersection); pass e.g. the convex hull's vertices")
        if area2 < 0:
            v = v[::-1].copy()
            e = np.roll(v, -1, 0) - v
        length = np.linalg.norm(e, axis=1)
        ok = length > 0
        v, e, length = v[ok], e[ok], length[ok]
        self.vertices = v
        self.normals = np.stack([e[:, 1], -e[:, 0]], 1) / length[:, None]
        self.offsets = (self.normals * v).sum(1)
        self.area = 0.5 * abs(area2)
        self.lo, self.hi = v.min(0), v.max(0)

    def contains(self, x: np.ndarray, tol: float = 1e-12) -> np.ndarray:
        """Whether each point ``x (n, 2)`` lies in the polygon (up to ``tol`` times its size)."""
        scale = float(np.linalg.norm(self.hi - self.lo))
        return np.all(x @ self.normals.T <= self.offsets + tol * scale, axis=1)

r"""The coarse problem of the multiscale eps-scaling: cluster centres and masses of the k-d tree of
:mod:`~monge.geometry._backends.multiscale`, and the prolongation of coarse potentials to the points."""

from __future__ import annotations

import math

import torch

from .clustering import Clusters
from .multiscale import MultiscaleSoftmin, _one_thread

__all__ = ["coarse_view"]


def coarse_view(red: MultiscaleSoftmin, x, y, wa, wb):
    r"""The coarse problem the multiscale eps-scaling starts on: the clusters of level ``~ log2(sqrt(n))`` of the
    k-d tree, as a point cloud of their (mass-weighted) centres with the cluster masses
    :math:`A_I = \sum_{i \in I} a_i`, and the temperature ``phi(2 r)`` (``r``: the median cluster radius) above
    which the clusters stand for their points. ``prolong(h, eps, side)`` is the soft-min of the fine points of
    ``side`` (0: x, 1: y) against the OTHER side's cluster centres, ``h`` a potential on those centres (the start
    of the fine potentials). Returns ``(coarse geometry, A, B, threshold, prolong)``.
    """
    from ..pointcloud import PointCloud
    from .lazy import lazy_softmin

    if red.sides is None:
        with _one_thread(red):
            red._build(x, y)
    X, Y = red.sides
    level = min(X.levels, Y.levels, max(0, round(0.5 * math.log2(max(x.shape[0], y.shape[0])))))
    cx, A, rx = _coarse(X, x, wa, level)
    cy, B, ry = (cx, A, rx) if red.symmetric else _coarse(Y, y, wb, level)
    thr = float(red.phi(2.0 * torch.cat([rx, ry]).median()))
    coarse = PointCloud(cx, None if red.symmetric else cy, cost=red.cost_fn)

    def prolong(h, eps, side):
        pts, centres = (x, cy) if side == 0 else (y, cx)
        return lazy_softmin(pts, centres, h, eps, 1, red.cost_fn)

    return coarse, A, B, thr, prolong


def _coarse(cl: Clusters, x, w, level: int):
    """Centres (mass-weighted means), masses and radii of the clusters of ``cl`` at ``level``."""
    lab = cl.coarse(level)
    K = 1 << min(level, cl.levels)
    x = x.detach()
    W = x.new_zeros(K).index_add_(0, lab, w.detach())
    wt = w.detach() + W.sum() * 1e-12  # empty-mass clusters: the plain mean
    c = x.new_zeros(K, x.shape[1]).index_add_(0, lab, wt[:, None] * x)
    c = c / x.new_zeros(K).index_add_(0, lab, wt)[:, None]
    r = x.new_zeros(K).scatter_reduce(0, lab, (x - c[lab]).norm(dim=1), "amax")
    return c, W, r

r"""The coarse problem of the multiscale eps-scaling (a nested, multigrid-style start): the points of each side
grouped into the cells of a balanced k-d tree (:func:`~._backends.clustering.kd_leaves`) of ``p`` points each,
as a point cloud of the cells' mass-weighted centres with the cell masses :math:`A_I = \sum_{i \in I} a_i`.

The coarse problem is solved through every annealing stage down to the final ``eps`` (itself multiscale, with its
own coarse start, while it is large), its potentials prolonged to the points (the soft-min against the other
side's cells, to first order around the own cell's centre: :math:`f_i = F_I + \nabla F_I \cdot (x_i - c_I)`) and the
fine iterations continue from there: the coarse levels remove the slow, global error modes, the fine level only
damps local ones, which Sinkhorn's soft-min smooths in a few iterations when the cells are finer than the
kernel width (:math:`\phi(r) \le \varepsilon / 4`, ``r`` the cells' largest radius). ``p`` is the largest power of
two in :data:`COARSE_POINTS` whose cells meet that bound (the smallest where none does: then the coarse problem
stands for the fine one only down to the temperature ``4 phi(r)``, and the stages below it run on the points).
"""

from __future__ import annotations

import math

import torch

from .clustering import kd_leaves
from ..costs import Cosine
from .lazy import lazy_softmin
from .multiscale import MultiscaleSoftmin, _normalised

__all__ = ["coarse_view", "COARSE_POINTS", "COARSE_WIDTH", "COARSE_MIN_CLUSTERS", "COARSE_MULTISCALE_MIN",
           "SLOPE_MAX_ENTRIES"]

#: Points per coarse cell, the fewest and the most (powers of two): a cell of ``p`` points makes a coarse soft-min
#: ~``p^2`` times cheaper than a fine one.
COARSE_POINTS = (4, 64)
#: Cells are made coarser while ``phi(largest radius) <= COARSE_WIDTH * eps``: well inside the kernel's width, the
#: coarse solution's errors are local ones the fine iterations damp in a few steps (n = 2e4, d = 3, eps = 5e-3:
#: cells of 4 points, phi(r) ~ eps / 2, need 23 fine iterations to tol 2e-5; cells of 8, phi(r) ~ eps, 31). The
#: largest radius, not a typical one: one cell across two separated clusters puts coarse mass between them, an
#: error between weakly coupled clusters that the fine iterations remove very slowly (20 blobs in 10-D, n = 3000:
#: 4920 iterations from the median rule's start against 10 for plain annealing; the largest radius: 10).
COARSE_WIDTH = 0.25
#: A cloud with fewer cells than this of ``COARSE_POINTS[0]`` points gets no coarse start (plain annealing: its fine
#: soft-mins are cheap).
COARSE_MIN_CLUSTERS = 128
#: The prolongation takes the slope of the coarse soft-min (one lazy soft-min and its gradient on the cells) up to
#: this many coarse cost entries; above, the cells' values (a piecewise-constant start).
SLOPE_MAX_ENTRIES = 1 << 30
#: A coarse problem of at least this many cells is itself multiscale (with its own coarse start); smaller ones are
#: lazy point clouds (their soft-mins cost less than the multiscale bookkeeping there).
COARSE_MULTISCALE_MIN = 8192


def coarse_view(red: MultiscaleSoftmin, x, y, wa, wb, eps: float):
    r"""The coarse problem for the temperature ``eps``: ``(coarse cloud, A, B, prolong, threshold)``, the point
    cloud of the cell centres (same cost; ``backend="multiscale"`` from :data:`COARSE_MULTISCALE_MIN` cells, else
    ``"lazy"``), the cell masses, ``prolong(h, eps, side)`` the soft-min at the points of ``side`` (0: x, 1: y)
    against the other side's cells carrying ``h`` (first order around the cells of ``side``), and the temperature
    ``phi(r) / COARSE_WIDTH`` down to which the coarse problem stands for the fine one (at most ``eps`` unless
    even the finest cells are wider than the kernel); ``None`` for a cloud too small to have
    :data:`COARSE_MIN_CLUSTERS` cells.

    Example:
        >>> import torch
        >>> from monge.geometry.costs import SqEuclidean
        >>> x = torch.rand(2000, 2, dtype=torch.float64)
        >>> w = torch.full((2000,), 1 / 2000, dtype=torch.float64)
        >>> red = MultiscaleSoftmin(SqEuclidean(), x, x)
        >>> coarse, A, B, prolong, threshold = coarse_view(red, x, x, w, w, 1e-3)  # cells of ~8 points
        >>> coarse.shape, coarse.backend, round(float(A.sum()), 12), threshold > 1e-3, prolong(A.log(), 1e-3, 0).shape
        ((256, 256), 'lazy', 1.0, True, torch.Size([2000]))
        >>> coarse_view(red, x, x, w, w, 1.0)[0].shape  # ~64 points at large eps
        (32, 32)
    """
    from ..pointcloud import PointCloud

    sx = _Tree.of(x, red, eps)
    sy = sx if red.symmetric else _Tree.of(y, red, eps)
    if max(sx.levels, sy.levels) < math.log2(COARSE_MIN_CLUSTERS):
        return None
    cx, A, lx = sx.cells(wa)
    cy, B, ly = (cx, A, lx) if red.symmetric else sy.cells(wb)
    big = max(cx.shape[0], cy.shape[0]) >= COARSE_MULTISCALE_MIN
    coarse = PointCloud(cx, None if red.symmetric else cy, cost=red.cost_fn, backend="multiscale" if big else "lazy")
    sides = ((x, cx, lx), (y, cy, ly))

    def prolong(h, eps: float, side: int):
        """The soft-min at the points of ``side`` against the other side's cells (``h`` on them), to first order
        around the own cells' centres (the slope by autograd), or their value where the coarse cost matrix would
        exceed :data:`SLOPE_MAX_ENTRIES`."""
        pts, c, lab = sides[side]
        other = sides[1 - side][1]
        if c.shape[0] * other.shape[0] > SLOPE_MAX_ENTRIES:
            return coarse.softmin(h, eps, 1 - side)[lab]
        with torch.enable_grad():
            cg = c.detach().clone().requires_grad_()
            S = lazy_softmin(cg, other, h.detach(), eps, 1, red.cost_fn)
            (slope,) = torch.autograd.grad(S.sum(), cg)
        return S.detach()[lab] + ((pts.detach() - c[lab]) * slope[lab]).sum(1)

    return coarse, A, B, prolong, max(sx.threshold, sy.threshold)


class _Tree:
    """The k-d cells of one side (on the points the cost's bound is stated for: normalised for the cosine) at the
    level chosen for ``eps``: the coarsest of at most ``COARSE_POINTS[1]`` points per cell whose largest radius
    ``r`` has ``phi(r) <= COARSE_WIDTH * eps``, else cells of ``COARSE_POINTS[0]`` points."""

    def __init__(self, x, levels: int, red: MultiscaleSoftmin):
        self.x = x.detach()
        self.levels = levels
        self.pts = _normalised(self.x) if isinstance(red.cost_fn, Cosine) else self.x
        order, leaf = kd_leaves(self.x, levels)
        self.leaf = torch.empty_like(leaf)
        self.leaf[order] = leaf
        self.level = levels
        self.threshold = math.inf

    @classmethod
    def of(cls, x, red: MultiscaleSoftmin, eps: float) -> "_Tree":
        n, (few, many) = x.shape[0], COARSE_POINTS
        tree = cls(x, max(0, math.floor(math.log2(max(1.0, n / few)))), red)
        for up in range(tree.levels - 1, max(0, math.ceil(math.log2(max(1.0, n / many)))) - 1, -1):  # coarser cells
            if float(red.phi(tree.radii(up).max())) > COARSE_WIDTH * eps:
                break
            tree.level = up
        tree.threshold = float(red.phi(tree.radii(tree.level).max())) / COARSE_WIDTH
        return tree

    def label(self, level: int) -> torch.Tensor:
        return self.leaf >> (self.levels - level)

    def radii(self, level: int) -> torch.Tensor:
        """The radius of every cell at ``level`` (its farthest point from its plain mean)."""
        lab, K = self.label(level), 1 << level
        cnt = torch.bincount(lab, minlength=K).clamp_min(1).to(self.pts.dtype)[:, None]
        c = self.pts.new_zeros(K, self.pts.shape[1]).index_add_(0, lab, self.pts) / cnt
        return self.pts.new_zeros(K).scatter_reduce(0, lab, (self.pts - c[lab]).norm(dim=1), "amax")

    def cells(self, w):
        """Centres (mass-weighted means), masses and the cell of each point at the chosen level."""
        lab, K, x = self.label(self.level), 1 << self.level, self.x
        w = w.detach()
        W = x.new_zeros(K).index_add_(0, lab, w)
        wt = w + W.sum() * 1e-12  # cells without mass: the plain mean
        c = x.new_zeros(K, x.shape[1]).index_add_(0, lab, wt[:, None] * x)
        return c / x.new_zeros(K).index_add_(0, lab, wt)[:, None], W, lab

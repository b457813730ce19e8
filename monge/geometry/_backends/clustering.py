r"""Balanced k-d clustering of a point cloud, any dimension: the cells of the multiscale soft-min.

The cloud is bisected ``L`` times, every cell at once: each cell is split at the median of its coordinate of
largest variance, so the ``2^L`` leaves hold ``floor(n / 2^L)`` or ``ceil(n / 2^L)`` points (balanced: padded tiles waste nothing)
and adapt to the density; level ``l < L`` of the same tree is the coarser clustering ``leaf >> (L - l)``. Cost
``O(L n log n)`` (two stable sorts per level), memory ``O(n)``.

The tree is complete (``2^L`` leaves, every internal node two children), so it needs no pointers: the bounding
boxes of its nodes (:func:`~monge.geometry._backends.multiscale_select.heap_boxes`, a heap: root 1, children
``2k, 2k + 1``, leaf ``J`` at ``2^L + J``) bound the distance of every pair of points of two nodes, which the
truncation certificate of :mod:`~monge.geometry._backends.multiscale` is built on.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Clusters", "kd_leaves"]


def kd_leaves(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, leaf)``: a permutation of the ``n`` points of ``x (n, d)`` grouping them by leaf, and the leaf
    (``0 .. 2^levels - 1``) of each position of that order (nondecreasing).

    Example:
        >>> import torch
        >>> order, leaf = kd_leaves(torch.arange(8.0)[:, None].flip(0), 2)
        >>> order.tolist(), leaf.tolist()
        ([7, 6, 5, 4, 3, 2, 1, 0], [0, 0, 1, 1, 2, 2, 3, 3])
    """
    n, d = x.shape
    order = torch.arange(n, device=x.device)
    group = torch.zeros(n, dtype=torch.long, device=x.device)
    for level in range(levels):
        pts = x[order]
        G = 1 << level
        cnt = torch.bincount(group, minlength=G).clamp_min(1).to(x.dtype)[:, None]
        s1 = torch.zeros(G, d, dtype=x.dtype, device=x.device).index_add_(0, group, pts)
        s2 = torch.zeros(G, d, dtype=x.dtype, device=x.device).index_add_(0, group, pts * pts)
        axis = (s2 / cnt - (s1 / cnt) ** 2).argmax(1)  # the coordinate of largest spread in each cell
        key = pts.gather(1, axis[group][:, None]).squeeze(1).double()
        mean = (s1 / cnt).gather(1, axis[:, None]).squeeze(1).double()[group]
        std = ((s2 / cnt).gather(1, axis[:, None]).squeeze(1).double()[group] - mean**2).clamp_min(1e-300).sqrt()
        perm = _argsort(group.double() + 0.5 * torch.sigmoid((key - mean) / std))  # by cell, then by the key
        order = order[perm]  # groups are contiguous and sorted: group[perm] == group
        counts = torch.bincount(group, minlength=G)
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(n, device=x.device) - starts[group]
        group = 2 * group + (pos >= (counts // 2)[group]).long()
    return order, group


def _argsort(t: torch.Tensor) -> torch.Tensor:
    """A stable argsort, through numpy on the CPU (several times faster than torch's there)."""
    if t.device.type == "cpu":
        return torch.from_numpy(t.numpy().argsort(kind="stable"))
    return torch.argsort(t, stable=True)


class Clusters:
    r"""The leaves of a balanced k-d tree of ``x (n, d)`` (detached), as a padded layout for tiled reductions.

    Attributes: ``K`` leaves of at most ``S`` points; ``index (K * S,)``: the point in each slot (``n`` for a
    padding slot); ``slot (n,)``: the slot of each point; ``leaf (n,)``: the leaf of each point; ``counts (K,)``;
    ``levels`` of the tree (``K = 2^levels``).

    Example:
        >>> import torch
        >>> cl = Clusters(torch.rand(100, 3), leaf_size=16)
        >>> cl.K, cl.S, bool((cl.index[cl.slot] == torch.arange(100)).all())
        (8, 13, True)
    """

    def __init__(self, x: torch.Tensor, leaf_size: int):
        x = x.detach()
        n = x.shape[0]
        self.n = n
        self.levels = max(0, math.ceil(math.log2(max(1.0, n / leaf_size))))
        order, leaf = kd_leaves(x, self.levels)
        self.K = 1 << self.levels
        counts = torch.bincount(leaf, minlength=self.K)
        self.S = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(n, device=x.device) - starts[leaf]
        slot_sorted = leaf * self.S + pos
        self.index = torch.full((self.K * self.S,), n, dtype=torch.long, device=x.device)
        self.index[slot_sorted] = order
        self.slot = torch.empty(n, dtype=torch.long, device=x.device)
        self.slot[order] = slot_sorted
        self.leaf = torch.empty(n, dtype=torch.long, device=x.device)
        self.leaf[order] = leaf
        self.counts = counts

    def coarse(self, level: int) -> torch.Tensor:
        """The coarse cluster (``0 .. 2^level - 1``) of each point: its leaf's ancestor at ``level``."""
        return self.leaf >> max(0, self.levels - level)

    def pad(self, t: torch.Tensor, fill: float) -> torch.Tensor:
        """``t (n, ...)`` in the padded layout ``(K, S, ...)``, padding slots set to ``fill`` (differentiable)."""
        ext = torch.cat([t, t.new_full((1, *t.shape[1:]), fill)])
        return ext[self.index].reshape(self.K, self.S, *t.shape[1:])

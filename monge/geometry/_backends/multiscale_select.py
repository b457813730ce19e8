r"""The block lists of the multiscale soft-min: a walk of the column k-d tree per row leaf (compiled), no ``K x K``
matrix.

Both clouds are complete k-d trees (:class:`~._backends.clustering.Clusters`, ``K = 2^levels`` leaves), stored as
heaps (root 1, children ``2k, 2k + 1``, leaf ``J`` at ``K + J``) of float64 bounding boxes. For a row leaf
``I``, a column node ``J`` and :math:`L_J = \varepsilon \log \sum_{j \in J} e^{h_j/\varepsilon}`,

.. math::
    \sum_{j \in J} e^{(h_j - C_{ij})/\varepsilon} \le e^{(L_J - \phi(t_{\min}(I, J)))/\varepsilon}
    \quad (i \in I),

with :math:`t_{\min}` the box-to-box distance. :func:`select` opens a node only when its term times the row's
estimated output factor :math:`e^{\text{est}_I/\varepsilon}` reaches ``tau`` (``rtol / 64``, smaller for the rows
whose dropped sum would exceed ``rtol / 2``); the leaves it reaches are kept, everything else is dropped whole and
summed into ``log D_I``. :func:`dropped` re-evaluates that bound for a given list at new potentials. Work
O(visited nodes) per row leaf, memory O(K + kept pairs).
"""

from __future__ import annotations

import math

import torch

from ... import _core
from ..costs import Cosine, Cost, Euclidean, SqEuclidean
from .clustering import Clusters

__all__ = ["heap_boxes", "node_lse", "select", "dropped", "plan_from_csr", "cost_kind", "TAU"]

TAU = 1.0 / 64.0  #: the first threshold of a walk, relative to rtol (shrunk per row while its dropped sum is large)
_GROUP = 1 << 23  # gathered target coordinates per group of tiles (32 MB in float32)


def cost_kind(cost_fn: Cost) -> tuple[int, float]:
    """The compiled walk's ``(kind, param)`` for ``phi``: 0 ``s t^2``, 1 ``t^p``, 2 ``min(t^2/2, 2)`` (cosine)."""
    if isinstance(cost_fn, SqEuclidean):
        return 0, float(cost_fn.scale)
    if isinstance(cost_fn, Euclidean):
        return 1, float(cost_fn.p)
    if isinstance(cost_fn, Cosine):
        return 2, 0.0
    raise TypeError(f"cost_fn: expected SqEuclidean, Euclidean or Cosine, got {cost_fn!r}")


def _heap(leaves: torch.Tensor, pair) -> torch.Tensor:
    """A complete tree ``(2K, ...)`` over ``K`` leaves, internal nodes ``pair(children (k, 2, ...))``."""
    K = leaves.shape[0]
    out = leaves.new_empty(2 * K, *leaves.shape[1:])
    out[K:] = leaves
    k = K
    while k > 1:
        out[k // 2:k] = pair(out[k:2 * k].reshape(k // 2, 2, *leaves.shape[1:]))
        k //= 2
    out[0] = out[1]  # unused slot, a copy of the root
    return out


def heap_boxes(cl: Clusters, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounding boxes ``(lo, hi)``, each ``(2K, d)`` float64, of every node of ``cl``'s tree for the points ``pts``.

    Example:
        >>> import torch
        >>> x = torch.rand(100, 2, dtype=torch.float64)
        >>> lo, hi = heap_boxes(Clusters(x, 16), x)
        >>> bool((lo[1] == x.amin(0)).all() and (hi[1] == x.amax(0)).all()), tuple(lo.shape)
        (True, (16, 2))
    """
    p = pts.detach().double()
    lo = cl.pad(p, math.inf).amin(1)
    hi = cl.pad(p, -math.inf).amax(1)
    return (_heap(lo, lambda t: t.amin(1)).contiguous(), _heap(hi, lambda t: t.amax(1)).contiguous())


def node_lse(hp: torch.Tensor, eps: float) -> torch.Tensor:
    """``L (2K,)`` float64: :math:`\\varepsilon \\log \\sum_{j \\in J} e^{h_j/\\varepsilon}` of every node, from the
    padded potentials ``hp (K, S)`` (padding ``-inf``)."""
    leaves = torch.logsumexp(hp.double() / eps, 1)
    return (eps * _heap(leaves, lambda t: torch.logaddexp(t[:, 0], t[:, 1]))).contiguous()


def select(boxes, L, est, eps: float, rtol: float, kind: tuple[int, float], max_kept: int, threads: int):
    """``(ptr int64 (Kr + 1,), cols int32, logD (Kr,))`` of the walk (see the module's docstring), or ``None``
    when more than ``max_kept`` leaf pairs would be kept. ``est (Kr,)``: NaN where only the rigorous bound
    :math:`\\min_J (\\phi(t_{\\max}) - L_J)` is known."""
    (rlo, rhi), (clo, chi) = boxes
    logr = math.log(rtol)
    ptr, cols, logD = _core.blocks_select(rlo.numpy(), rhi.numpy(), clo.numpy(), chi.numpy(), L.numpy(),
                                          est.double().contiguous().numpy(), eps, logr + math.log(TAU),
                                          logr - math.log(2.0), kind[0], kind[1], int(max_kept), threads)
    if int(ptr[-1]) > max_kept:
        return None
    return torch.from_numpy(ptr), torch.from_numpy(cols), torch.from_numpy(logD)


def dropped(boxes, L, est, eps: float, rtol: float, kind: tuple[int, float], ptr, cols, threads: int):
    """``log D_I (Kr,)``: the dropped bound of the list ``(ptr, cols)`` at the node log-sums ``L``."""
    (rlo, rhi), (clo, chi) = boxes
    return torch.from_numpy(_core.blocks_dropped(
        rlo.numpy(), rhi.numpy(), clo.numpy(), chi.numpy(), L.numpy(), est.double().contiguous().numpy(), eps,
        math.log(rtol * TAU), kind[0], kind[1], ptr.numpy(), cols.numpy(), threads))


def plan_from_csr(ptr: torch.Tensor, cols: torch.Tensor, Kc: int) -> list:
    """Groups of row tiles ``(rows, ids)`` for the torch path: tiles of similar block counts together, ``ids (B, c)``
    their kept column leaves padded with the empty leaf ``Kc``; at most ``_GROUP`` gathered entries per group."""
    count = ptr[1:] - ptr[:-1]
    order = torch.argsort(count, descending=True, stable=True)
    ext = torch.cat([cols.long(), torch.tensor([Kc])])
    nnz = cols.shape[0]
    groups, i, Kr = [], 0, count.shape[0]
    while i < Kr:
        c = max(1, int(count[order[i]]))
        rows = order[i:i + max(1, min(Kr - i, (_GROUP // 64) // c))]
        pos = torch.arange(c)[None, :]
        idx = torch.where(pos < count[rows, None], ptr[rows, None] + pos, nnz)
        groups.append((rows, ext[idx]))
        i += rows.shape[0]
    return groups

r"""Collectives of the sharded point-cloud geometry (:mod:`monge.geometry.sharded`), over ``torch.distributed``.

A soft-min over a dimension split across ``R`` ranks is the soft-min of the ranks' partial soft-mins:

.. math::
    -\varepsilon \log \sum_{j} e^{(h_j - C_{ij})/\varepsilon}
    = -\varepsilon \log \sum_{r=1}^R e^{-s^{(r)}_i/\varepsilon}, \qquad
    s^{(r)}_i = -\varepsilon \log \sum_{j \in J_r} e^{(h_j - C_{ij})/\varepsilon},

combined stably (max + sum of exponentials, i.e. a log-sum-exp over the rank axis) after one all-gather of the
``R`` partial vectors. Every rank then holds the same combined vector, bit for bit, so replicated loop decisions
(stop tests, over-relaxation) agree across ranks. Gradients w.r.t. the points: each rank differentiates its copy of
the replicated computation through its own blocks; the points' all-gather sums the pieces back to their owners
(an all-reduce in the backward pass), the partial soft-mins' all-gather passes each rank its own slice.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_cat", "combine_softmins", "rank_sizes", "all_reduce_sum", "world"]


def world(group=None) -> tuple[int, int]:
    """``(rank, world size)`` in ``group``; a ``ValueError`` with the fix when no process group is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("group: a sharded geometry needs torch.distributed initialised (call "
                         "torch.distributed.init_process_group('nccl' or 'gloo') first, e.g. under torchrun)")
    return dist.get_rank(group), dist.get_world_size(group)


def _plain_gather(t: torch.Tensor, group) -> list[torch.Tensor]:
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, t.contiguous(), group=group)
    return out


class _GatherShared(torch.autograd.Function):
    """All-gather of a tensor each rank owns a piece of, used by every rank (the points): the gradient of a piece
    is the sum over ranks of what each rank's use of it received (an all-reduce, which gloo and NCCL both have)."""

    @staticmethod
    def forward(ctx, t, group):
        ctx.group = group
        return torch.stack(_plain_gather(t, group))

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[dist.get_rank(ctx.group)], None


class _GatherReplicated(_GatherShared):
    """All-gather whose result feeds a computation every rank repeats identically (the combined soft-min): each
    rank already holds the whole downstream gradient, so its own piece's gradient is its slice, no communication
    (the forward pass is :class:`_GatherShared`'s)."""

    @staticmethod
    def backward(ctx, grad):
        return grad[dist.get_rank(ctx.group)], None


def _gather(t: torch.Tensor, group, replicated: bool = False) -> list[torch.Tensor]:
    """All ranks' copies of ``t`` (same shape everywhere); differentiable when ``t`` needs gradients."""
    if torch.is_grad_enabled() and t.requires_grad:
        fn = _GatherReplicated if replicated else _GatherShared
        return list(fn.apply(t.contiguous(), group).unbind(0))
    return _plain_gather(t, group)


def rank_sizes(n_local: int, device, group=None) -> list[int]:
    """The local sizes of every rank (one small all-gather)."""
    t = torch.tensor([n_local], dtype=torch.int64, device=device)
    return [int(s) for s in _gather(t, group)]


def all_gather_cat(t: torch.Tensor, sizes: list[int], dim: int, group=None) -> torch.Tensor:
    """Concatenate every rank's ``t`` along ``dim`` (sizes may differ: padded to the largest, then trimmed)."""
    dim = dim % t.dim()
    top = max(sizes)
    pad = top - t.shape[dim]
    if pad:
        t = torch.cat([t, t.new_zeros((*t.shape[:dim], pad, *t.shape[dim + 1:]))], dim)
    parts = _gather(t, group)
    return torch.cat([p.narrow(dim, 0, s) for p, s in zip(parts, sizes)], dim)


def combine_softmins(partial: torch.Tensor, eps: float, group=None) -> torch.Tensor:
    """The soft-min over the whole sharded dimension from each rank's partial soft-min (same shape everywhere)."""
    parts = torch.stack(_gather(partial, group, replicated=True))
    return -eps * torch.logsumexp(-parts / eps, dim=0)


def all_reduce_sum(t: torch.Tensor, group=None) -> torch.Tensor:
    """The sum over ranks of a replicated computation's pieces (differentiable when ``t`` needs gradients)."""
    return torch.stack(_gather(t, group, replicated=True)).sum(0)

r"""Minibatch OT couplings for flow matching: pair each source sample with a target sample by optimal transport.

Conditional flow matching with an OT coupling (Tong et al. 2024, Pooladian et al. 2023) replaces the independent
pairing of a noise batch ``x0`` and a data batch ``x1`` by the optimal one for the squared Euclidean cost,

.. math::
    \sigma^\star = \arg\min_{\sigma \in S_n} \sum_{i=1}^n \lVert x_0^{(i)} - x_1^{(\sigma(i))} \rVert^2,

which straightens the learned paths. :func:`ot_pairs` returns ``(x0, x1[sigma])`` for a batch, or for a stack of
batches ``(B, n, ...)`` solved at once (``batch_dims=1``).

Methods:

- ``"auto"`` (default): the fastest exact path for the input's device: the compiled LAPJV for CPU tensors, the
  batched torch auction (certified by its duality gap) for tensors on an accelerator, without a copy to the host.
- ``"exact"``: the compiled LAPJV (float64 on the CPU; the pairing comes back on the input's device).
- ``"auction"``: the batched torch auction (:class:`~monge.solvers.exact.auction.Auction`): stays on the input's
  device (GPU), certified within ``n * eps`` of the optimum (exact for integer costs).
- ``"sinkhorn"``: an entropic plan at ``eps`` (relative to the mean cost, ``eps_rel``), then for each row ``i`` a
  column sampled from :math:`P_{i\cdot} / a_i` (pairs may repeat targets: a stochastic, smoother coupling).
"""

from __future__ import annotations

import torch

from .._validation import as_tensor

__all__ = ["ot_match", "ot_pairs"]

_METHODS = ("auto", "exact", "auction", "sinkhorn")


def _flat_cost(x0: torch.Tensor, x1: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """Squared Euclidean costs ``(..., n, n)`` between flattened samples (features after the sample dim)."""
    if x0.dim() < batch_dims + 2 or x0.shape != x1.shape:
        raise ValueError(f"x0, x1: expected two batches of the same shape (*batch, n, ...) with {batch_dims} batch "
                         f"dims, got {tuple(x0.shape)} and {tuple(x1.shape)}; pass equal-size minibatches "
                         "with at least one feature dim (scalars: (n, 1))")
    if x0.dtype != x1.dtype or x0.device != x1.device:
        raise TypeError(f"x0, x1: expected one dtype and device, got {x0.dtype}/{x0.device} and "
                        f"{x1.dtype}/{x1.device}; move x1 with x1.to(x0)")
    lead = batch_dims + 1
    a = x0.reshape(*x0.shape[:lead], -1)
    b = x1.reshape(*x1.shape[:lead], -1)
    sq = (a * a).sum(-1).unsqueeze(-1) + (b * b).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2)
    return sq.clamp(min=0)


def ot_match(x0, x1, *, method: str = "auto", batch_dims: int = 0, eps_rel: float = 0.05, generator=None,
             **options) -> torch.Tensor:
    r"""The index ``sigma`` (int64, ``(n,)`` or ``(B, n)``) pairing ``x0[i]`` with ``x1[sigma[i]]``.

    Args:
        x0, x1: minibatches ``(*batch, n, ...)`` of the same shape, dtype and device (samples of any shape,
            e.g. images ``(n, C, H, W)``; scalars as ``(n, 1)``).
        method: ``"auto"``, ``"exact"``, ``"auction"`` or ``"sinkhorn"`` (see the module).
        batch_dims: how many leading dims index independent minibatches solved at once (0: one minibatch).
        eps_rel: sinkhorn only: eps as a fraction of the mean cost.
        generator: sinkhorn only: the ``torch.Generator`` of the sampling.
        **options: passed to the solver (``Auction``'s ``eps``, ``tol``...; Sinkhorn's ``tol``, ``max_iter``).

    Example:
        >>> import torch
        >>> x0 = torch.tensor([[0.0], [10.0]]); x1 = torch.tensor([[11.0], [1.0]])
        >>> ot_match(x0, x1).tolist(), ot_match(x0, x1, method="auction").tolist()
        ([1, 0], [1, 0])
    """
    x0, x1 = as_tensor(x0, "x0"), as_tensor(x1, "x1")
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    C = _flat_cost(x0.detach(), x1.detach(), batch_dims)
    if method == "auto":
        method = "exact" if C.device.type == "cpu" else "auction"
    if method == "exact":
        from ..api import assignment
        return assignment(C, **options).cols
    if method == "auction":
        from ..solvers.exact.auction import Auction
        return Auction(**options)(C).cols
    from ..api import solve
    eps = eps_rel * float(C.mean().clamp(min=torch.finfo(C.dtype).tiny))
    P = solve(C, eps=eps, **options).plan
    n = C.shape[-1]
    rows = P.reshape(-1, n).clamp(min=0)
    return torch.multinomial(rows, 1, generator=generator).reshape(C.shape[:-1])


def ot_pairs(x0, x1, *, method: str = "auto", batch_dims: int = 0, **options) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Minibatch OT coupling: ``(x0, x1[sigma])`` with ``sigma`` from :func:`ot_match` (same options).

    Gradients flow through the returned tensors (the pairing itself is a discrete choice).

    Example (a flow-matching loop sketch: learn ``v(x_t, t) ~ x1 - x0`` along straight OT paths):
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2))
        >>> opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        >>> for step in range(3):
        ...     x1 = torch.randn(64, 2) * 0.1 + torch.tensor([2.0, 0.0])   # a data minibatch
        ...     x0, x1 = ot_pairs(torch.randn(64, 2), x1, method="auction")  # noise, paired by OT
        ...     t = torch.rand(64, 1)
        ...     xt = (1 - t) * x0 + t * x1
        ...     loss = ((net(torch.cat([xt, t], 1)) - (x1 - x0)) ** 2).mean()
        ...     opt.zero_grad(); loss.backward(); opt.step()
        >>> x0, x1 = ot_pairs(torch.randn(8, 2), torch.randn(8, 2))
        >>> x0.shape, x1.shape
        (torch.Size([8, 2]), torch.Size([8, 2]))
    """
    x0, x1 = as_tensor(x0, "x0"), as_tensor(x1, "x1")
    sigma = ot_match(x0, x1, method=method, batch_dims=batch_dims, **options)
    idx = sigma.reshape(*sigma.shape, *([1] * (x1.dim() - sigma.dim()))).expand_as(x1)
    return x0, x1.gather(batch_dims, idx)

r"""Batched linear assignment by the eps-scaling auction algorithm (Bertsekas), in pure torch.

Every problem of a batch ``C (B, n, m)`` is solved at once on the input's device (CPU or CUDA) without copying
to the host: the loop synchronises only at check points (every ``check_every`` bidding rounds) to learn how many
persons are still unassigned.

Forward auction (minimisation form). Columns carry prices :math:`p_j`; an unassigned row ``i`` bids for its
cheapest column :math:`j_1 = \arg\min_j C_{ij} + p_j`, raising its price by the margin to the second cheapest
plus :math:`\varepsilon`; each column goes to its highest bid and the previous owner is unassigned (Jacobi
rounds: all bidders of a round bid simultaneously). Every matched pair then satisfies
:math:`\varepsilon`-complementary slackness :math:`C_{i\sigma(i)} + p_{\sigma(i)} \le \min_j (C_{ij} + p_j) +
\varepsilon`, so with the dual pair

.. math::
    g_j = -p_j, \qquad f_i = \min_j \big(C_{ij} - g_j\big), \qquad f_i + g_j \le C_{ij},

the duality gap :math:`\sum_i C_{i\sigma(i)} - \sum_i f_i - \sum_j g_j \le n\varepsilon`. The gap reported is
measured (in float64) on the returned assignment and duals, not the bound.

Certificates:

- **integer-valued costs** (detected): ``eps`` ends below :math:`1/n`, so the gap is below 1 and the assignment is
  optimal (every other assignment costs an integer :math:`\ge` the dual :math:`>` value - 1). ``converged`` means
  "gap < 1", a proof of optimality. (Where the dtype cannot resolve such an eps at the cost scale, e.g. float32
  costs of 10^5, a warning says so and the real-cost meaning below applies.)
- **real costs**: ``converged`` means "gap <= tol" (cost units): the value is within ``tol`` of the optimum, not
  proven exactly optimal. ``tol`` defaults to ``n * eps_final``, the eps-CS bound.

References:
    D. P. Bertsekas, "The auction algorithm: a distributed relaxation method for the assignment problem",
    Annals of Operations Research 14 (1988). D. P. Bertsekas, D. A. Castanon, "Parallel synchronous and
    asynchronous implementations of the auction algorithm", Parallel Computing 17 (1991).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..._validation import as_tensor, check_cost_matrix, check_int, check_positive
from ..._warnings import warn
from ...results import AssignmentResult, Convergence

__all__ = ["Auction", "auction_assignment"]

_REL_EPS = {torch.float64: 1e-9, torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def _bid_round(C, p, owner, obj, eps, K: int):
    """One Jacobi round: up to ``K`` free rows per problem bid; columns go to their highest bid.

    ``owner (B, m + 1)`` column -> row (-1 free; slot m is a dump), ``obj (B, n + 1)`` row -> column (slot n: dump).
    """
    B, n, m = C.shape
    free = obj[:, :n] < 0
    rows = torch.topk(free.to(C.dtype), K, dim=1).indices                     # free rows first
    active = free.gather(1, rows)
    w = C.gather(1, rows.unsqueeze(-1).expand(B, K, m)) + p.unsqueeze(1)        # (B, K, m): cost + price
    two = torch.topk(w, 2, dim=-1, largest=False)
    j = two.indices[..., 0]
    bid = p.gather(1, j) + (two.values[..., 1] - two.values[..., 0]) + eps    # the new price of column j
    bid = torch.where(active, bid, torch.full_like(bid, -math.inf))
    best = torch.full_like(p, -math.inf).scatter_reduce(1, j, bid, "amax")
    won = active & (bid == best.gather(1, j))
    winner = torch.full_like(owner[:, :m], -1).scatter_reduce(1, j, torch.where(won, rows, -1), "amax")
    got = winner >= 0
    prev = owner[:, :m]
    obj.scatter_(1, torch.where(got & (prev >= 0), prev, n), -1)              # outbid rows become free
    cols = torch.arange(m, device=C.device).expand(B, m)
    obj.scatter_(1, torch.where(got, winner, n), cols)
    owner[:, :m] = torch.where(got, winner, prev)
    return torch.where(got, best, p)


def _release_violators(C, p, owner, obj, eps):
    """Start of a phase: unassign the rows whose pair violates eps-complementary slackness at the new eps."""
    B, n, m = C.shape
    w = C + p.unsqueeze(1)
    cur = obj[:, :n]
    mine = w.gather(2, cur.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    bad = (cur >= 0) & (mine > w.amin(-1) + eps)
    owner.scatter_(1, torch.where(bad, cur, m), -1)
    obj[:, :n] = torch.where(bad, -1, cur)


def _complete(obj, owner, n: int, m: int):
    """Give the rows left unassigned (iteration cap) the free columns in order, so a matching is returned."""
    free_r = obj[:, :n] < 0
    free_c = owner[:, :m] < 0
    r = torch.argsort((~free_r).to(torch.int32), dim=1, stable=True)
    c = torch.argsort((~free_c).to(torch.int32), dim=1, stable=True)[:, :n]
    k = torch.arange(n, device=obj.device).expand_as(r)
    fill = k < free_r.sum(1, keepdim=True)
    cols = obj[:, :n].clone()
    cols.scatter_(1, r, torch.where(fill, c, obj[:, :n].gather(1, r)))
    return cols


def _certificate(C, cols, p, square: bool):
    """``(value, f, g, gap)`` in float64 from the assignment and the prices (duals always feasible)."""
    C64 = C.to(torch.float64)
    value = C64.gather(2, cols.unsqueeze(-1)).squeeze(-1).sum(-1)
    g = -p.to(torch.float64)
    if not square:  # n < m: the dual needs g <= 0; the best uniform shift is -max g
        g = g - g.amax(-1, keepdim=True)
    f = (C64 - g.unsqueeze(1)).amin(-1)
    gap = value - f.sum(-1) - g.sum(-1)
    return value, f, g, gap


@dataclass(frozen=True)
class Auction:
    r"""Batched assignment by the eps-scaling forward auction (Jacobi bidding), on the input's device.

    .. math::
        \min_{\sigma \text{ injective}} \sum_{i=1}^n C_{i\sigma(i)}, \qquad
        \text{gap} = \sum_i C_{i\sigma(i)} - \Big(\sum_i f_i + \sum_j g_j\Big) \le n\,\varepsilon_{final}

    Args:
        eps: the final eps in cost units (``None``: ``1 / (2n)`` for integer-valued costs, which proves
            optimality; else ``spread * 1e-9`` in float64, ``spread * 2e-6`` in float32), never below what the
            dtype resolves at the price scale.
        tol: duality-gap tolerance in cost units for real costs (``None``: ``n * eps``); ignored for integer
            costs, where converged means gap < 1 (optimal). For n < m the bound is ``m * eps``.
        scaling: eps is divided by this factor between phases (> 1).
        max_iter: cap on the bidding rounds over all phases (then the free rows get the free columns in order,
            and the measured gap says how far from optimal that is: ``converged=False``).
        check_every: bidding rounds between synchronisations with the device.
        engine: ``"auto"`` (default): CPU tensors go to the compiled LAPJV batch (exact, threads over the batch,
            20-100x faster than torch bidding there), other devices to the torch auction; ``"torch"``: the torch
            auction on any device. Both report the duality gap measured by the same float64 certificate.

    Returns an :class:`~monge.results.AssignmentResult`; ``convergence.criterion == "duality_gap"``, ``error``
    and ``duality_gap`` hold the measured gap (input dtype), ``n_iters`` the bidding rounds.

    Example:
        >>> import torch
        >>> C = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
        >>> res = Auction()(C)
        >>> res.cols.tolist(), float(res.value), bool(res.convergence.converged)
        ([1, 0, 2], 5.0, True)
    """

    eps: float | None = None
    tol: float | None = None
    scaling: float = 5.0
    max_iter: int = 100_000
    check_every: int = 8
    engine: str = "auto"

    def __post_init__(self):
        if self.engine not in ("auto", "torch"):
            raise ValueError(f"engine: expected 'auto' (compiled LAPJV on CPU, torch auction elsewhere) or 'torch', "
                             f"got {self.engine!r}")
        check_positive(self.eps, "eps", allow_none=True)
        check_positive(self.tol, "tol", allow_none=True)
        if not self.scaling > 1:
            raise ValueError(f"scaling: expected a factor > 1 (eps is divided by it each phase), got "
                             f"{self.scaling!r}; pass e.g. scaling=5.0")
        check_int(self.max_iter, "max_iter")
        check_int(self.check_every, "check_every")

    def __call__(self, C) -> AssignmentResult:
        C = as_tensor(C, "C")
        check_cost_matrix(C, "C")
        if not C.is_floating_point():
            C = C.to(torch.get_default_dtype())
        n, m = C.shape[-2:]
        if n > m:
            raise ValueError(f"C: expected n <= m rows for an assignment, got shape {tuple(C.shape)}; pass "
                             "C.transpose(-1, -2) to match the columns instead")
        batch = C.shape[:-2]
        Cf = C.detach().reshape(-1, n, m)
        with torch.no_grad():
            solve = self._solve_compiled if self.engine == "auto" and Cf.device.type == "cpu" else self._solve
            cols, p, rounds, integer, done, eps_final = solve(Cf)
            value, f, g, gap = _certificate(Cf, cols, p, n == m)
        proof = integer and eps_final * m < 1  # the gap bound m * eps < 1 proves optimality
        tol = 1.0 - 1e-9 if proof else (self.tol if self.tol is not None else m * eps_final)
        if not bool(done.all()):
            warn(f"auction: {int((~done).sum())} of {Cf.shape[0]} problems hit max_iter={self.max_iter} bidding "
                 "rounds; their matching was completed arbitrarily (the measured gap says how far from optimal). "
                 "Raise max_iter or eps.")
        err = gap.clamp(min=0)  # the certificate, measured on the returned matching and duals
        conv = Convergence.build(err.reshape(batch).to(C.dtype), tol, rounds, criterion="duality_gap",
                                 duality_gap=gap.reshape(batch).to(C.dtype))
        tcols = cols.reshape(*batch, n)
        value = C.gather(-1, tcols.unsqueeze(-1)).squeeze(-1).sum(-1)  # differentiable: d value / dC = plan
        return AssignmentResult(cols=tcols, value=value, f=f.reshape(*batch, n).to(C.dtype),
                                g=g.reshape(*batch, m).to(C.dtype), convergence=conv, shape=(n, m))

    def _eps_final(self, C, integer: bool, stats=None) -> float:
        """``stats``: ``(max - min, max |C|)`` when already known."""
        n = C.shape[-2]
        if stats is None:
            stats = (float(C.amax() - C.amin()), float(C.abs().amax())) if C.numel() else (0.0, 0.0)
        spread = stats[0]
        floor = 64 * torch.finfo(C.dtype).eps * (stats[1] + spread + 1e-300) if C.numel() else 0.0
        if self.eps is not None:
            eps = self.eps
        elif integer:
            eps = 1.0 / (2 * n)
        else:
            eps = max(spread, 1e-300) * _REL_EPS.get(C.dtype, 1e-6)
        return max(eps, floor)

    def _solve(self, C):
        B, n, m = C.shape
        integer = bool(torch.isfinite(C).all()) and bool((C == C.round()).all()) and C.numel() > 0
        if m == 1 or B == 0:
            zeros = torch.zeros((B, n), dtype=torch.int64, device=C.device)
            return zeros, C.new_zeros((B, m)), 0, integer, torch.ones(B, dtype=torch.bool, device=C.device), 0.0
        if n < m:  # dummy rows of cost 0 take the columns left over; the optimum of the real rows is unchanged
            C = torch.cat([C, C.new_zeros((B, m - n, m))], dim=1)
        eps_final = self._eps_final(C, integer)
        if integer and self.eps is None and eps_final * C.shape[1] >= 1:
            warn(f"auction: integer costs, but {str(C.dtype).split('.')[-1]} cannot resolve eps below "
                 f"{eps_final:.1e} at this cost scale, so the gap may exceed 1 and optimality is not proven (converged means gap <= n * eps); "
                 "pass C.double() for a proof.")
        spread = float(C.amax() - C.amin())
        # geometric schedule anchored at eps_final (no tiny last step): eps_final * scaling^k, first >= spread / 4
        k = max(0, math.ceil(math.log(max(spread / 4, eps_final) / eps_final) / math.log(self.scaling)))
        eps = eps_final * self.scaling ** k
        N = C.shape[1]
        p = C.new_zeros((B, m))
        owner = torch.full((B, m + 1), -1, dtype=torch.int64, device=C.device)
        obj = torch.full((B, N + 1), -1, dtype=torch.int64, device=C.device)
        rounds = 0
        while True:
            _release_violators(C, p, owner, obj, eps)
            p, rounds = self._phase(C, p, owner, obj, eps, rounds)
            if k == 0 or rounds >= self.max_iter:
                break
            k -= 1
            eps = eps_final * self.scaling ** k
        done = (obj[:, :N] >= 0).all(1)
        cols = _complete(obj, owner, N, m) if not bool(done.all()) else obj[:, :N]
        return cols[:, :n], p, rounds, integer, done, eps_final

    def _solve_compiled(self, C):
        """The CPU path: the compiled LAPJV on the whole batch (exact; its column duals are the prices, so the
        certificate measures the same gap as for an auction, ~0 up to rounding). Reductions in numpy, one copy."""
        from ... import _core
        from ._batch import to_numpy64

        B, n, m = C.shape
        C64 = to_numpy64(C)
        cols, _, v, _, _ = _core.assignment_batch(C64, 0)
        lo, hi = (float(C64.min()), float(C64.max())) if C64.size else (0.0, 0.0)
        integer = C64.size > 0 and bool(np.array_equal(C64, np.round(C64)))
        eps_final = self._eps_final(C, integer, (hi - lo, max(abs(lo), abs(hi))))
        return (torch.from_numpy(cols.astype(np.int64, copy=False)).reshape(B, n), torch.from_numpy(-v).reshape(B, m),
                0, integer, torch.ones(B, dtype=torch.bool), eps_final)

    def _phase(self, C, p, owner, obj, eps, rounds: int):
        """Bid until every row is matched (checked every ``check_every`` rounds) or the cap is reached."""
        n = C.shape[1]
        K = n
        while rounds < self.max_iter:
            n_free = int((obj[:, :n] < 0).sum(1).amax())  # the check point: one synchronisation
            if n_free == 0:
                break
            K = min(n, 1 << (n_free - 1).bit_length())  # free rows never increase within a phase
            for _ in range(min(self.check_every, self.max_iter - rounds)):
                p = _bid_round(C, p, owner, obj, eps, K)
                rounds += 1
        return p, rounds


def auction_assignment(C, **options) -> AssignmentResult:
    """Functional form of :class:`Auction`: ``auction_assignment(C, eps=..., tol=...)``.

    Example:
        >>> import torch
        >>> auction_assignment(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).cols.tolist()
        [1, 0]
    """
    return Auction(**options)(C)

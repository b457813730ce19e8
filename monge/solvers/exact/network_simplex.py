r"""Exact OT by the network simplex (C++ core in ``csrc/network_simplex.cpp``)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ... import _core
from ..._validation import check_int
from ..._warnings import warn
from ...problems.linear import LinearProblem
from ...ops.broadcast import broadcast_shapes
from ...results import Convergence, ExactResult
from ._batch import EnvelopeValue, needs_grad, to_numpy64, to_tensor

__all__ = ["NetworkSimplex", "pack_exact", "solve_warm", "forest_basis"]

_STATUS = {0: "converged", 1: "max_iter", 2: "infeasible", 3: "diverged"}


@dataclass(frozen=True)
class NetworkSimplex:
    r"""Exact solver of the Kantorovich LP by the primal network simplex.

    .. math::
        \mathrm{OT}(a, b) = \min_{P \ge 0,\ P 1 = a,\ P^\top 1 = b} \langle P, C\rangle
        = \max_{f_i + g_j \le C_{ij}} \langle a, f\rangle + \langle b, g\rangle

    Runs in float64 on the CPU (inputs on other devices/dtypes are copied there and results copied back).
    Batches of independent problems run in parallel threads.

    Args:
        max_iter: cap on the number of pivots; ``None`` = no cap (the default: an exact solver must not stop
            early). A capped run that stops early reports ``converged=False``, status ``"max_iter"``
            and warns; its plan is feasible but not proven optimal.
        n_threads: threads for batches (``None``: one per core).

    Example:
        >>> import torch
        >>> from monge.geometry import DenseCost
        >>> C = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> res = NetworkSimplex()(LinearProblem(DenseCost(C)))
        >>> float(res.value), res.convergence.status
        (0.0, ('converged',))
    """

    max_iter: int | None = None
    n_threads: int | None = None

    def __post_init__(self):
        if self.max_iter is not None and (not isinstance(self.max_iter, int) or isinstance(self.max_iter, bool)
                                          or self.max_iter < 1):
            raise ValueError(f"max_iter: expected a positive int or None, got {self.max_iter!r}")
        check_int(self.n_threads, "n_threads", allow_none=True)

    def __call__(self, prob: LinearProblem) -> ExactResult:
        if not isinstance(prob, LinearProblem):
            raise TypeError(f"prob: expected a monge LinearProblem, got {type(prob).__name__}; or call monge.solve(C)")
        if not prob.is_balanced:
            raise ValueError(
                "rho_a/rho_b: the exact solver solves balanced problems only; use an entropic solver for "
                "unbalanced OT"
            )
        cost = prob.geom.cost()
        # one problem of plain vectors: the batch shape is () (the general rule, prob.batch_shape, costs ~10 us)
        shape = () if cost.dim() == 2 and prob.a.dim() == 1 and prob.b.dim() == 1 else prob.batch_shape
        C, a, b = _broadcast(cost, prob.a, prob.b)
        # one call for the whole batch: threads over the problems in C++, none for a single problem. Masses agree
        # to the input dtype's precision (checked by the problem); the core wants them equal in float64 (1e-9),
        # so it rescales b to the mass of a first (rebalance=True; on its own copy, never the caller's tensor).
        ints, flts = _core.network_simplex_batch(to_numpy64(a), to_numpy64(b), to_numpy64(C), self.max_iter or 0,
                                                 self.n_threads or 0, True)
        return _pack(*_unpack(ints, flts, *C.shape), C, a, b, shape, problem=prob)  # the problem: for the maps


def solve_warm(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, basis: np.ndarray | None = None,
               max_iter: int | None = None, n_threads: int | None = None):
    r"""The network simplex started from a given basis: ``(ExactResult, basis)``, for loops that solve a sequence of
    balanced problems with the same weights and nearby costs (conditional gradient, outer loops).

    A basis is the spanning tree of an optimal vertex: an ``int64`` array ``(..., n + m)`` giving the parent of every
    node (row ``i``: node ``i``, column ``j``: node ``n + j``, root: ``n + m``; ``-1`` for nodes of zero mass). The
    previous solve's basis is primal feasible for the same ``a, b`` whatever the cost; the solver recomputes its
    potentials :math:`f_i + g_j = C_{ij}` on the tree for the new ``C`` and pivots on from there. A basis that is not
    a (strongly) feasible tree for ``a, b`` is ignored (the greedy start is used): never a wrong answer, at worst
    a cold solve. ``C (..., n, m)``, ``a (..., n)``, ``b (..., m)`` with one batch shape (no broadcasting),
    ``basis`` ``None`` (cold) or as returned by the previous call.

    Example:
        >>> import torch
        >>> C = torch.rand(2, 5, 4, dtype=torch.float64)
        >>> a, b = torch.full((2, 5), 0.2, dtype=torch.float64), torch.full((2, 4), 0.25, dtype=torch.float64)
        >>> res, basis = solve_warm(C, a, b)
        >>> res2, _ = solve_warm(C + 0.01 * torch.rand(2, 5, 4, dtype=torch.float64), a, b, basis)
        >>> basis.shape, res2.convergence.status
        ((2, 9), ('converged', 'converged'))
    """
    shape = tuple(C.shape[:-2])
    n, m = C.shape[-2:]
    C3, a2, b2 = C.reshape(-1, n, m), a.reshape(-1, n), b.reshape(-1, m)
    if basis is not None:
        basis = np.ascontiguousarray(basis, dtype=np.int64).reshape(C3.shape[0], n + m)
    ints, flts, out, _ = _core.network_simplex_warm(to_numpy64(a2), to_numpy64(b2), to_numpy64(C3), basis,
                                                    max_iter or 0, n_threads or 0, True)
    res = _pack(*_unpack(ints, flts, *C3.shape), C3, a2, b2, shape)
    return res, out.reshape(*shape, n + m)


def forest_basis(rows, cols, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""A basis for :func:`solve_warm` from the support of a vertex plan, e.g. one built by a greedy or sorted
    (north-west corner) rule: the arcs ``(rows[k], cols[k])`` (a forest), each tree hung from the root, nodes of
    zero mass ``-1``. Entries of mass below ``1e-14`` of the total (rounding slivers) should be left out by the
    caller. Returns ``(n + m,)`` int64. A support with a cycle gives a tree that :func:`solve_warm` rejects.

    Example:
        >>> forest_basis([0, 1], [1, 0], np.array([0.5, 0.5]), np.array([0.5, 0.5])).tolist()
        [4, 4, 1, 0]
    """
    n, m = len(a), len(b)
    u = np.concatenate([np.asarray(rows), np.asarray(cols) + n])
    v = np.concatenate([np.asarray(cols) + n, np.asarray(rows)])
    order = np.argsort(u, kind="stable")
    nbr, start = v[order].tolist(), np.searchsorted(u[order], np.arange(n + m + 1)).tolist()
    parent = [-2] * (n + m)
    for s in range(n + m):
        if parent[s] != -2:
            continue
        parent[s], stack = n + m, [s]
        while stack:
            x = stack.pop()
            for y in nbr[start[x]:start[x + 1]]:
                if parent[y] == -2:
                    parent[y] = x
                    stack.append(y)
    out = np.array(parent, np.int64)
    out[np.concatenate([np.asarray(a) <= 0, np.asarray(b) <= 0])] = -1
    return out


def _broadcast(C, a, b):
    """Flatten the common batch shape: ``C (B, n, m)``, ``a (B, n)``, ``b (B, m)``."""
    n, m = C.shape[-2:]
    if C.dim() == 2 and a.dim() == 1 and b.dim() == 1:  # one problem: no broadcasting to work out
        return C.unsqueeze(0), a.unsqueeze(0), b.unsqueeze(0)
    batch = broadcast_shapes(C.shape[:-2], a.shape[:-1], b.shape[:-1])
    return (
        C.expand(*batch, n, m).reshape(-1, n, m),
        a.expand(*batch, n).reshape(-1, n),
        b.expand(*batch, m).reshape(-1, m),
    )


def pack_exact(out, C, a, b, batch_shape, a64, b64) -> ExactResult:
    """Turn per-problem core outputs ``(rows, cols, vals, f, g, cost, status, n_iter)`` into an ExactResult."""
    B, n, m = C.shape
    K = n + m - 1
    rows = np.zeros((B, K), np.int64)
    cols = np.zeros((B, K), np.int64)
    vals = np.zeros((B, K), np.float64)
    for i, o in enumerate(out):
        k = len(o[0])
        rows[i, :k], cols[i, :k], vals[i, :k] = o[0], o[1], o[2]
    f = np.stack([o[3] for o in out])
    g = np.stack([o[4] for o in out])
    cost = np.array([o[5] for o in out], np.float64)
    status = np.array([int(o[6]) for o in out], np.int64)
    n_iter = np.array([int(o[7]) for o in out], np.int64)
    row_m = np.stack([np.bincount(rows[i], vals[i], minlength=n) for i in range(B)])
    col_m = np.stack([np.bincount(cols[i], vals[i], minlength=m) for i in range(B)])
    merr = np.abs(row_m - a64).sum(-1) + np.abs(col_m - b64).sum(-1)
    gap = cost - (a64 * f).sum(-1) - (b64 * g).sum(-1)
    return _pack(rows, cols, vals, f, g, cost, status, n_iter, merr, gap, C, a, b, batch_shape, stacklevel=4)


def _unpack(ints, flts, B, n, m):
    """Split the core's packed outputs (see ``network_simplex_batch``) into numpy views."""
    K = n + m - 1
    return (ints[:, :K], ints[:, K:2 * K], flts[:, :K], flts[:, K:K + n], flts[:, K + n:K + n + m],
            flts[:, -3], ints[:, -2], ints[:, -1], flts[:, -2], flts[:, -1])


def _pack(rows, cols, vals, f, g, cost, status, n_iter, merr, gap, C, a, b, batch_shape, stacklevel=3, problem=None):
    """Build the ExactResult from the batched core outputs (numpy arrays with a leading batch dimension B)."""
    B, n, m = C.shape
    K = n + m - 1
    shape = tuple(batch_shape)
    codes = status.tolist()
    if 3 in codes:  # no representable answer: its certificate is infinite (the builder then says "diverged")
        merr = np.where(status == 3, np.inf, merr)
        bad = [i for i, s in enumerate(codes) if s == 3]
        warn(f"network simplex: {len(bad)} of {B} problems have no answer representable in float64: the cost matrix "
             "has non-finite entries (costs of points near 1e154 or beyond overflow: scale the points down), or the "
             "optimal value or a dual potential exceeds 1.8e308 (scale the costs down); converged=False, status "
             "'diverged'.")
    if any(c not in (0, 3) for c in codes):
        bad = [i for i, s in enumerate(codes) if s not in (0, 3)]
        warnings.warn(
            f"network simplex: {len(bad)} of {B} problems did not reach optimality "
            f"({_STATUS.get(codes[bad[0]], f'status {codes[bad[0]]}')}, {int(n_iter[bad[0]])} pivots); their plans "
            "are feasible but not optimal. Raise max_iter (None = no cap).",
            RuntimeWarning,
            stacklevel=stacklevel,
        )

    def t(x, *tail, dtype=None):  # shaped in numpy (cheap), then one tensor
        return to_tensor(x.reshape(shape + tail), C, dtype)

    trows, tcols, tvals = t(rows, K, dtype=torch.int64), t(cols, K, dtype=torch.int64), t(vals, K)
    tf, tg, value = t(f, n), t(g, m), t(cost)
    if needs_grad(C, a, b):
        flat = [x.reshape(B, -1) for x in (trows, tcols, tvals, tf, tg)]
        value = EnvelopeValue.apply(C, a, b, *flat, value.reshape(B)).reshape(shape)
    # converged = certified optimal by the core (no entering arc left), whatever the plan's l1 marginal error (the
    # reported error, ~1e-16): a per-element tol of +inf (certified) or -inf says so through the one builder;
    # infeasible (unequal masses, caught upstream) is "stalled"
    err = t(merr)
    tol, stalled = math.inf, None  # every problem certified (the common case: no per-element tensors to build)
    if any(codes):
        tol = torch.full_like(err, math.inf).masked_fill_(t(status != 0, dtype=torch.bool), -math.inf)
        stalled = t(status == 2, dtype=torch.bool)
    conv = Convergence.build(err, tol, t(n_iter, dtype=torch.int64), criterion="marginal_l1",
                             duality_gap=t(gap), stalled=stalled)
    return ExactResult(value=value, f=tf, g=tg, convergence=conv, rows=trows, cols=tcols, vals=tvals, shape=(n, m),
                       problem=problem)

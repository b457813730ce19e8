r"""Exact OT by the network simplex (C++ core in ``csrc/network_simplex.cpp``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ... import _core
from ...problems.linear import LinearProblem
from ...results import Convergence, ExactResult
from ._batch import EnvelopeValue, run_batched, to_numpy64

__all__ = ["NetworkSimplex", "pack_exact"]

_STATUS = {0: "optimal", 1: "max_iter_reached", 2: "infeasible"}


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
            early). A capped run that stops early reports ``converged=False``, status ``"max_iter_reached"``
            and warns; its plan is feasible but not proven optimal.
        n_threads: threads for batches (``None``: one per core).

    Example:
        >>> import torch
        >>> from monge.geometry import DenseCost
        >>> C = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> res = NetworkSimplex()(LinearProblem(DenseCost(C)))
        >>> float(res.value), res.convergence.status
        (0.0, ('optimal',))
    """

    max_iter: int | None = None
    n_threads: int | None = None

    def __post_init__(self):
        if self.max_iter is not None and (not isinstance(self.max_iter, int) or self.max_iter < 1):
            raise ValueError(f"max_iter: expected a positive int or None, got {self.max_iter!r}")

    def __call__(self, prob: LinearProblem) -> ExactResult:
        if not prob.is_balanced:
            raise ValueError(
                "rho_a/rho_b: the exact solver solves balanced problems only; use an entropic solver for "
                "unbalanced OT"
            )
        C, a, b = _broadcast(prob.geom.cost(), prob.a, prob.b)
        C64, a64, b64 = to_numpy64(C), to_numpy64(a), to_numpy64(b)
        # masses agree to the input dtype's precision (checked by the problem); the core wants them equal in
        # float64 (1e-9), so float32 weights are rebalanced here, on a copy (b64 may view the caller's tensor)
        ratio = a64.sum(-1) / b64.sum(-1)
        if not np.allclose(ratio, 1.0, rtol=1e-12, atol=0):
            b64 = b64 * ratio[:, None]
        cap = self.max_iter or 0
        out = run_batched(
            lambda i: _core.network_simplex(a64[i], b64[i], C64[i], cap), [(i,) for i in range(C64.shape[0])],
            self.n_threads,
        )
        return pack_exact(out, C, a, b, prob.batch_shape, a64, b64)


def _broadcast(C, a, b):
    """Flatten the common batch shape: ``C (B, n, m)``, ``a (B, n)``, ``b (B, m)``."""
    batch = torch.broadcast_shapes(C.shape[:-2], a.shape[:-1], b.shape[:-1])
    n, m = C.shape[-2:]
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
    f = np.stack([o[3] for o in out])
    g = np.stack([o[4] for o in out])
    cost = np.array([o[5] for o in out], np.float64)
    for i, o in enumerate(out):
        k = len(o[0])
        rows[i, :k], cols[i, :k], vals[i, :k] = o[0], o[1], o[2]
    status = tuple(_STATUS.get(int(o[6]), f"status {o[6]}") for o in out)
    gap = cost - (a64 * f).sum(-1) - (b64 * g).sum(-1)
    row_m = np.stack([np.bincount(rows[i], vals[i], minlength=n) for i in range(B)])
    col_m = np.stack([np.bincount(cols[i], vals[i], minlength=m) for i in range(B)])
    merr = np.abs(row_m - a64).sum(-1) + np.abs(col_m - b64).sum(-1)
    if any(s != "optimal" for s in status):
        bad = [i for i, s in enumerate(status) if s != "optimal"]
        warnings.warn(
            f"network simplex: {len(bad)} of {B} problems did not reach optimality ({status[bad[0]]}, "
            f"{int(out[bad[0]][7])} pivots); their plans are feasible but not optimal. Raise max_iter "
            "(None = no cap).",
            RuntimeWarning,
            stacklevel=3,
        )
    like = C
    t = lambda x, dt=None: torch.as_tensor(x, device=like.device, dtype=dt or like.dtype)  # noqa: E731
    trows, tcols = t(rows, torch.int64), t(cols, torch.int64)
    tvals, tf, tg = t(vals), t(f), t(g)
    value = EnvelopeValue.apply(C, a, b, trows, tcols, tvals, tf, tg, t(cost))
    shape = tuple(batch_shape)
    conv = Convergence(
        converged=t([s == "optimal" for s in status], torch.bool).reshape(shape),
        n_iters=t([int(o[7]) for o in out], torch.int64).reshape(shape),
        status=status,
        error=t(merr).reshape(shape),
        duality_gap=t(gap).reshape(shape),
    )
    return ExactResult(
        value=value.reshape(shape),
        f=tf.reshape(*shape, n),
        g=tg.reshape(*shape, m),
        convergence=conv,
        rows=trows.reshape(*shape, K),
        cols=tcols.reshape(*shape, K),
        vals=tvals.reshape(*shape, K),
        shape=(n, m),
    )

r"""Linear assignment (Monge matching) by shortest augmenting paths (C++ core in ``csrc/assignment.cpp``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import _core
from ..._validation import as_tensor, check_cost_matrix
from ...results import AssignmentResult, Convergence
from ._batch import EnvelopeValue, run_batched, to_numpy64

__all__ = ["Assignment", "solve_assignment_core"]


def solve_assignment_core(C: torch.Tensor, n_threads: int | None = None) -> list:
    """Run the compiled solver on ``C (B, n, m)``, n <= m; a list of ``(cols, u, v, cost)`` in float64."""
    C64 = to_numpy64(C)
    return run_batched(lambda i: _core.assignment(C64[i]), [(i,) for i in range(C64.shape[0])], n_threads)


@dataclass(frozen=True)
class Assignment:
    r"""Exact linear assignment: match each row to a distinct column at minimal total cost.

    .. math::
        \min_{\sigma \text{ injective}} \sum_{i=1}^n C_{i\sigma(i)}
        = \max_{f_i + g_j \le C_{ij},\ g \le 0 \text{ if } n < m} \sum_i f_i + \sum_j g_j

    This is OT between two uniform measures of n points (Birkhoff: an optimal plan is a permutation).
    Runs in float64 on the CPU; results come back on the input's device and dtype.

    Args:
        n_threads: threads for batches of problems (``None``: one per core).

    Example:
        >>> import torch
        >>> C = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
        >>> res = Assignment()(C)
        >>> res.cols.tolist(), float(res.value)
        ([1, 0, 2], 5.0)
    """

    n_threads: int | None = None

    def __call__(self, C) -> AssignmentResult:
        C = as_tensor(C, "C")
        check_cost_matrix(C, "C")
        n, m = C.shape[-2:]
        if n > m:
            raise ValueError(
                f"C: expected n <= m rows for an assignment (each row gets a distinct column), got shape "
                f"{tuple(C.shape)}; pass C.transpose(-1, -2) to match the columns instead"
            )
        batch = C.shape[:-2]
        Cf = C.reshape(-1, n, m)
        out = solve_assignment_core(Cf, self.n_threads)
        t = lambda x, dt=None: torch.as_tensor(np.stack(x), device=C.device, dtype=dt or C.dtype)  # noqa: E731
        cols = t([o[0] for o in out], torch.int64)
        u, v = t([o[1] for o in out]), t([o[2] for o in out])
        cost = t([np.float64(o[3]) for o in out])
        rows = torch.arange(n, device=C.device).expand(Cf.shape[0], n)
        ones = C.new_ones(())
        value = EnvelopeValue.apply(Cf, ones, ones, rows, cols, C.new_ones(cols.shape), u, v, cost)
        gap = cost - u.sum(-1) - v.sum(-1)
        B = Cf.shape[0]
        conv = Convergence(
            converged=torch.ones(batch, dtype=torch.bool, device=C.device),
            n_iters=torch.full(batch, n, dtype=torch.int64, device=C.device),
            status=("optimal",) * B,
            error=C.new_zeros(batch),
            duality_gap=gap.reshape(batch),
        )
        return AssignmentResult(
            cols=cols.reshape(*batch, n),
            value=value.reshape(batch),
            f=u.reshape(*batch, n),
            g=v.reshape(*batch, m),
            convergence=conv,
            shape=(n, m),
        )

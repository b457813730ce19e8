r"""Linear assignment (Monge matching) by shortest augmenting paths (C++ core in ``csrc/assignment.cpp``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import _core
from ..._validation import as_tensor, check_cost_matrix, check_int
from ..._warnings import warn
from ...results import AssignmentResult, Convergence
from ._batch import EnvelopeValue, needs_grad, to_numpy64, to_tensor

__all__ = ["Assignment", "solve_assignment_core"]


def solve_assignment_core(C: torch.Tensor, n_threads: int | None = None) -> list:
    """Run the compiled solver on ``C (B, n, m)``, n <= m; a list of ``(cols, u, v, cost)`` in float64."""
    cols, u, v, cost, _ = _core.assignment_batch(to_numpy64(C), n_threads or 0)
    return list(zip(cols, u, v, cost.tolist()))


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

    def __post_init__(self):
        check_int(self.n_threads, "n_threads", allow_none=True)

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
        B, shape = Cf.shape[0], tuple(batch)
        # one call for the whole batch: threads over the problems in C++, none for a single problem
        cols, u, v, cost, gap = _core.assignment_batch(to_numpy64(Cf), self.n_threads or 0)

        def t(x, *tail, dtype=None):  # shaped in numpy (cheap), then one tensor
            return to_tensor(x.reshape(shape + tail), C, dtype)

        tcols, tu, tv, value = t(cols, n, dtype=torch.int64), t(u, n), t(v, m), t(cost)
        if needs_grad(C):
            rows = torch.arange(n, device=C.device).expand(B, n)
            ones = C.new_ones(())
            value = EnvelopeValue.apply(Cf, ones, ones, rows, tcols.reshape(B, n), C.new_ones((B, n)),
                                        tu.reshape(B, n), tv.reshape(B, m), value.reshape(B)).reshape(shape)
        # the Hungarian algorithm always ends optimal (a permutation: marginal error 0) after n augmentations; costs
        # far from 1 are solved as C / 2^e, so only an optimal value or dual beyond float64 has no answer: its
        # certificate is infinite (the builder then says "diverged")
        err = C.new_zeros(batch)
        if not (np.isfinite(cost).all() and np.isfinite(u).all() and np.isfinite(v).all()):
            bad = ~(np.isfinite(cost) & np.isfinite(u).all(-1) & np.isfinite(v).all(-1))
            err = t(np.where(bad, np.inf, 0.0))
            warn(f"assignment: {int(bad.sum())} of {B} problems have no answer representable in float64 (the optimal "
                 "value or a dual exceeds 1.8e308); scale the costs down. converged=False, status 'diverged'.")
        conv = Convergence.build(err, 0.0, n, criterion="marginal_l1", duality_gap=t(gap))
        return AssignmentResult(cols=tcols, value=value, f=tu, g=tv, convergence=conv, shape=(n, m))

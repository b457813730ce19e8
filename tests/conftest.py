"""Shared fixtures and references for the test suite."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse
import torch


def lp_reference(C: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The Kantorovich LP solved by scipy's HiGHS (an independent exact solver)."""
    n, m = C.shape
    rows = scipy.sparse.kron(scipy.sparse.eye(n), np.ones((1, m)))
    cols = scipy.sparse.kron(np.ones((1, n)), scipy.sparse.eye(m))
    A = scipy.sparse.vstack([rows, cols]).tocsr()
    res = scipy.optimize.linprog(
        C.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    assert res.status == 0, res.message
    return float(res.fun)


def random_instance(rng: np.random.Generator, n: int, m: int, kind: str):
    """Random (C, a, b) of several kinds: uniform/dirichlet weights, point costs, integer ties, duplicates."""
    a = np.full(n, 1 / n)
    b = np.full(m, 1 / m)
    if kind in ("dirichlet", "ties", "zeros"):
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    if kind == "zeros":
        a[rng.random(n) < 0.3] = 0
        b[rng.random(m) < 0.3] = 0
        a[0] += 0.1
        b[-1] += 0.1
        a, b = a / a.sum(), b / b.sum()
    if kind == "ties":
        C = rng.integers(0, 5, size=(n, m)).astype(float)
    elif kind == "duplicates":
        x = rng.random((n, 2))
        x[n // 2 :] = x[: n - n // 2]
        y = rng.random((m, 2))
        C = ((x[:, None] - y[None]) ** 2).sum(-1)
    else:
        x, y = rng.random((n, 2)), rng.random((m, 2))
        C = ((x[:, None] - y[None]) ** 2).sum(-1)
    return C, a, b


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)

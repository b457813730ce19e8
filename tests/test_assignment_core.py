"""Tests of the raw compiled binding `monge._core.assignment` (Jonker-Volgenant linear assignment).

Contract: assignment(C) -> (cols, u, v, cost) for a float64 (n, m) matrix, n <= m, with cols a
minimising injective row -> column map and (u, v) an optimal dual certificate:
u_i + v_j <= C_ij, equality on matched pairs; for n < m also v <= 0 with v == 0 on unmatched columns.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from monge._core import assignment


def check_solution(C: np.ndarray, result, rtol: float = 1e-12) -> float:
    """Asserts that `result` is an optimal matching with a valid dual certificate; returns its cost."""
    cols, u, v, cost = result
    n, m = C.shape
    assert cols.dtype == np.int64 and cols.shape == (n,)
    assert u.dtype == np.float64 and u.shape == (n,)
    assert v.dtype == np.float64 and v.shape == (m,)
    assert isinstance(cost, float)
    assert len(np.unique(cols)) == n and np.all((cols >= 0) & (cols < m))
    scale = max(1.0, float(np.abs(C).max(initial=0.0))) * max(n, 1)
    tol = rtol * scale
    rows = np.arange(n)
    assert abs(C[rows, cols].sum() - cost) <= tol
    slack = C - u[:, None] - v[None, :]
    assert slack.min(initial=0.0) >= -tol, "dual infeasible"
    assert np.abs(slack[rows, cols]).max(initial=0.0) <= tol, "complementary slackness"
    if n < m:
        assert v.max() <= tol
        unmatched = np.ones(m, dtype=bool)
        unmatched[cols] = False
        assert np.all(v[unmatched] == 0.0)
    assert abs(u.sum() + v.sum() - cost) <= 100 * tol, "duality gap"
    r, c = linear_sum_assignment(C)
    assert abs(cost - C[r, c].sum()) <= tol, "not optimal"
    return cost


def make_cost(rng: np.random.Generator, kind: str, n: int, m: int) -> np.ndarray:
    if kind == "uniform":
        return rng.random((n, m))
    if kind == "points":
        x, y = rng.random((n, 2)), rng.random((m, 2))
        return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    if kind == "ties":
        return rng.integers(0, 4, (n, m)).astype(np.float64)
    if kind == "int100":
        return rng.integers(0, 100, (n, m)).astype(np.float64)
    if kind == "negative":
        return rng.integers(-1000, 1000, (n, m)) * 1e3 - 5e5
    if kind == "duplicate_rows":
        C = rng.integers(0, 10, (n, m)).astype(np.float64)
        C[rng.integers(0, n, n // 2 + 1)] = C[0]
        return C
    if kind == "near_constant":
        return 3.0 + 1e-9 * rng.standard_normal((n, m))
    if kind == "constant":
        return np.full((n, m), 7.0)
    raise ValueError(kind)


KINDS = ["uniform", "points", "ties", "int100", "negative", "duplicate_rows", "near_constant", "constant"]


@pytest.mark.parametrize("kind", KINDS)
def test_random_square_and_rectangular(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    for _ in range(60):
        n = int(rng.integers(1, 30))
        m = n + int(rng.choice([0, 0, 1, int(rng.integers(0, 30))]))
        C = make_cost(rng, kind, n, m)
        check_solution(C, assignment(C))


@pytest.mark.parametrize("shape", [(200, 200), (150, 400), (1, 300), (300, 301)])
@pytest.mark.parametrize("kind", ["uniform", "points", "int100", "ties"])
def test_medium(shape, kind):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    C = make_cost(rng, kind, *shape)
    check_solution(C, assignment(C))


def test_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 6))
        m = n + int(rng.integers(0, 3))
        C = rng.integers(-3, 4, (n, m)).astype(np.float64)
        best = min(C[np.arange(n), list(p)].sum() for p in itertools.permutations(range(m), n))
        assert check_solution(C, assignment(C)) == best


def test_identity_and_permutation():
    n = 50
    C = np.ones((n, n)) - np.eye(n)
    cols, _, _, cost = assignment(C)
    assert cost == 0.0 and np.array_equal(cols, np.arange(n))
    perm = np.random.default_rng(1).permutation(n)
    cols, _, _, cost = assignment(np.ascontiguousarray(C[:, perm]))
    assert cost == 0.0 and np.array_equal(perm[cols], np.arange(n))


def test_empty_and_trivial():
    cols, u, v, cost = assignment(np.zeros((0, 0)))
    assert cols.shape == (0,) and u.shape == (0,) and v.shape == (0,) and cost == 0.0
    cols, u, v, cost = assignment(np.zeros((0, 3)))
    assert cols.shape == (0,) and np.array_equal(v, np.zeros(3)) and cost == 0.0
    cols, u, v, cost = assignment(np.array([[2.5]]))
    assert cols.tolist() == [0] and cost == 2.5 and u[0] + v[0] == 2.5
    C = np.array([[3.0, -1.0, 2.0]])
    result = assignment(C)
    assert check_solution(C, result) == -1.0 and result[0].tolist() == [1]


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        assignment(np.zeros((3, 2)))
    for bad in (np.nan, np.inf, -np.inf):
        C = np.zeros((3, 3))
        C[1, 2] = bad
        with pytest.raises(ValueError):
            assignment(C)
    with pytest.raises(TypeError):
        assignment(np.zeros((3, 3, 1)))


def test_noncontiguous_input_is_solved_correctly():
    # nanobind converts non C-contiguous float64 input to a contiguous copy.
    rng = np.random.default_rng(3)
    C = rng.random((40, 60))
    expected = assignment(np.ascontiguousarray(C))[3]
    assert assignment(np.asfortranarray(C))[3] == expected
    Ct = rng.random((60, 40)).T
    check_solution(np.ascontiguousarray(Ct), assignment(Ct))


def test_does_not_modify_input_and_is_deterministic():
    rng = np.random.default_rng(4)
    C = rng.integers(0, 5, (80, 90)).astype(np.float64)
    C0 = C.copy()
    first = assignment(C)
    second = assignment(C)
    assert np.array_equal(C, C0)
    for a, b in zip(first[:3], second[:3]):
        assert np.array_equal(a, b)
    assert first[3] == second[3]


def test_threads():
    # The GIL is released during the solve and the solver has no global state.
    rng = np.random.default_rng(5)
    mats = [make_cost(rng, kind, 300, 300) for kind in ("uniform", "points", "int100", "ties")] * 2
    expected = [assignment(C)[3] for C in mats]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda C: assignment(C)[3], mats))
    assert got == expected

"""The batched bindings of the exact solvers (one compiled call per batch) against the per-problem ones."""

import numpy as np
import pytest

from monge import _core


def _problems(B, n, m, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.random((B, n, m))
    a = rng.dirichlet(np.ones(n), size=B)
    b = rng.dirichlet(np.ones(m), size=B)
    return np.ascontiguousarray(C), a, b


@pytest.mark.parametrize("n_threads", [1, 2, 0])
def test_network_simplex_batch_equals_single(n_threads):
    B, n, m = 5, 7, 9
    C, a, b = _problems(B, n, m)
    a[1, 2] = 0.0  # a zero-mass row (dropped inside, c-transform dual)
    a[1] /= a[1].sum()
    ints, flts = _core.network_simplex_batch(a, b, C, 0, n_threads, False)
    K = n + m - 1
    assert ints.shape == (B, 2 * K + 2) and flts.shape == (B, K + n + m + 3)
    for q in range(B):
        rows, cols, vals, f, g, cost, status, n_iter = _core.network_simplex(a[q], b[q], C[q], 0)
        k = len(rows)
        np.testing.assert_array_equal(ints[q, :k], rows)
        np.testing.assert_array_equal(ints[q, K:K + k], cols)
        np.testing.assert_array_equal(ints[q, k:K], 0)  # padding
        np.testing.assert_array_equal(flts[q, :k], vals)
        np.testing.assert_array_equal(flts[q, K:K + n], f)
        np.testing.assert_array_equal(flts[q, K + n:K + n + m], g)
        assert flts[q, -3] == cost and ints[q, -2] == status == 0 and ints[q, -1] == n_iter
        P = np.zeros((n, m))
        np.add.at(P, (rows, cols), vals)
        err = np.abs(P.sum(1) - a[q]).sum() + np.abs(P.sum(0) - b[q]).sum()
        assert flts[q, -2] == pytest.approx(err, abs=1e-15)
        assert flts[q, -1] == pytest.approx(cost - a[q] @ f - b[q] @ g, abs=1e-14)


def test_network_simplex_batch_rebalance():
    C, a, b = _problems(2, 6, 6)
    b32 = b.astype(np.float32).astype(np.float64)  # masses agree to float32 precision only
    ints, flts = _core.network_simplex_batch(a, b32, C, 0, 1, True)
    assert (ints[:, -2] == 0).all() and (flts[:, -2] < 1e-14).all()
    ref = _core.network_simplex_batch(a, b32 * (a.sum(1) / b32.sum(1))[:, None], C, 0, 1, False)[1]
    np.testing.assert_allclose(flts[:, -3], ref[:, -3], rtol=1e-15)


def test_network_simplex_batch_errors():
    C, a, b = _problems(2, 3, 4)
    with pytest.raises(ValueError):
        _core.network_simplex_batch(a, b[:, :3], C)
    bad = a.copy()
    bad[1, 0] = -1.0
    with pytest.raises(ValueError, match="a must be >= 0"):
        _core.network_simplex_batch(bad, b, C)


@pytest.mark.parametrize("n_threads", [1, 2, 0])
def test_assignment_batch_equals_single(n_threads):
    C = _problems(6, 8, 11)[0]
    cols, u, v, cost, gap = _core.assignment_batch(C, n_threads)
    np.testing.assert_allclose(gap, cost - u.sum(-1) - v.sum(-1), atol=1e-13)
    assert cols.shape == (6, 8) and u.shape == (6, 8) and v.shape == (6, 11) and cost.shape == (6,)
    for q in range(6):
        c1, u1, v1, cost1 = _core.assignment(C[q])
        np.testing.assert_array_equal(cols[q], c1)
        np.testing.assert_array_equal(u[q], u1)
        np.testing.assert_array_equal(v[q], v1)
        assert cost[q] == cost1


@pytest.mark.parametrize("n_threads", [1, 2])
def test_assignment_batch_error_from_a_worker(n_threads):
    C = _problems(4, 3, 3)[0]
    C[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        _core.assignment_batch(C, n_threads)

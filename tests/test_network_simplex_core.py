"""The raw network-simplex binding ``monge._core.network_simplex``: exactness and optimality certificates."""

from __future__ import annotations

import threading

import numpy as np
import ot
import pytest
from conftest import lp_reference, random_instance

from monge._core import network_simplex

KINDS = ["uniform", "dirichlet", "ties", "duplicates", "zeros"]


def dense_plan(rows, cols, vals, n, m):
    P = np.zeros((n, m))
    np.add.at(P, (rows, cols), vals)
    return P


def check(C, a, b, out, ref=None, status=0):
    """Feasible sparse plan, dual feasibility, complementary slackness and zero duality gap."""
    rows, cols, vals, f, g, cost, st, n_iter = out
    n, m = C.shape
    assert st == status and n_iter >= 0
    assert rows.dtype == cols.dtype == np.int64 and vals.dtype == f.dtype == g.dtype == np.float64
    assert f.shape == (n,) and g.shape == (m,) and isinstance(cost, float)
    assert len(rows) == len(cols) == len(vals) <= n + m - 1
    assert (vals > 0).all()
    P = dense_plan(rows, cols, vals, n, m)
    np.testing.assert_allclose(P.sum(1), a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(P.sum(0), b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cost, (vals * C[rows, cols]).sum(), rtol=1e-14, atol=1e-300)
    if status != 0:
        return
    scale = max(1.0, np.abs(C).max())
    assert (f[:, None] + g[None] - C).max() <= 1e-12 * scale
    assert np.abs(f[rows] + g[cols] - C[rows, cols]).max(initial=0) <= 1e-12 * scale
    assert abs(a @ f + b @ g - cost) <= 1e-12 * scale
    if ref is not None:
        np.testing.assert_allclose(cost, ref, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,m", [(1, 1), (1, 6), (5, 1), (2, 3), (8, 8), (13, 29), (40, 25)])
def test_against_highs(rng, kind, n, m):
    for shift in (0.0, -0.7):  # negative costs too
        C, a, b = random_instance(rng, n, m, kind)
        C = C + shift
        check(C, a, b, network_simplex(a, b, C, 0), lp_reference(C, a, b))


@pytest.mark.parametrize("kind", KINDS)
def test_against_pot(rng, kind):
    for n, m in [(200, 200), (150, 260)]:
        C, a, b = random_instance(rng, n, m, kind)
        check(C, a, b, network_simplex(a, b, C, 0), ot.emd2(a, b, C, numItermax=10**8))


def test_zero_weights_get_c_transform_duals(rng):
    n, m = 30, 20
    C, a, b = random_instance(rng, n, m, "dirichlet")
    a[[0, 5, 29]] = 0
    b[[3, 4]] = 0
    a, b = a / a.sum(), b / b.sum()
    out = network_simplex(a, b, C, 0)
    check(C, a, b, out, lp_reference(C, a, b))
    rows, cols, _, f, g, *_ = out
    assert not set(rows) & {0, 5, 29} and not set(cols) & {3, 4}
    np.testing.assert_allclose(f[[0, 5, 29]], (C - g[None]).min(1)[[0, 5, 29]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(g[[3, 4]], (C - f[:, None]).min(0)[[3, 4]], rtol=0, atol=1e-15)


def test_single_nonzero_mass_and_diracs(rng):
    C = rng.random((6, 4))
    a, b = np.zeros(6), np.zeros(4)
    a[2], b[1] = 1.0, 1.0
    out = network_simplex(a, b, C, 0)
    check(C, a, b, out, C[2, 1])
    assert list(out[0]) == [2] and list(out[1]) == [1]


def test_rounding_level_mass_mismatch(rng):
    """sum(a) and sum(b) differ by rounding only: still optimal, never 'infeasible'."""
    for n, m in [(7, 7), (300, 500), (3, 1000)]:
        C, a, b = random_instance(rng, n, m, "dirichlet")
        a = a * (1 + 3e-15)
        b = b * (1 - 2e-15)
        check(C, a, b, network_simplex(a, b, C, 0))


def test_degenerate_assignment_with_ties():
    """Uniform weights and integer costs: massively degenerate, must not cycle."""
    rng = np.random.default_rng(1)
    n = 150
    C = rng.integers(0, 3, size=(n, n)).astype(float)
    a = np.full(n, 1 / n)
    check(C, a, a, network_simplex(a, a, C, 0), ot.emd2(a, a, C, numItermax=10**8))
    C0 = np.zeros((n, n))
    check(C0, a, a, network_simplex(a, a, C0, 0), 0.0)


def test_max_iter_cap(rng):
    C, a, b = random_instance(rng, 120, 120, "dirichlet")
    out = network_simplex(a, b, C, 5)
    check(C, a, b, out, status=1)  # a feasible plan, not proven optimal
    assert out[7] == 5
    full = network_simplex(a, b, C, 0)
    assert full[6] == 0 and full[7] > 5 and full[5] <= out[5]


def test_threads_give_identical_results(rng):
    problems = [random_instance(rng, 250, 200, "dirichlet") for _ in range(4)]
    serial = [network_simplex(a, b, C, 0) for C, a, b in problems]
    results = [None] * len(problems)

    def work(k):
        C, a, b = problems[k]
        results[k] = network_simplex(a, b, C, 0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, r in zip(serial, results):
        assert s[5] == r[5]
        for x, y in zip(s[:5], r[:5]):
            np.testing.assert_array_equal(x, y)


def test_bad_inputs():
    C = np.zeros((3, 2))
    with pytest.raises((ValueError, TypeError)):
        network_simplex(np.ones(2) / 2, np.ones(2) / 2, C, 0)
    with pytest.raises((ValueError, TypeError)):
        network_simplex(np.array([0.5, 0.7, -0.2]), np.ones(2) / 2, C, 0)


def test_spreading_problem_drops_unproductive_shortlists():
    """A narrow cloud to a wide one: the cheapest columns of a row are not its partners, so shortlist pivots are
    many and small. Pricing must notice and fall back to dense search (70k pivots before, ~22k after; counted
    work, not time, decides, so the count is reproducible)."""
    import torch

    import monge

    rng = np.random.default_rng(0)
    n = 800
    X, Y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) * 1.9
    C = torch.from_numpy(((X[:, None] - Y[None]) ** 2).sum(-1))
    a, b = (torch.from_numpy(rng.dirichlet(np.ones(n) * 5)) for _ in range(2))
    res = monge.solve(C, a, b)
    assert res.convergence.status == ("converged",)
    assert int(res.convergence.n_iters) < 35_000
    assert float(res.convergence.duality_gap.abs()) < 1e-12
    again = monge.solve(C, a, b)
    assert int(again.convergence.n_iters) == int(res.convergence.n_iters)

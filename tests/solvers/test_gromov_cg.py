"""Exact GW by conditional gradient: the warm-started network simplex under it, and the sparse result."""

import functools

import numpy as np
import pytest
import torch

from monge import _core
from monge.geometry import PointCloud
from monge.problems import QuadraticProblem
from monge.results import ExactGWResult
from monge.solvers.exact.network_simplex import forest_basis, solve_warm
from monge.solvers.gromov import GromovWasserstein, cg


def _problem(rng, B, n, m, kind):
    """Batches of balanced problems; ``kind`` picks the degeneracies: uniform weights (n = m: assignment-like,
    half the basis at zero flow), integer costs (ties everywhere), zero-mass nodes, random."""
    a, b = rng.random((B, n)) + 0.1, rng.random((B, m)) + 0.1
    if kind in ("uniform", "ties"):
        a, b = np.ones((B, n)), np.ones((B, m))
    if kind == "zeros":
        a[:, 1::3], b[:, 1::4] = 0.0, 0.0
    a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    C = rng.integers(0, 4, (B, n, m)).astype(float) if kind == "ties" else rng.random((B, n, m))
    return a, b, C


def _check_same(cold, warm, B, n, m):
    (ic, fc), (iw, fw) = cold, warm
    K = n + m - 1
    scale = 1.0 + np.abs(fc[:, -3])
    np.testing.assert_array_equal(ic[:, 2 * K], 0)  # both certified optimal
    np.testing.assert_array_equal(iw[:, 2 * K], 0)
    assert np.all(np.abs(fc[:, -3] - fw[:, -3]) <= 1e-12 * scale)  # same optimal value
    assert np.all(np.abs(fw[:, -1]) <= 1e-12 * scale)  # duality gap of the warm answer
    assert np.all(fw[:, -2] <= 1e-12)  # its plan meets the marginals


@pytest.mark.parametrize("kind", ["random", "uniform", "ties", "zeros"])
@pytest.mark.parametrize("n,m", [(1, 5), (6, 6), (9, 13), (40, 31)])
def test_warm_equals_cold(kind, n, m):
    rng = np.random.default_rng(n * 100 + m)
    B = n  # a batch size equal to n
    a, b, C1 = _problem(rng, B, n, m, kind)
    *_, basis, warm = _core.network_simplex_warm(a, b, C1, None)
    assert not warm.any() and basis.shape == (B, n + m)
    assert np.all(basis[:, :n][a == 0] == -1) and np.all(basis[:, n:][b == 0] == -1)
    for C2 in (C1, C1 + 0.3 * _problem(rng, B, n, m, kind)[2]):  # the same cost (no pivot left), a nearby one
        cold = _core.network_simplex_batch(a, b, C2)
        iw, fw, basis2, warm = _core.network_simplex_warm(a, b, C2, basis)
        assert warm.all()  # the previous optimal basis is feasible for the same marginals
        _check_same(cold, (iw, fw), B, n, m)
        if C2 is C1:
            np.testing.assert_array_equal(iw[:, -1], 0)  # already optimal: no pivot


def test_warm_rejects_a_bad_basis():
    """A basis that is no feasible tree for these marginals is ignored (greedy start): the answer stays exact."""
    rng = np.random.default_rng(3)
    n = m = 7
    a, b, C = _problem(rng, 3, n, m, "random")
    _, _, good, _ = _core.network_simplex_warm(a, b, C, None)
    cycle = good.copy()
    cycle[:, 0], cycle[:, n] = n, 0  # row 0 and column 0 each other's parent
    wrong_kind = good.copy()
    wrong_kind[:, 0] = 1  # a row under a row
    other_marginals = _core.network_simplex_warm(*_problem(rng, 3, n, m, "random")[:2], C, None)[2]
    for bad in (cycle, wrong_kind, other_marginals, np.full_like(good, n + m)):
        cold = _core.network_simplex_batch(a, b, C)
        iw, fw, _, warm = _core.network_simplex_warm(a, b, C, bad)
        assert not warm[0] or bad is other_marginals  # a foreign tree may happen to fit, never wrongly
        _check_same(cold, (iw, fw), 3, n, m)
    with pytest.raises(ValueError, match="basis"):
        _core.network_simplex_warm(a, b, C, good[:, :-1])


def test_forest_basis_of_a_sorted_vertex():
    """The north-west corner vertex's support is a forest: its basis is accepted and the solve is exact."""
    rng = np.random.default_rng(5)
    n, m = 12, 9
    a, b, C = _problem(rng, 1, n, m, "random")
    u, v = torch.from_numpy(rng.random(n)), torch.from_numpy(rng.random(m))
    rows, cols, vals = cg.comonotone(u, v, torch.from_numpy(a[0]), torch.from_numpy(b[0]))
    keep = vals > 1e-14
    basis = forest_basis(rows[keep].numpy(), cols[keep].numpy(), a[0], b[0])
    iw, fw, _, warm = _core.network_simplex_warm(a, b, C, basis[None])
    assert warm.all()
    _check_same(_core.network_simplex_batch(a, b, C), (iw, fw), 1, n, m)


def test_solve_warm_batched_shape():
    C = torch.rand(4, 4, 3, dtype=torch.float64)  # batch size equal to n
    a, b = torch.full((4, 4), 0.25, dtype=torch.float64), torch.full((4, 3), 1 / 3, dtype=torch.float64)
    res, basis = solve_warm(C, a, b)
    res2, _ = solve_warm(C * 1.1 + 0.01, a, b, basis)
    assert basis.shape == (4, 7) and res2.convergence.all_converged
    torch.testing.assert_close(res2.value, 1.1 * res.value + 0.01, atol=1e-12, rtol=0)


def _clouds(n, m, seed, depth=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(m, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, depth, 1.0], dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("n,m,seed", [(30, 30, 0), (25, 40, 1), (60, 50, 2)])
@pytest.mark.parametrize("dense", [False, True])
def test_cg_warm_equals_cold(monkeypatch, n, m, seed, dense):
    """Warm-started linearisations give the same CG iterates: same value, steps and plan."""
    x, y = _clouds(n, m, seed)
    geo = (lambda p: PointCloud(p).cost()) if dense else PointCloud
    prob = QuadraticProblem(geo(x), geo(y))
    warm = GromovWasserstein()(prob)
    monkeypatch.setattr(cg, "LinearSolves", functools.partial(cg.LinearSolves, warm=False))
    cold = GromovWasserstein()(prob)
    assert warm.convergence.all_converged and cold.convergence.all_converged
    assert abs(float(warm.value) - float(cold.value)) <= 1e-12 * (1 + abs(float(cold.value)))
    torch.testing.assert_close(warm.plan, cold.plan, atol=1e-12, rtol=0)


def test_exact_result_plan_is_sparse():
    x, y = _clouds(50, 40, 7, depth=0.3)
    res = GromovWasserstein()(QuadraticProblem(PointCloud(x), PointCloud(y)))
    assert isinstance(res, ExactGWResult) and res.convergence.all_converged
    assert res.vals.numel() <= 50 + 40 - 1  # a vertex (the objective is concave here: every step has t = 1)
    dense = res.plan
    torch.testing.assert_close(res.plan_sparse.to_dense(), dense)
    ra, cb = res.marginals
    torch.testing.assert_close(ra, dense.sum(1))
    torch.testing.assert_close(cb, dense.sum(0))
    torch.testing.assert_close(ra, torch.full((50,), 1 / 50, dtype=torch.float64))


def test_exact_batch_equals_loop():
    """A batch of equal-size problems (batch size equal to n) solved by the exact CG equals the loop over them."""
    from monge import gromov_wasserstein

    B, n, m = 5, 5, 4
    g = torch.Generator().manual_seed(11)
    x = torch.rand(B, n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(B, m, 3, generator=g, dtype=torch.float64)
    batch = gromov_wasserstein(x, y)
    assert batch.plan.shape == (B, n, m) and bool(batch.convergence.converged.all())
    for k in range(B):
        one = gromov_wasserstein(x[k], y[k])
        torch.testing.assert_close(batch.value[k], one.value, atol=1e-14, rtol=0)
        torch.testing.assert_close(batch.plan[k], one.plan, atol=1e-14, rtol=0)


@pytest.mark.parametrize("B, n, m", [(6, 6, 4), (4, 6, 4)])  # B = n, then B = m
def test_exact_batch_plans_are_sparse_and_equal_the_dense(B, n, m):
    """A batch of exact results keeps sparse plans (B, K) padded with zeros; plan, plan_sparse and the marginals
    agree with each other and with the single solves."""
    from monge import gromov_wasserstein

    g = torch.Generator().manual_seed(12)
    x = torch.rand(B, n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(B, m, 3, generator=g, dtype=torch.float64)
    x[1] = x[0]  # two equal elements: equal supports
    y[1] = y[0]
    res = gromov_wasserstein(x, y)
    assert isinstance(res, ExactGWResult) and res.rows.dim() == 2 and res.rows.shape[0] == B
    assert res.rows.shape == res.cols.shape == res.vals.shape and res.shape == (n, m)
    dense = res.plan
    assert dense.shape == (B, n, m)
    sp = res.plan_sparse
    assert sp.is_sparse and sp.shape == (B, n, m)
    torch.testing.assert_close(sp.to_dense(), dense, atol=0, rtol=0)
    ra, cb = res.marginals
    torch.testing.assert_close(ra, dense.sum(-1), atol=1e-15, rtol=0)
    torch.testing.assert_close(cb, dense.sum(-2), atol=1e-15, rtol=0)
    for k in range(B):
        one = gromov_wasserstein(x[k], y[k])
        torch.testing.assert_close(dense[k], one.plan, atol=1e-14, rtol=0)
        torch.testing.assert_close(sp[k].to_dense(), one.plan_sparse.to_dense(), atol=1e-14, rtol=0)
        torch.testing.assert_close(res.value[k], one.value, atol=1e-14, rtol=0)
        K = int((res.vals[k] > 0).sum())
        assert K == int((one.vals > 0).sum()) and bool((res.vals[k, K:] == 0).all())  # padding at the end


def test_principal_coordinate_is_the_first_principal_component():
    """Low-rank (points) and dense (cost matrix) routes give the points' first principal component, up to sign."""
    g = torch.Generator().manual_seed(13)
    x = torch.randn(80, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    w = torch.full((80,), 1 / 80, dtype=torch.float64)
    xc = x - x.mean(0)
    pc = xc @ torch.linalg.svd(xc, full_matrices=False)[2][0]
    prob = QuadraticProblem(PointCloud(x), PointCloud(x))
    low = cg.principal_coordinate(prob.geom_xx, w)
    dense = cg.principal_coordinate(torch.cdist(x, x) ** 2, w)
    for c in (low, dense):
        cos = float(c @ pc) / float(c.norm() * pc.norm())
        assert abs(abs(cos) - 1.0) < 1e-8


@pytest.mark.parametrize("precomputed", [False, True])
def test_spectral_starts_never_worse_and_certified(precomputed):
    from monge import gromov_wasserstein

    rng = np.random.default_rng(14)
    for _ in range(3):
        x, y = torch.from_numpy(rng.normal(size=(30, 2))), torch.from_numpy(rng.normal(size=(25, 3)) * [1, 1, 0.3])
        args = (torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2) if precomputed else (x, y)
        kw = dict(cost="precomputed") if precomputed else {}
        one = gromov_wasserstein(*args, **kw)
        best = gromov_wasserstein(*args, starts="spectral", **kw)
        assert best.convergence.all_converged and float(best.value) <= float(one.value) + 1e-12
        ra, cb = best.marginals
        torch.testing.assert_close(ra, torch.full((30,), 1 / 30, dtype=torch.float64))
        torch.testing.assert_close(cb, torch.full((25,), 1 / 25, dtype=torch.float64))


def test_starts_is_validated():
    with pytest.raises(ValueError, match="starts: expected one of"):
        GromovWasserstein(starts="random")

"""Exact OT on sparse arc sets (warm starts) and the multiscale solver: equal to the dense network simplex."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import monge
from monge.solvers.exact.multiscale import multiscale_ot
from monge.solvers.exact.sparse import solve_sparse


def _dense(x, y, a, b, p=2.0):
    C = torch.cdist(x, y) ** p
    return monge.solve(C, a, b)


@pytest.mark.parametrize("seed", range(4))
def test_sparse_full_support_equals_dense_and_warm_start(seed):
    g = torch.Generator().manual_seed(seed)
    n, m = 30 + seed, 25
    C = torch.rand(n, m, generator=g, dtype=torch.float64)
    a, b = torch.rand(n, generator=g, dtype=torch.float64), torch.rand(m, generator=g, dtype=torch.float64)
    a[:3] = 0.0
    a, b = a / a.sum(), b / b.sum()
    ref = monge.solve(C, a, b)
    for Cs in (sp.csr_matrix(C.numpy()), C.to_sparse()):
        res = monge.solve(Cs, a, b)  # routed to the sparse solver
        assert abs(float(res.value) - float(ref.value)) <= 1e-12 * float(ref.value)
        assert abs(float(res.convergence.duality_gap)) < 1e-12 and res.convergence.all_converged
        row, col = res.marginals
        assert torch.allclose(row, a, atol=1e-14) and torch.allclose(col, b, atol=1e-14)
        assert bool((res.f[:, None] + res.g[None] <= C + 1e-12).all())
    warm = solve_sparse(sp.csr_matrix(C.numpy()), a, b, init=(ref.f, ref.g))
    assert abs(float(warm.value) - float(ref.value)) <= 1e-12 * float(ref.value)


def test_sparse_only_listed_arcs_exist_and_infeasible_support():
    C = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).to_sparse()  # the zero diagonal is not stored: not arcs
    res = solve_sparse(C)
    assert float(res.value) == 1.0 and res.plan.tolist() == [[0.0, 0.5], [0.5, 0.0]]
    only_one = sp.csr_matrix(([1.0], ([0], [0])), shape=(2, 2))
    bad = solve_sparse(only_one)
    assert bad.convergence.status == ("infeasible",) and not bad.convergence.all_converged


def test_sparse_bad_inputs():
    C = sp.csr_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="a: expected finite nonnegative weights of shape"):
        solve_sparse(C, np.ones(3) / 3, np.ones(3) / 3)
    with pytest.raises(ValueError, match="a, b: expected equal masses"):
        solve_sparse(C, np.ones(2), np.ones(3) / 3)
    with pytest.raises(ValueError, match="init: expected potentials"):
        solve_sparse(C, init=(np.zeros(3), np.zeros(3)))


@pytest.mark.parametrize("n, m, d, p, zeros, dup", [
    (200, 150, 2, 2.0, 0.0, False), (300, 300, 1, 2.0, 0.2, True), (150, 250, 3, 2.0, 0.1, False),
    (120, 100, 5, 2.0, 0.0, True), (200, 200, 2, 1.0, 0.0, False), (400, 300, 4, 2.0, 0.3, False),
])
def test_multiscale_equals_dense(n, m, d, p, zeros, dup):
    g = torch.Generator().manual_seed(n + d)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = torch.rand(m, d, generator=g, dtype=torch.float64)
    if dup:  # duplicates and ties
        x[: n // 4] = x[n // 4 : 2 * (n // 4)]
        y[: m // 5] = torch.round(y[: m // 5] * 4) / 4
    a, b = torch.rand(n, generator=g, dtype=torch.float64), torch.rand(m, generator=g, dtype=torch.float64)
    a[torch.rand(n, generator=g) < zeros] = 0.0
    b[torch.rand(m, generator=g) < zeros] = 0.0
    a, b = a / a.sum(), b / b.sum()
    cost = dict(cost="sqeuclidean") if p == 2 else dict(cost="euclidean", p=p)
    res = monge.solve_points(x, y, a, b, method="multiscale", **cost)
    ref = _dense(x, y, a, b, p)
    assert abs(float(res.value) - float(ref.value)) <= 1e-12 * float(ref.value)
    assert res.convergence.status == ("converged",)
    assert abs(float(res.convergence.duality_gap)) <= 1e-12 * float(ref.value) + 1e-15
    C = torch.cdist(x, y) ** p
    assert float((res.f[:, None] + res.g[None] - C).max()) <= 1e-12  # dual feasible on every arc
    row, col = res.marginals
    assert torch.allclose(row, a, atol=1e-14) and torch.allclose(col, b, atol=1e-14)


def test_multiscale_levels_and_errors():
    x = torch.rand(100, 2, dtype=torch.float64)
    res = multiscale_ot(x, x.flip(0), None, None)
    assert abs(float(res.value)) < 1e-15  # the same cloud: W2 = 0
    names = [k for k, _ in res.convergence.levels]
    assert names[-1] == "certificate" and "points" in names
    with pytest.raises(ValueError, match="cost: method='multiscale' supports"):
        monge.solve_points(x, x, method="multiscale", cost="cosine")
    with pytest.raises(ValueError, match="exact solver; drop eps"):
        monge.solve_points(x, x, method="multiscale", eps=0.1)
    with pytest.raises(ValueError, match="x, y: expected the same dimension"):
        monge.solve_points(x, x[:, :1], method="multiscale")
    with pytest.raises(TypeError, match="not an option of method='multiscale'"):
        monge.solve_points(x, x, method="multiscale", tol=1e-3)


@pytest.mark.parametrize("shape", [(12, 10), (5, 6, 4)])
def test_exact_grid_equals_dense(shape):
    g = torch.Generator().manual_seed(len(shape))
    a = torch.rand(shape, generator=g, dtype=torch.float64) ** 3
    b = torch.rand(shape, generator=g, dtype=torch.float64) ** 3
    a[0] = 0.0  # empty cells
    a, b = a / a.sum(), b / b.sum()
    res = monge.solve_grid(a, b)  # eps=None: exact
    pts = torch.stack(torch.meshgrid(*[torch.arange(k, dtype=torch.float64) / k for k in shape], indexing="ij"), -1)
    pts = pts.reshape(-1, len(shape))
    ref = monge.solve(torch.cdist(pts, pts) ** 2, a.reshape(-1), b.reshape(-1))
    assert abs(float(res.value) - float(ref.value)) <= 1e-12 * float(ref.value)
    assert res.convergence.status == ("converged",)
    with pytest.raises(ValueError, match="p: exact grid OT supports p = 2"):
        monge.solve_grid(a, b, p=1)


def test_solve_arcs_warm_start_from_a_feasible_plan():
    from monge.solvers.exact.sparse import solve_arcs

    rng = np.random.default_rng(5)
    n, m = 40, 30
    C = rng.random((n, m))
    a, b = rng.random(n), rng.random(m)
    a, b = a / a.sum(), b / b.sum()
    rows, cols = (v.ravel() for v in np.meshgrid(np.arange(n), np.arange(m), indexing="ij"))
    cold = solve_arcs(rows, cols, C.ravel(), a, b)
    flow0 = np.zeros(n * m)
    flow0[cold[0] * m + cold[1]] = cold[2]
    warm = solve_arcs(rows, cols, C.ravel(), a, b, flow0=flow0)
    assert warm[7] == 0 and abs(warm[5] - cold[5]) < 1e-15  # the optimum itself: no pivot
    bad = solve_arcs(rows, cols, C.ravel(), a, b, flow0=np.full(n * m, 1.0))  # infeasible: greedy fallback
    assert abs(bad[5] - cold[5]) < 1e-12 * cold[5]

"""The spanning-tree update shared by the dense transport simplex and the min-cost flow (csrc/flow_tree.hpp), on
problems whose pivots are mostly degenerate: integer costs with many ties, uniform (assignment) weights, integer
supplies, and warm starts from a previous basis. Each answer is checked against scipy's HiGHS LP and by its own
certificate (feasible duals, complementary slackness), so a broken thread or subtree update shows as a wrong
optimum, an infeasible plan or a cycling solve (which the pivot cap turns into a failed status)."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment, linprog

from monge import _core


def _highs_transport(a, b, C):
    n, m = C.shape
    A = sp.vstack([sp.kron(sp.eye(n), np.ones((1, m))), sp.kron(np.ones((1, n)), sp.eye(m))])
    return linprog(C.ravel(), A_eq=A, b_eq=np.r_[a, b], bounds=(0, None), method="highs").fun


def _check_transport(out, a, b, C):
    rows, cols, vals, f, g, cost, status, iters = out
    assert status == 0
    P = np.zeros(C.shape)
    np.add.at(P, (rows, cols), vals)
    np.testing.assert_allclose(P.sum(1), a, atol=1e-13)
    np.testing.assert_allclose(P.sum(0), b, atol=1e-13)
    assert (f[:, None] + g[None] - C).max() <= 1e-12  # dual feasible
    assert np.abs((f[:, None] + g[None] - C)[P > 0]).max() <= 1e-12  # tight on the plan
    assert int((vals > 0).sum()) <= C.shape[0] + C.shape[1] - 1  # a basic solution
    return cost


@pytest.mark.parametrize("n, m, levels, seed", [(60, 60, 3, 0), (90, 70, 2, 1), (900, 900, 4, 2)])
def test_dense_simplex_on_tied_integer_costs(n, m, levels, seed):
    # n = m = 900 takes the shortlist pricing (m >= 768) as well as the dense one
    rng = np.random.default_rng(seed)
    C = rng.integers(0, levels, (n, m)).astype(float)
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    cost = _check_transport(_core.network_simplex(a, b, C, 10**7), a, b, C)
    if n == m:
        r, c = linear_sum_assignment(C)
        assert cost == pytest.approx(C[r, c].sum() / n, abs=1e-13)
    else:
        assert cost == pytest.approx(_highs_transport(a, b, C), abs=1e-12)


def test_dense_simplex_warm_start_from_a_degenerate_basis():
    # an assignment (every basis has n - 1 zero-flow arcs) solved, then warm-started on a cost with new ties
    rng = np.random.default_rng(3)
    B, n = 3, 120
    C = rng.integers(0, 5, (B, n, n)).astype(float)
    a = np.full((B, n), 1.0 / n)
    _, _, basis, warm0 = _core.network_simplex_warm(a, a, C, None, 0, 1, True)
    C2 = C + rng.integers(0, 2, C.shape)
    ints, flts, _, warm = _core.network_simplex_warm(a, a, C2, basis, 10**7, 1, True)
    assert warm0.tolist() == [0] * B and warm.tolist() == [1] * B
    K = 2 * n - 1
    for q in range(B):
        assert ints[q, 2 * K] == 0  # optimal within the pivot cap: no cycling
        r, c = linear_sum_assignment(C2[q])
        assert flts[q, K + 2 * n] == pytest.approx(C2[q][r, c].sum() / n, abs=1e-13)
        assert abs(flts[q, K + 2 * n + 2]) <= 1e-13  # duality gap


def _highs_flow(src, dst, cost, supply):
    n, m = supply.size, src.size
    A = sp.csr_matrix((np.r_[np.ones(m), -np.ones(m)], (np.r_[src, dst], np.r_[np.arange(m), np.arange(m)])),
                      shape=(n, m))
    return linprog(cost, A_eq=A, b_eq=supply, bounds=(0, None), method="highs").fun


@pytest.mark.parametrize("init", [0, 1, 3])
def test_min_cost_flow_on_a_degenerate_graph(init):
    # undirected grid-like graph with unit lengths and integer supplies: ties everywhere
    rng = np.random.default_rng(4)
    n = 400
    edges = np.stack([np.arange(1, n), rng.integers(0, np.arange(1, n))], 1)
    edges = np.concatenate([edges, rng.integers(0, n, (1200, 2))])
    edges = edges[edges[:, 0] != edges[:, 1]]
    length = rng.integers(1, 3, len(edges)).astype(float)
    src, dst = np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]]
    cost = np.r_[length, length]
    supply = rng.integers(-3, 4, n).astype(float)
    supply[0] -= supply.sum()
    flow, u, status, iters, art, _ = _core.min_cost_flow(src, dst, cost, supply, np.zeros(0), init, 0.0, 10**7,
                                                         np.zeros(0))
    assert status == 0 and art <= 1e-12
    np.testing.assert_allclose(np.bincount(src, flow, n) - np.bincount(dst, flow, n), supply, atol=1e-12)
    assert (u[src] - u[dst] <= cost + 1e-12).all()  # 1-Lipschitz along every arc
    assert np.abs((u[src] - u[dst] - cost)[flow > 0]).max() <= 1e-12  # tight where flow runs
    assert flow @ cost == pytest.approx(_highs_flow(src, dst, cost, supply), abs=1e-9)

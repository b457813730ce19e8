"""The coarse-to-fine start of the grid flow: the prolonged coarse optimum, the restricted arc rounds, the check
over every arc, and the cycle cancelling that makes a prolonged flow a basis (csrc/network_simplex_basic_flow.hpp)."""

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

import monge
from monge.testing import grid_cost, grid_histograms
from monge import _core
from monge.solvers.exact import grid_flow as gf


def _check(res, a, b, C, ref_value):
    assert abs(float(res.value) - ref_value) <= 1e-12 * ref_value
    f, g = res.f.numpy(), res.g.numpy()
    assert (f[:, None] + g[None] - C).max() <= 1e-14  # every pair, not only the arcs the solver kept
    assert abs(float(res.convergence.duality_gap)) <= 1e-14 and res.convergence.status == ("converged",)
    P = res.plan.numpy()
    assert np.abs(P.sum(1) - a.ravel()).sum() < 1e-13 and np.abs(P.sum(0) - b.ravel()).sum() < 1e-13


@pytest.mark.parametrize("shape, zeros, short", [((16, 16), 0.0, 8), ((17, 15), 0.3, 8), ((8, 6, 7), 0.2, 8),
                                                 ((16, 16), 0.0, 1), ((300,), 0.5, 2)])
def test_coarse_start_equals_the_dense_simplex(shape, zeros, short, monkeypatch):
    monkeypatch.setattr(gf, "_SHORT", short)  # short = 1, 2: arcs priced negative must join in later rounds
    a, b = grid_histograms(shape, seed=sum(shape), zeros=zeros)
    h = [1.0 / k for k in shape]
    C = grid_cost(shape, h, 2)
    res = gf.solve_grid_flow(a, b)
    ref = monge.solve(torch.tensor(C), torch.tensor(a.ravel()), torch.tensor(b.ravel()))
    _check(res, a, b, C, float(ref.value))


def test_multilevel_start_on_a_tiny_grid_equals_highs(monkeypatch):
    monkeypatch.setattr(gf, "_WARM_MIN_CELLS", 9)  # 7 x 6 -> 4 x 3 -> 2 x 2: three levels
    monkeypatch.setattr(gf, "_SHORT", 1)
    a, b = grid_histograms((7, 6), seed=5)
    C = grid_cost((7, 6), (1 / 7, 1 / 6), 2)
    n = a.size
    A = np.vstack([np.kron(np.eye(n), np.ones(n)), np.kron(np.ones(n), np.eye(n))])
    lp = linprog(C.ravel(), A_eq=A, b_eq=np.r_[a.ravel(), b.ravel()], bounds=(0, None), method="highs")
    _check(gf.solve_grid_flow(a, b), a, b, C, lp.fun)


def test_coarse_start_is_used_and_saves_pivots(monkeypatch):
    a, b = grid_histograms((32, 32), seed=2)
    warm = gf.solve_grid_flow(a, b)
    monkeypatch.setattr(gf, "_WARM_MIN_CELLS", 10**9)  # the artificial start on every arc
    cold = gf.solve_grid_flow(a, b)
    assert abs(float(warm.value) - float(cold.value)) <= 1e-12 * float(cold.value)
    assert int(warm.convergence.n_iters) < 0.5 * int(cold.convergence.n_iters)


def test_far_transport_and_point_masses(monkeypatch):
    a, b = np.zeros((24, 24)), np.zeros((24, 24))
    a[1, 1], a[20, 3] = 0.5, 0.5
    b[22, 22], b[2, 18] = 0.25, 0.75  # moves of 15-21 cells: longer than the short arcs
    res = gf.solve_grid_flow(a, b)
    C = grid_cost((24, 24), (1 / 24, 1 / 24), 2)
    ref = monge.solve(torch.tensor(C), torch.tensor(a.ravel()), torch.tensor(b.ravel()))
    _check(res, a, b, C, float(ref.value))


def test_violations_match_a_full_pricing():
    shape, h, p = (5, 4, 3), (0.2, 0.25, 1 / 3), 2.0
    rng = np.random.default_rng(0)
    u = rng.normal(size=4 * 60) * 0.05
    ids = np.arange(int(gf._offsets(shape)[-1]))
    src, dst, cost = gf._arcs_of(ids, shape, h, p)
    expect = ids[cost - u[src] + u[dst] < -1e-3]
    assert expect.size > 0
    np.testing.assert_array_equal(np.sort(gf._violations(u, shape, h, p, 1e-3)), expect)
    # the id layout: layer k's arc from cell z to coordinate t along axis k
    assert np.all(dst // 60 == src // 60 + 1) and np.all(cost >= 0)


def test_prolonged_flow_is_feasible():
    a, b = grid_histograms((9, 10), seed=1, zeros=0.3)
    shape = a.shape
    start, _ = gf._coarse_start(a.ravel(), b.ravel(), shape, (1 / 9, 1 / 10), 2.0)
    ids, flow, pi0 = start
    src, dst, _ = gf._arcs_of(ids, shape, (1 / 9, 1 / 10), 2.0)
    n = 3 * a.size
    net = np.bincount(src, flow, n) - np.bincount(dst, flow, n)
    np.testing.assert_allclose(net, np.r_[a.ravel(), np.zeros(a.size), -b.ravel()], atol=1e-15)
    assert (flow >= 0).all() and pi0.shape == (n,)


def _solve(src, dst, cost, supply, flow0):
    return _core.min_cost_flow(np.asarray(src, np.int64), np.asarray(dst, np.int64), np.asarray(cost, float),
                               np.asarray(supply, float), np.zeros(0), 0, 0.0, 0, np.asarray(flow0, float))


def test_a_flow_with_cycles_is_made_basic_without_losing_the_warm_start():
    # two equally cheap routes 0 -> 3 (via 1 and via 2), each carrying half: optimal, but its support is a cycle
    src, dst, cost, supply = [0, 0, 1, 2, 1], [1, 2, 3, 3, 2], [1.0, 2.0, 2.0, 1.0, 5.0], [1.0, 0, 0, -1.0]
    flow, u, status, iters, art, _ = _solve(src, dst, cost, supply, [0.5, 0.5, 0.5, 0.5, 0.0])
    # started from it: at most the one degenerate pivot that joins node 2 (its arc emptied by the tie) back in;
    # the artificial start needs at least two (a route of two arcs)
    assert status == 0 and iters <= 1 and art == 0.0
    assert _solve(src, dst, cost, supply, np.zeros(0))[3] >= 2
    assert flow @ np.asarray(cost) == pytest.approx(3.0, abs=1e-15)
    assert (flow > 0).sum() <= 3  # a basic flow: a forest on 4 nodes
    # a costlier cycle 0 -> 1 -> 2 (cost 6) beside the direct 0 -> 2 (cost 2): cancelled, then optimal
    flow, u, status, iters, art, _ = _solve(src, dst, cost, supply, [0.6, 0.4, 0.2, 0.8, 0.4])
    assert status == 0 and flow @ np.asarray(cost) == pytest.approx(3.0, abs=1e-15)
    assert (u[np.asarray(src)] - u[np.asarray(dst)] <= np.asarray(cost) + 1e-15).all()


def test_degenerate_cycles_and_loops_in_a_warm_flow():
    # a random feasible flow on a dense random graph: many cycles, zero-cost loops, ties in the cancelled flows
    rng = np.random.default_rng(3)
    n, m = 30, 400
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    cost = rng.integers(0, 4, m).astype(float)  # integer costs: many ties, degenerate pivots
    flow0 = rng.integers(0, 3, m).astype(float) * 0.125
    supply = np.bincount(src, flow0, n) - np.bincount(dst, flow0, n)
    out = _solve(src, dst, cost, supply, flow0)
    cold = _solve(src, dst, cost, supply, np.zeros(0))
    for flow, u, status, *_ in (out, cold):
        assert status == 0
        np.testing.assert_allclose(np.bincount(src, flow, n) - np.bincount(dst, flow, n), supply, atol=1e-14)
        assert (u[src] - u[dst] <= cost + 1e-13).all()
    assert out[0] @ cost == pytest.approx(cold[0] @ cost, abs=1e-13) and out[0] @ cost <= flow0 @ cost

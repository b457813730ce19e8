"""min_cost_flow_warm: a sparse transport solve started from the previous optimum's basis (zero-flow tree arcs
included), as the multiscale add-back rounds use it; a basis that is no feasible tree is refused, not trusted."""

import numpy as np
import pytest

from monge import _core


def _problem(seed, n=80, m=70, k=12):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, 2)), rng.random((m, 2))
    a, b = rng.random(n), rng.random(m)
    a, b = a / a.sum(), b / b.sum()
    rows = np.repeat(np.arange(n), m)
    cols = np.tile(np.arange(m), n)
    C = ((x[rows] - y[cols]) ** 2).sum(1)
    near = np.argsort(C.reshape(n, m), 1)[:, :k]  # a sparse arc set: each row's k nearest columns, plus a chain
    keep = np.zeros((n, m), bool)
    keep[np.arange(n)[:, None], near] = True
    keep[np.arange(n), np.arange(n) % m] = True
    return rows, cols, C, a, b, keep.ravel()


def _solve(rows, cols, C, a, b, basis=None):
    n = len(a)
    return _core.min_cost_flow_warm(rows, n + cols, C, np.r_[a, -b], np.zeros(0),
                                    np.zeros(0, np.int64) if basis is None else basis, 0.0, 0, np.zeros(0))


def _certify(out, rows, cols, C, a, b):
    flow, u, status = out[0], out[1], out[2]
    n = len(a)
    assert status == 0 and out[4] <= 1e-12
    np.testing.assert_allclose(np.bincount(rows, flow, n), a, atol=1e-14)
    np.testing.assert_allclose(np.bincount(cols, flow, len(b)), b, atol=1e-14)
    assert (u[rows] - u[n + cols] <= C + 1e-14).all()
    return flow @ C


@pytest.mark.parametrize("seed", [0, 1])
def test_same_problem_from_its_own_basis_needs_no_pivot(seed):
    rows, cols, C, a, b, keep = _problem(seed)
    first = _solve(rows[keep], cols[keep], C[keep], a, b)
    again = _solve(rows[keep], cols[keep], C[keep], a, b, first[6])
    assert first[7] is False and again[7] is True and again[3] == 0
    # the same tree; its artificial arcs (-1 / -2: pointing down / up) come back pointing down (-1), at zero flow
    np.testing.assert_array_equal(again[6], np.where(first[6] == -2, -1, first[6]))
    assert _certify(again, rows[keep], cols[keep], C[keep], a, b) == pytest.approx(first[0] @ C[keep], abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_added_arcs_from_the_remapped_basis_equal_a_cold_solve(seed):
    rows, cols, C, a, b, keep = _problem(seed)
    sub = np.flatnonzero(keep)
    first = _solve(rows[sub], cols[sub], C[sub], a, b)
    full = np.arange(len(rows))  # every arc: the old ones keep their order among them
    basis = first[6].copy()
    real = basis >= 0
    basis[real] = np.searchsorted(full, sub[basis[real]])
    warm = _solve(rows, cols, C, a, b, basis)
    cold = _solve(rows, cols, C, a, b)
    assert warm[7] is True
    assert _certify(warm, rows, cols, C, a, b) == pytest.approx(_certify(cold, rows, cols, C, a, b), abs=1e-15)
    assert warm[3] < cold[3]


def test_artificial_arcs_of_a_warm_basis_never_carry_flow():
    # Two balanced components under the root: s0 -> d0 (cost 10) hung from R pointing down, s1 -> d1 (cost 10)
    # pointing up (-2), and the cheap cross arcs s0 -> d1, s1 -> d0 (cost 1). pi0 sets the artificial arcs' costs so
    # that s1 -> R -> s0 costs -200: a zero-flow up arc kept as given let the first pivot route s1's unit through R
    # (artificial flow 2, status 0, value 11) instead of the optimum s0 -> d1, s1 -> d0 (value 2).
    src, dst, cost = np.array([0, 1, 0, 1]), np.array([2, 3, 3, 2]), np.array([10.0, 10.0, 1.0, 1.0])
    supply, basis = np.array([1.0, 1.0, -1.0, -1.0]), np.array([-1, -2, 0, 1])
    pi0 = np.array([-100.0, 100.0, -100.0, 100.0])
    flow, u, status, _, art, _, _, warm = _core.min_cost_flow_warm(src, dst, cost, supply, pi0, basis, 0.0, 0,
                                                                   np.zeros(0))
    assert warm is True and status == 0 and art == 0.0
    np.testing.assert_array_equal(flow, [0.0, 0.0, 1.0, 1.0])
    assert (u[src] - u[dst] <= cost).all()


def test_a_basis_that_is_no_feasible_tree_is_refused():
    rows, cols, C, a, b, keep = _problem(3)
    r, c, Ck = rows[keep], cols[keep], C[keep]
    good = _solve(r, c, Ck, a, b)
    n = len(a)
    bad_cycle = good[6].copy()
    tree = np.flatnonzero(bad_cycle >= 0)
    v = tree[0]
    other = r[bad_cycle[v]] if r[bad_cycle[v]] != v else n + c[bad_cycle[v]]
    bad_cycle[other] = bad_cycle[v]  # both ends claim the same arc: a cycle, cut off from the root
    wrong_arc = good[6].copy()
    wrong_arc[tree[1]] = np.flatnonzero((r != tree[1]) & (n + c != tree[1]))[0]  # an arc that misses the node
    for basis in (bad_cycle, wrong_arc, np.full(n + len(b), -1, np.int64)):  # the last: artificial arcs with flow
        out = _solve(r, c, Ck, a, b, basis)
        assert out[7] is False
        assert _certify(out, r, c, Ck, a, b) == pytest.approx(good[0] @ Ck, abs=1e-15)
    with pytest.raises(ValueError, match="basis must be"):
        _solve(r, c, Ck, a, b, np.zeros(3, np.int64))

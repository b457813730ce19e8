"""The compiled reduced-cost scan of the multiscale solver is deterministic: the same arcs in the same order
whatever the number of threads and however they are scheduled, and the solver passes torch's thread setting."""

import numpy as np
import pytest
import torch

from monge import _core
from monge.solvers.exact import multiscale as ms


def _problem(n, m, d, seed, lattice):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), rng.random((m, d)) + 0.1
    if lattice:  # points on a coarse grid, potentials on a coarser one: many exactly equal reduced costs
        x, y = np.round(x * 6) / 6, np.round(y * 6) / 6
        f, g = np.round(rng.random(n) * 4) / 64, np.round(rng.random(m) * 4) / 64
    else:
        f, g = rng.random(n) * 0.05 + (x**2).sum(1) * 0.1, rng.random(m) * 0.05 - 0.03
    return x, y, f, g


@pytest.mark.parametrize("lattice", [False, True])
@pytest.mark.parametrize("leaf", [0, 4, 32])
def test_scan_is_the_same_for_any_thread_count_and_run(lattice, leaf):
    x, y, f, g = _problem(1500, 1100, 2, 7 + leaf, lattice)
    for tol, k in ((1e-12, 3), (-0.04, 8), (-np.inf, 1)):  # violations, short lists, c-transform
        ref = _core.reduced_cost_scan(x, y, f, g, 2.0, tol, k, 1, leaf)
        assert len(ref[0]) > 0
        for threads in (2, 3, 2, 7, 2):  # 2 three times: the leaves reach the threads in another order
            out = _core.reduced_cost_scan(x, y, f, g, 2.0, tol, k, threads, leaf)
            for a, b in zip(ref[:3], out[:3]):
                np.testing.assert_array_equal(a, b)
            assert out[3] == ref[3]


@pytest.mark.parametrize("leaf", [0, 8])
def test_column_ties_go_to_one_row_whatever_the_threads(leaf):
    # x_i = (i / 1024, 0), f_i = |x_i|^2, y_j = (0, j / 64): r_ij = |y_j|^2 exactly (dyadic) for every row, so
    # each column's smallest reduced cost is tied over all 600 rows, spread over the leaves of the x tree (short
    # lists of all m arcs: every arc is priced)
    n, m = 600, 50
    x = np.c_[np.arange(n) / 1024, np.zeros(n)]
    y = np.c_[np.zeros(m), np.arange(m) / 64]
    f, g = x[:, 0] ** 2, np.zeros(m)
    picks = [_core.reduced_cost_scan(x, y, f, g, 2.0, -1.0, m, t, leaf) for t in (1, 2, 5, 2)]
    for rows, cols, vals, priced in picks:
        assert priced == n * m and len(rows) == n * m + m
        assert np.array_equal(cols[n * m:], np.arange(m))  # after the rows' lists, the best of each column
        np.testing.assert_array_equal(vals[n * m:], y[:, 1] ** 2)
        assert len(set(rows[n * m:].tolist())) == 1  # the ties go to the row first in the tree's order, for all
        np.testing.assert_array_equal(rows, picks[0][0])
        np.testing.assert_array_equal(cols, picks[0][1])


def test_multiscale_passes_torch_threads_and_repeats_itself(monkeypatch):
    seen = []
    scan = _core.reduced_cost_scan

    def spy(*args):
        seen.append(args[7])
        return scan(*args)

    monkeypatch.setattr(ms._core, "reduced_cost_scan", spy)
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(1500, 2, generator=g, dtype=torch.float64), torch.rand(1500, 2, generator=g, dtype=torch.float64)
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            seen.clear()
            res, st = ms._multiscale(x, y, None, None, 2.0, 256, 8, 100, 4, 0.25)
            assert seen and set(seen) == {threads}
            runs.append((res, st, [int(c.n_iters) for _, c in res.convergence.levels]))
    finally:
        torch.set_num_threads(before)
    for res, st, iters in runs[1:]:
        assert st == runs[0][1] and iters == runs[0][2]  # the same candidate arcs and pivots per level
        assert torch.equal(res.vals, runs[0][0].vals) and float(res.value) == float(runs[0][0].value)

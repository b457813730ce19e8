"""Multiscale exact OT: equal to the dense network simplex, a certificate that finds planted violations, the
blocked reduced-cost scan equal to the full one, the automatic switch and the memory check of solve_points."""

import numpy as np
import pytest
import torch

import monge
from monge import _core
from monge.solvers.exact import multiscale as ms


def _cloud(n, m, d, seed, dup=False, ties=False, zeros=0.0, uniform=False, clusters=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = torch.rand(m, d, generator=g, dtype=torch.float64) * 0.8 + 0.3  # overlapping, shifted
    if dup:  # repeated points on both sides
        x[: n // 4] = x[n // 4 : 2 * (n // 4)]
        y[: m // 5] = y[-(m // 5):]
    if clusters:  # nonuniform: x in 5 tight Gaussian clusters, y spread
        x = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.03 + torch.rand(5, d, generator=g,
                                                                                    dtype=torch.float64)[
            torch.randint(0, 5, (n,), generator=g)]
    if ties:  # points on a coarse lattice: many equal costs
        x = torch.round(x * 3) / 3
        y = torch.round(y * 3) / 3
    if uniform:
        return x, y, None, None
    a, b = torch.rand(n, generator=g, dtype=torch.float64) ** 2, torch.rand(m, generator=g, dtype=torch.float64)
    a[torch.rand(n, generator=g) < zeros] = 0.0
    b[torch.rand(m, generator=g) < zeros] = 0.0
    return x, y, a / a.sum(), b / b.sum()


CASES = [  # n, m, d, p, options of _cloud
    (300, 300, 2, 2.0, dict(uniform=True)), (257, 190, 1, 2.0, dict(dup=True, zeros=0.2)),
    (200, 260, 2, 2.0, dict(ties=True)), (180, 150, 3, 2.0, dict(zeros=0.1, dup=True)),
    (120, 140, 4, 2.0, dict()), (100, 90, 5, 2.0, dict(ties=True, zeros=0.1)), (150, 160, 2, 1.0, dict(dup=True)),
    (400, 350, 2, 2.0, dict(dup=True, ties=True, zeros=0.3)), (1500, 1300, 2, 2.0, dict(clusters=True)),
]


@pytest.mark.parametrize("n, m, d, p, opts", CASES)
def test_multiscale_equals_dense_simplex(n, m, d, p, opts):
    x, y, a, b = _cloud(n, m, d, n + m + d, **opts)
    kw = dict(cost="sqeuclidean") if p == 2 else dict(cost="euclidean", p=p)
    res = monge.solve_points(x, y, a, b, method="multiscale", **kw)
    C = torch.cdist(x, y) ** p
    ref = monge.solve(C, a, b)
    assert res.convergence.status == ("converged",) and res.convergence.level("certificate").all_converged
    assert abs(float(res.value) - float(ref.value)) <= 1e-12 * float(ref.value)
    assert abs(float(res.convergence.duality_gap)) <= 1e-12 * float(ref.value) + 1e-16
    assert float((res.f[:, None] + res.g[None] - C).max()) <= 1e-12  # dual feasible on every arc
    aa = torch.full((n,), 1.0 / n, dtype=torch.float64) if a is None else a
    bb = torch.full((m,), 1.0 / m, dtype=torch.float64) if b is None else b
    row, col = res.marginals
    assert torch.allclose(row, aa, atol=1e-14) and torch.allclose(col, bb, atol=1e-14)
    assert bool((res.vals > 0).all()) and res.vals.numel() <= n + m - 1  # the plan's entries, no padding


def _brute(x, y, f, g, p):
    return (((x[:, None] - y[None]) ** 2).sum(-1)) ** (p / 2) - f[:, None] - g[None]


@pytest.mark.parametrize("d, p, leaf", [(2, 2.0, 8), (3, 2.0, 32), (1, 2.0, 4), (2, 1.0, 8), (5, 2.0, 16)])
def test_blocked_scan_equals_full_scan_on_non_optimal_potentials(d, p, leaf):
    rng = np.random.default_rng(d + leaf)
    n, m = 700, 500
    x, y = rng.random((n, d)), rng.random((m, d)) + 0.2
    f = rng.random(n) * 0.05 + (x**2).sum(1) * 0.1  # smooth part plus noise: not optimal, some arcs violate
    g = rng.random(m) * 0.05 - 0.03
    r = _brute(x, y, f, g, p)
    for tol in (1e-9, -0.05):  # violations; short lists (every arc with r < 0.05)
        k = 3
        rows, cols, vals, priced = _core.reduced_cost_scan(x, y, f, g, p, tol, k, 2, leaf)
        full = _core.reduced_cost_scan(x, y, f, g, p, tol, k, 2, 0)
        assert full[3] == n * m and 0 < priced < n * m  # the blocked scan prices fewer arcs
        # rows then the best of each column (of the priced arcs): every row that violates, and nothing else
        assert np.array_equal(np.unique(rows), np.flatnonzero((r < -tol).any(1)))
        _, first = np.unique(rows * m + cols, return_index=True)
        rows, vals = rows[first], vals[first]
        assert np.all(np.abs(r[rows, cols[first]] - vals) <= 1e-12)
        for i in np.unique(rows)[:60]:  # its k smallest reduced costs, as the brute force
            want = np.sort(r[i][r[i] < -tol])[:k]
            np.testing.assert_allclose(np.sort(vals[rows == i])[:k], want, rtol=0, atol=1e-12)
        assert abs(vals.min() - r.min()) <= 1e-12 and abs(full[2].min() - r.min()) <= 1e-12


def test_certificate_finds_a_planted_violation():
    x, y, a, b = _cloud(200, 200, 2, 3)
    res = monge.solve_points(x, y, a, b, method="multiscale")
    xs, ys = (v.numpy() - 0.65 for v in (x, y))
    f, g = res.f.numpy().copy(), res.g.numpy().copy()
    assert len(ms._violations(xs, ys, f, g, 2.0, 1e-12, 4)[0]) == 0  # optimal potentials: no violation
    f[17] += 1e-6  # one row's potential too large: its tight arcs now violate
    vr, vc, _ = ms._violations(xs, ys, f, g, 2.0, 1e-12, 4)
    assert len(vr) > 0 and set(vr.tolist()) == {17}
    C = (torch.cdist(x, y) ** 2).numpy()
    assert set(vc.tolist()) <= set(np.flatnonzero(C[17] - f[17] - g < -1e-12).tolist())
    capped = ms.multiscale_ot(x, y, a, b, max_rounds=0, shortlist=1)  # certificate rounds capped at 0
    cert = capped.convergence.level("certificate")
    assert bool(cert.all_converged) == (capped.convergence.status == ("converged",))


def test_auto_switch_and_memory_errors(monkeypatch):
    x, y, _, _ = _cloud(300, 200, 2, 7, uniform=True)
    ref = monge.solve_points(x, y)  # dense: fits the budget
    assert not any(k == "certificate" for k, _ in ref.convergence.levels)
    monkeypatch.setattr(ms, "DENSE_BUDGET", 1000)
    res = monge.solve_points(x, y)
    assert [k for k, _ in res.convergence.levels][-1] == "certificate"
    assert abs(float(res.value) - float(ref.value)) <= 1e-12 * float(ref.value)
    assert not ms.prefer_multiscale(x, y, "sqeuclidean", None, "auto", {"eps": 0.1})  # entropic: no switch
    monkeypatch.setattr(ms, "available_bytes", lambda: 10**5)
    with pytest.raises(ValueError, match=r"multiscale exact solver needs about .* GiB"):
        monge.solve_points(x, y)
    with pytest.raises(ValueError, match=r"dense cost of about .* GiB"):
        monge.solve_points(x, y, cost="cosine")
    assert ms.dense_bytes(10**5, 10**5) > 10**11 and ms.multiscale_bytes(10**5, 10**5, 2) < 4 * 2**30


def test_envelope_gradients_equal_the_dense_solver():
    x, y, a, b = _cloud(60, 50, 2, 11)
    grads = []
    for method in ("multiscale", "network_simplex"):
        xs, ys, as_, bs = (v.clone().requires_grad_(True) for v in (x, y, a, b))
        res = monge.solve_points(xs, ys, as_, bs, method=method)
        res.value.backward()
        grads.append([v.grad for v in (xs, ys, as_, bs)])
    for gm, gd in zip(*grads):
        if gm.dim() == 1:  # potentials are unique up to a constant: compare centred
            gm, gd = gm - gm.mean(), gd - gd.mean()
        assert torch.allclose(gm, gd, atol=1e-10)

"""Adaptive over-relaxation and check scheduling of the Sinkhorn loop (monge.solvers._loop)."""

import math
import warnings

import pytest
import torch

import monge
from monge.solvers._loop import Relaxation, early_check


def _feed(relax, errors, done=(), every=10, state=None):
    """Drive ``relax`` with a synthetic error trace (one entry per check) after the checks ``done`` (already seen);
    returns the checks at which it asked for a restore."""
    trace = [torch.tensor([e], dtype=torch.float64) for e in done]
    restores = []
    for k, e in enumerate(errors, len(done)):
        trace.append(torch.tensor([e], dtype=torch.float64))
        if relax.update(trace, state if state is not None else k, k * every) is not None:
            restores.append(k)
    return restores


def _optimum(r):
    return 2.0 / (1.0 + math.sqrt(1.0 - r))


def test_plain_rate_gives_the_damped_sor_optimum():
    r = 0.97  # plain contraction per iteration
    relax = Relaxation("auto", 10)
    _feed(relax, [0.5 * r ** (10 * k) for k in range(3)])
    assert relax.omega == pytest.approx(1.0 + 0.85 * (_optimum(r) - 1.0), rel=1e-9)


def test_young_relation_raises_a_low_first_estimate():
    # the relaxed rate lam of omega = w below the optimum satisfies (lam + w - 1)^2 = lam w^2 r (Young)
    r, w = 0.99, 1.4
    lam = max(x for x in _young_roots(r, w))
    relax = Relaxation("auto", 10)
    relax.omega, relax.err_at_switch, relax.history = w, 1.0, [(0, 1.0)]
    _feed(relax, [lam ** (10 * k) for k in range(1, 5)], done=[1.0])
    assert relax.omega == pytest.approx(min(1.8, 1.0 + 0.95 * (_optimum(r) - 1.0)), rel=1e-6)


def _young_roots(r, w):
    # lam^2 + (2(w-1) - w^2 r) lam + (w-1)^2 = 0
    b, c = 2 * (w - 1) - w * w * r, (w - 1) ** 2
    d = math.sqrt(b * b - 4 * c)
    return (-b - d) / 2, (-b + d) / 2


def test_transient_and_blow_up_are_handled():
    relax = Relaxation("auto", 10)
    _feed(relax, [1.0, 1.3, 1.2, 1.1])  # rising then falling, but not below the start: no switch yet
    assert relax.omega == 1.0
    relax = Relaxation("auto", 10)
    restores = _feed(relax, [1.0, 0.5, 0.25, 30.0], state="saved")
    assert restores == [3] and 1.0 < relax.omega < 1.5  # restored and halved
    relax = Relaxation(1.3, 10)
    assert _feed(relax, [1.0, 0.5, 1e9]) == [] and relax.omega == 1.3  # a fixed omega is the user's


def test_oscillation_calms_the_relaxation_without_a_restore():
    relax = Relaxation("auto", 10)
    assert _feed(relax, [1.0, 0.5, 0.25]) == [] and relax.omega > 1.0
    switched = relax.omega
    restores = _feed(relax, [0.3, 0.2, 0.35, 0.3, 0.2, 0.35, 0.3], done=[1.0, 0.5, 0.25])
    assert restores == [] and relax.omega == pytest.approx(1.0 + 0.5 * (switched - 1.0))


def test_early_check_prediction():
    # error 1e-3 after 1e-2 ten iterations before: rate 10^(-1/10) per iteration, 1e-6 is 30 iterations away
    assert early_check(1e-2, 1e-3, 1e-6, 50, 10) is None
    assert early_check(1e-2, 1e-5, 1e-6, 50, 10) == 54  # rate 0.501: 4 iterations
    assert early_check(1e-3, 2e-6, 1e-6, 50, 10) == 52  # rate 0.537: two iterations
    assert early_check(None, 1e-3, 1e-6, 0, 10) is None
    assert early_check(1e-3, 1e-3, 1e-6, 10, 10) is None  # no progress: no prediction
    assert early_check(1e-3, 1e-4, 0.0, 10, 10) is None  # tol = 0 runs max_iter


def test_auto_relaxation_beats_plain_iterations_on_a_grid():
    n = 64
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    X, Y = torch.meshgrid(t, t, indexing="ij")
    a = torch.exp(-((X - 0.3) ** 2 + (Y - 0.3) ** 2) / 0.01)
    b = torch.exp(-((X - 0.7) ** 2 + (Y - 0.6) ** 2) / 0.02) + 1e-3
    a, b = a / a.sum(), b / b.sum()
    kw = dict(eps=1e-3, spacing=(1 / (n - 1),) * 2, tol=1e-8, max_iter=5000)
    plain = monge.solve_grid(a, b, omega=1.0, **kw)
    auto = monge.solve_grid(a, b, **kw)
    assert bool(plain.convergence.converged) and bool(auto.convergence.converged)
    assert int(auto.convergence.n_iters) * 2 < int(plain.convergence.n_iters)
    assert float(auto.convergence.error) <= 1e-8
    assert torch.allclose(auto.value, plain.value, rtol=1e-9, atol=0)


def test_auto_relaxation_on_point_clouds_at_small_eps_matches_plain():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(300, 2, generator=g, dtype=torch.float64), torch.rand(300, 2, generator=g, dtype=torch.float64)
    kw = dict(eps=1e-3, tol=1e-8, max_iter=20000)
    plain = monge.solve_points(x, y, omega=1.0, **kw)
    auto = monge.solve_points(x, y, **kw)
    assert bool(auto.convergence.converged)
    assert int(auto.convergence.n_iters) < int(plain.convergence.n_iters)
    torch.testing.assert_close(auto.value, plain.value, rtol=1e-7, atol=0)


def _shapes(n=48):
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    X, Y = torch.meshgrid(t, t, indexing="ij")
    imgs = torch.stack([torch.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / s)
                        for cx, cy, s in ((0.25, 0.3, 0.01), (0.7, 0.7, 0.02), (0.5, 0.15, 0.005))])
    imgs[1][(X - 0.5) ** 2 + (Y - 0.5) ** 2 < 0.01] = 0.0  # a hole: zero-weight cells, -inf potentials
    return imgs / imgs.sum((1, 2), keepdim=True)


def test_over_relaxed_barycenter_same_fixed_point_fewer_iterations():
    A = _shapes()
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    kw = dict(eps=2e-3, geom=monge.GridSpec(spacing=(1 / 47, 1 / 47)), tol=1e-9, max_iter=20000)
    plain = monge.barycenter(A, w, omega=1.0, **kw)
    auto = monge.barycenter(A, w, **kw)
    assert plain.convergence.all_converged and auto.convergence.all_converged
    assert int(auto.convergence.n_iters) * 3 < int(plain.convergence.n_iters)
    assert torch.isfinite(auto.barycenter).all()
    assert float((auto.barycenter - plain.barycenter).abs().sum()) < 1e-8


def test_barycenter_tol_zero_runs_plain_iterations():
    A = _shapes(16)
    kw = dict(eps=5e-3, geom="grid", tol=0, max_iter=7)
    torch.testing.assert_close(monge.barycenter(A, **kw).barycenter,
                               monge.barycenter(A, omega=1.0, **kw).barycenter, rtol=0, atol=0)
    with pytest.raises(ValueError, match="omega"):
        monge.barycenter(A, eps=5e-3, geom="grid", omega=2.5)


def test_auto_relaxation_is_never_much_slower_than_plain_on_random_problems():
    """Random sizes, dimensions, spreads, weights, eps from 0.3 to 1e-4 x the largest cost, balanced or not,
    float32 or float64: the auto rule converges where plain iterations do, to the same value, and never takes
    more than 1.2x their iterations (a sample of the 300-problem study in benchmarks/RESULTS.md)."""
    total_plain = total_auto = 0
    for seed in range(40):
        g = torch.Generator().manual_seed(1000 + seed)
        n, m, d = (int(torch.randint(5, 120, (1,), generator=g)), int(torch.randint(5, 120, (1,), generator=g)),
                   int(torch.randint(1, 4, (1,), generator=g)))
        x = torch.randn(n, d, generator=g, dtype=torch.float64) * float(torch.rand(1, generator=g) * 2 + 0.1)
        y = torch.randn(m, d, generator=g, dtype=torch.float64) + float(torch.rand(1, generator=g))
        a = torch.rand(n, generator=g, dtype=torch.float64) ** 3 + 1e-3
        b = torch.rand(m, generator=g, dtype=torch.float64) ** 3 + 1e-3
        C = torch.cdist(x, y) ** 2
        eps = float(C.max()) * 10 ** float(-torch.rand(1, generator=g) * 3.5 - 0.5)
        rho = None if seed % 3 else float(10 ** (torch.rand(1, generator=g) * 3 - 1))
        dt = torch.float32 if seed % 5 == 0 else torch.float64
        kw = {"eps": eps, "rho": rho, "tol": 1e-5 if dt == torch.float32 else 1e-8, "max_iter": 20000}
        args = (C.to(dt), (a / a.sum()).to(dt), (b / b.sum()).to(dt))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain, auto = monge.solve(*args, omega=1.0, **kw), monge.solve(*args, **kw)
        n_plain, n_auto = int(plain.convergence.n_iters), int(auto.convergence.n_iters)
        total_plain, total_auto = total_plain + n_plain, total_auto + n_auto
        assert torch.isfinite(auto.value) and torch.isfinite(auto.f).all()
        if bool(plain.convergence.converged):
            assert bool(auto.convergence.converged), seed
            rtol = 1e-3 if dt == torch.float32 else 1e-6
            torch.testing.assert_close(auto.value, plain.value, rtol=rtol, atol=1e-9)
        assert n_auto <= 1.2 * n_plain + 20, (seed, n_plain, n_auto)
    assert 2 * total_auto < total_plain

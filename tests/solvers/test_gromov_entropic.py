"""Entropic GW: lazy low-rank steps, implicit gradients, one-sided unbalanced, batches, the GW barycenter."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

import monge
from monge.geometry import PointCloud
from monge.problems.quadratic import QuadraticProblem
from monge.solvers.gromov import EntropicGromovWasserstein, gromov_barycenter, gromov_wasserstein
from monge.solvers.gromov import entropic as entropic_mod
from monge.solvers.gromov import lazy as lazy_mod
from monge.solvers.gromov.common import Objective

T64 = dict(dtype=torch.float64)
RHOS = [(None, None), (0.5, None), (None, 0.5), (0.5, 2.0)]


def data(rng, n, m, dx=2, dy=3, scale=0.5):
    x, y = rng.normal(size=(n, dx)) * scale, rng.normal(size=(m, dy)) * scale
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    return [torch.from_numpy(v) for v in (x, y, a, b)]


def problem(x, y, a=None, b=None, rho=(None, None)):
    return QuadraticProblem(PointCloud(x), PointCloud(y), a, b, rho_a=rho[0], rho_b=rho[1])


# --- lazy low-rank steps ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rho", RHOS)
def test_lazy_equals_dense(rho):
    x, y, a, b = data(np.random.default_rng(0), 40, 30)
    prob = problem(x, y, a, b, rho)
    kw = dict(eps=2e-2, tol=1e-10, inner_tol=1e-12)
    dense = EntropicGromovWasserstein(backend="dense", **kw)(prob)
    lazy = EntropicGromovWasserstein(backend="lazy", **kw)(prob)
    assert dense.convergence.all_converged and lazy.convergence.all_converged
    assert float((dense.plan - lazy.plan).abs().sum()) < 1e-10
    assert float(lazy.value) == pytest.approx(float(dense.value), rel=1e-10)
    assert float(lazy.quadratic_term) == pytest.approx(float(dense.quadratic_term), rel=1e-10)
    assert int(lazy.convergence.n_iters) == int(dense.convergence.n_iters)


def test_lazy_builds_no_dense_cost(monkeypatch):
    """No linearised (n, m) cost and no n x n matrix on the lazy path: the dense gradient, the dense cost and a
    dense LinearisedCost are never called; ``auto`` takes that path above LAZY_ABOVE."""
    x, y, a, b = data(np.random.default_rng(1), 30, 20)
    ref = EntropicGromovWasserstein(eps=5e-2, backend="dense", tol=1e-8, inner_tol=1e-10)(problem(x, y, a, b))
    assert ref.convergence.all_converged

    def forbidden(*args, **kwargs):
        raise AssertionError("dense (n, m) cost built on the lazy path")

    monkeypatch.setattr(Objective, "cross", forbidden)
    monkeypatch.setattr(Objective, "grad", forbidden)
    monkeypatch.setattr(lazy_mod.LinearisedCost, "cost", forbidden)
    monkeypatch.setattr(entropic_mod, "LAZY_ABOVE", 0)
    out = EntropicGromovWasserstein(eps=5e-2, tol=1e-8, inner_tol=1e-10)(problem(x, y, a, b))  # auto: lazy
    assert out.convergence.all_converged
    assert float((out.plan - ref.plan).abs().sum()) < 1e-9
    assert problem(x, y).is_low_rank


def test_lazy_float32_close_to_float64():
    x, y, a, b = data(np.random.default_rng(2), 50, 40)
    r64 = EntropicGromovWasserstein(eps=2e-2, backend="lazy")(problem(x, y, a, b))
    r32 = EntropicGromovWasserstein(eps=2e-2, backend="lazy")(problem(x.float(), y.float(), a.float(), b.float()))
    assert r32.plan.dtype == torch.float32 and r32.convergence.all_converged
    assert float((r32.plan.double() - r64.plan).abs().sum()) < 1e-3


# --- implicit gradients -------------------------------------------------------------------------------------------

def _grad_fn(solver, rho, W):
    def fn(x, y, a, b):
        if rho == (None, None):  # balanced: equal masses (normalising is part of the function)
            a, b = a / a.sum(), b / b.sum()
        res = solver(problem(x, y, a, b, rho))
        return (res.plan * W).sum(), res.quadratic_term, res.value
    return fn


def _inputs(seed, n=4, m=3):
    x, y, a, b = data(np.random.default_rng(seed), n, m, dx=2, dy=2)
    return [v.clone().requires_grad_() for v in (x, y, a, b)]


@pytest.mark.parametrize("rho", RHOS)
def test_implicit_gradcheck(rho):
    """Plan, GW term and value w.r.t. points and weights, float64 (one random direction per output here; every
    entry in the slow test below)."""
    inputs = _inputs(3)
    W = torch.rand(4, 3, **T64, generator=torch.Generator().manual_seed(0))
    solver = EntropicGromovWasserstein(eps=0.05, tol=1e-11, inner_tol=1e-12, max_iter=5000)
    assert torch.autograd.gradcheck(_grad_fn(solver, rho, W), inputs, eps=1e-6, atol=1e-5, rtol=1e-4,
                                    fast_mode=True, nondet_tol=1e-12)  # BLAS sums may round differently per call


@pytest.mark.slow
@pytest.mark.parametrize("rho", RHOS)
def test_implicit_gradcheck_every_entry(rho):
    inputs = _inputs(4)
    W = torch.rand(4, 3, **T64, generator=torch.Generator().manual_seed(1))
    solver = EntropicGromovWasserstein(eps=0.05, tol=1e-11, inner_tol=1e-12, max_iter=5000)
    assert torch.autograd.gradcheck(_grad_fn(solver, rho, W), inputs, eps=1e-6, atol=1e-5, rtol=1e-4,
                                    nondet_tol=1e-12)


def test_implicit_value_gradient_equals_envelope():
    """The value through the implicit plan has the envelope's gradient (stationarity): both routes agree."""
    x, y, a, b = _inputs(5, 6, 5)
    eps = 0.1
    solver = EntropicGromovWasserstein(eps=eps, tol=1e-13, inner_tol=1e-14, max_iter=5000)
    res = solver(problem(x, y, a.detach(), b.detach()))
    P = res.plan
    ab = a.detach()[:, None] * b.detach()[None]
    through_plan = res.quadratic_term + eps * (torch.xlogy(P, P) - torch.xlogy(P, ab) - P + ab).sum()
    g_env = torch.autograd.grad(res.value, (x, y), retain_graph=True)
    g_imp = torch.autograd.grad(through_plan, (x, y))
    for u, v in zip(g_env, g_imp):
        torch.testing.assert_close(u, v, atol=1e-8, rtol=1e-6)


def test_envelope_mode_has_no_plan_gradient():
    x, y, _, _ = _inputs(6)
    res = EntropicGromovWasserstein(eps=0.1, grad="envelope")(problem(x, y))
    assert not res.plan.requires_grad and res.value.requires_grad


# --- one-sided unbalanced -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rho", RHOS[1:])
def test_unbalanced_plan_is_a_fixed_point_of_pots_sinkhorn(rho):
    """At the returned plan, POT's (semi-)unbalanced Sinkhorn on the linearised cost returns the same plan."""
    x, y, a, b = data(np.random.default_rng(7), 7, 6)
    prob = problem(x, y, a, b, rho)
    eps = 0.1
    res = EntropicGromovWasserstein(eps=eps, tol=1e-12, inner_tol=1e-13, max_iter=3000)(prob)
    assert res.convergence.all_converged
    obj = Objective(prob)
    G = obj.grad(obj.cross(res.plan), res.plan).numpy()
    reg_m = tuple(float("inf") if r is None else r for r in rho)
    T = ot.unbalanced.sinkhorn_unbalanced(a.numpy(), b.numpy(), G, eps, reg_m, numItermax=100000, stopThr=1e-15)
    assert np.abs(T - res.plan.numpy()).sum() < 1e-10
    if rho[0] is None:  # the hard side holds exactly
        torch.testing.assert_close(res.plan.sum(-1), a, atol=1e-10, rtol=0)
    if rho[1] is None:
        torch.testing.assert_close(res.plan.sum(-2), b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("side", [0, 1])
def test_one_sided_tends_to_balanced(side):
    x, y, a, b = data(np.random.default_rng(8), 7, 6)
    solver = EntropicGromovWasserstein(eps=0.1, tol=1e-9, inner_tol=1e-10, inner_max_iter=100000)
    bal = solver(problem(x, y, a, b))
    gaps = []
    for rho in (10.0, 100.0):
        r = solver(problem(x, y, a, b, (rho, None) if side == 0 else (None, rho)))
        assert r.convergence.all_converged
        assert float(r.value) <= float(bal.value) + 1e-12  # a penalty instead of a constraint: never above
        gaps.append(float((r.plan - bal.plan).abs().sum()))
    print(f"l1 distance to the balanced plan at rho = 10, 100: {gaps}")
    assert gaps[1] < 2e-2 and gaps[1] < gaps[0] / 5  # O(1 / rho): measured 0.107 -> 0.0148 and 0.022 -> 0.0023


def test_one_sided_weight_gradient_any_direction():
    """Hard side: the gradient is the full potential (no mass constraint across sides, so not only tangents)."""
    x, y, a, b = data(np.random.default_rng(9), 6, 5)
    solver = EntropicGromovWasserstein(eps=0.2, tol=1e-12, inner_tol=1e-13, grad="envelope")
    at, bt = a.clone().requires_grad_(), b.clone().requires_grad_()
    v = solver(problem(x, y, at, bt, (None, 0.7))).value
    ga, gb = torch.autograd.grad(v, (at, bt))
    rng = np.random.default_rng(10)
    da, db, h = torch.from_numpy(rng.normal(size=6)), torch.from_numpy(rng.normal(size=5)), 1e-6
    fd = [float(solver(problem(x, y, a + s * h * da, b + s * h * db, (None, 0.7))).value) for s in (1, -1)]
    assert (fd[0] - fd[1]) / (2 * h) == pytest.approx(float(ga @ da + gb @ db), rel=1e-5, abs=1e-8)


# --- batches ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [None, 0.05])
def test_batch_colliding_with_sizes_equals_single_solves(eps):
    """B = n = m = 5 (and batched weights (B, n) = (5, 5)): each element is its own problem."""
    rng = np.random.default_rng(11)
    B = n = m = 5
    x, y = torch.from_numpy(rng.normal(size=(B, n, 2)) / 2), torch.from_numpy(rng.normal(size=(B, m, 3)) / 2)
    a = torch.from_numpy(rng.dirichlet(np.ones(n), size=B))
    res = gromov_wasserstein(x, y, a, eps=eps)
    assert res.convergence.all_converged
    assert res.plan.shape == (B, n, m) and res.value.shape == (B,) and res.convergence.converged.shape == (B,)
    assert len(res.convergence.status) == B
    for k in range(B):
        one = gromov_wasserstein(x[k], y[k], a[k], eps=eps)
        torch.testing.assert_close(res.plan[k], one.plan, atol=1e-10, rtol=0)
        torch.testing.assert_close(res.value[k], one.value, atol=1e-10, rtol=0)
        assert int(res.convergence.n_iters[k]) == int(one.convergence.n_iters)
    torch.testing.assert_close(res.plan.sum(-1), a, atol=1e-7, rtol=0)


def _batch(rng, B, n, m):
    x, y = torch.from_numpy(rng.normal(size=(B, n, 2)) / 2), torch.from_numpy(rng.normal(size=(B, m, 3)) / 2)
    a, b = (torch.from_numpy(rng.dirichlet(np.ones(k), size=B)) for k in (n, m))
    return x, y, a, b


@pytest.mark.parametrize("B, n, m", [(6, 6, 4), (4, 6, 4)])  # B = n, then B = m
@pytest.mark.parametrize("path", ["per_element", "batched_sinkhorn"])
def test_batched_loop_equals_single_solves_to_1e10(monkeypatch, B, n, m, path):
    """The batched loop (one driver loop over (B, n, m) plans) equals the single solves to 1e-10 in float64, on both
    inner paths: compiled per-element Sinkhorn solves, and one batched log-domain Sinkhorn (forced here)."""
    if path == "batched_sinkhorn":
        monkeypatch.setattr(entropic_mod, "_compiled_first", lambda geom, eps: None)
    x, y, a, b = _batch(np.random.default_rng(21), B, n, m)
    kw = dict(eps=0.05, tol=1e-12, inner_tol=1e-13)
    res = gromov_wasserstein(x, y, a, b, **kw)
    assert res.convergence.converged.tolist() == [True] * B and res.convergence.n_iters.shape == (B,)
    assert res.convergence.level("sinkhorn").n_iters.shape == (B,)
    for k in range(B):
        one = gromov_wasserstein(x[k], y[k], a[k], b[k], **kw)
        torch.testing.assert_close(res.plan[k], one.plan, atol=1e-10, rtol=0)
        torch.testing.assert_close(res.quadratic_term[k], one.quadratic_term, atol=1e-10, rtol=0)
        torch.testing.assert_close(res.value[k], one.value, atol=1e-10, rtol=0)
        if path == "per_element":  # the same inner solves: the same steps (a batched solve is at the batch's
            assert int(res.convergence.n_iters[k]) == int(one.convergence.n_iters)  # tightest tolerance)


@pytest.mark.parametrize("rho", [(0.5, None), (0.5, 2.0)])
def test_batched_unbalanced_equals_single_solves(monkeypatch, rho):
    """Unbalanced batches (B = m) on the batched Sinkhorn path: the plan's own marginals per element. With
    ``rho_a = 0.5`` alone, element 1's mass flips between two values (the documented oscillation): it reports
    ``"stalled"`` in the batch as alone, while the others converge to the single solves' plans."""
    monkeypatch.setattr(entropic_mod, "_compiled_first", lambda geom, eps: None)
    x, y, a, b = _batch(np.random.default_rng(23), 5, 6, 5)
    kw = dict(eps=0.05, tol=1e-11, inner_tol=1e-12, rho_a=rho[0], rho_b=rho[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = gromov_wasserstein(x, y, a, b, **kw)
        ones = [gromov_wasserstein(x[k], y[k], a[k], b[k], **kw) for k in range(5)]
    assert res.convergence.status == tuple(one.convergence.status[0] for one in ones)
    assert sum(res.convergence.converged.tolist()) >= 4
    for k, one in enumerate(ones):
        if one.convergence.all_converged:
            torch.testing.assert_close(res.plan[k], one.plan, atol=1e-10, rtol=0)
            torch.testing.assert_close(res.value[k], one.value, atol=1e-10, rtol=0)


@pytest.mark.parametrize("path", ["per_element", "batched_sinkhorn"])
def test_batch_reports_each_elements_status(monkeypatch, path):
    """One element that needs more outer steps than max_iter: it alone reports max_iter (with max_iter steps),
    the others converge with their own step counts; one warning names it."""
    if path == "batched_sinkhorn":
        monkeypatch.setattr(entropic_mod, "_compiled_first", lambda geom, eps: None)
    x, y, a, b = _batch(np.random.default_rng(22), 4, 5, 5)  # alone: 6, 17, 5 and 7 outer steps
    kw = dict(eps=0.05)
    steps = [int(gromov_wasserstein(x[k], y[k], a[k], b[k], **kw).convergence.n_iters) for k in range(4)]
    slow = int(np.argmax(steps))
    cap = sorted(steps)[-2] + 1  # every element but the slowest converges within the cap
    assert cap < steps[slow]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = gromov_wasserstein(x, y, a, b, max_iter=cap, **kw)
    conv = res.convergence
    assert [s for k, s in enumerate(conv.status) if k != slow] == ["converged"] * 3
    assert conv.status[slow] in ("max_iter", "stalled") and not bool(conv.converged[slow])
    assert conv.converged.tolist() == [k != slow for k in range(4)]
    assert int(conv.n_iters[slow]) == cap
    for k in range(4):
        if k != slow:  # each its own count (a batched solve is at the batch's tightest tolerance: fewer steps)
            assert int(conv.n_iters[k]) == steps[k] if path == "per_element" else 1 <= int(conv.n_iters[k]) < cap
    assert len(w) == 1 and w[0].filename == __file__ and f"[{slow}]" in str(w[0].message)


def test_batched_fused_and_precomputed():
    rng = np.random.default_rng(12)
    B, n = 3, 4
    x = torch.from_numpy(rng.normal(size=(B, n, 2)) / 2)
    C = torch.cdist(x, x) ** 2
    M = torch.from_numpy(rng.random(size=(B, n, n)))
    res = monge.fused_gromov_wasserstein(M, C, C, eps=0.3)
    assert res.convergence.all_converged and res.plan.shape == (B, n, n)
    for k in range(B):
        one = monge.fused_gromov_wasserstein(M[k], C[k], C[k], eps=0.3)
        torch.testing.assert_close(res.value[k], one.value, atol=1e-10, rtol=0)  # batched products: rounding
        torch.testing.assert_close(res.plan[k], one.plan, atol=1e-10, rtol=0)


def test_batch_warns_once_for_unconverged_members():
    rng = np.random.default_rng(13)
    x, y = torch.from_numpy(rng.normal(size=(3, 6, 2))), torch.from_numpy(rng.normal(size=(3, 6, 2)))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = gromov_wasserstein(x, y, eps=0.01, max_iter=1)
    assert len(w) == 1 and w[0].filename == __file__
    assert not res.convergence.all_converged


# --- barycenter ---------------------------------------------------------------------------------------------------

def _spaces(rng, sizes=(6, 7, 8)):
    Cs = []
    for n in sizes:
        x = rng.normal(size=(n, 2))
        C = ot.dist(x, x)
        Cs.append(C / C.max())
    return Cs


def test_barycenter_equals_pot_exact_same_init():
    rng = np.random.default_rng(14)
    Cs, N = _spaces(rng), 5
    xa = rng.normal(size=(N, 2))
    C0 = ot.dist(xa, xa) / ot.dist(xa, xa).max()
    C_pot = ot.gromov.gromov_barycenters(N, Cs, init_C=C0, tol=1e-9, max_iter=100)
    res = gromov_barycenter([torch.from_numpy(c) for c in Cs], N, init=torch.from_numpy(C0))
    assert res.convergence.all_converged and res.convergence.criterion == "structure_change"
    np.testing.assert_allclose(res.cost.numpy(), C_pot, atol=1e-10)
    p = np.full(N, 1 / N)
    pot_obj = np.mean([ot.gromov.gromov_wasserstein2(C_pot, C, p, np.full(len(C), 1 / len(C))) for C in Cs])
    assert float(res.value) == pytest.approx(pot_obj, rel=1e-8)


def test_barycenter_entropic_close_to_pot():
    rng = np.random.default_rng(15)
    Cs, N = _spaces(rng), 5
    xa = rng.normal(size=(N, 2))
    C0 = ot.dist(xa, xa) / ot.dist(xa, xa).max()
    eps = 1e-2
    C_pot = ot.gromov.entropic_gromov_barycenters(N, Cs, epsilon=eps, init_C=C0, tol=1e-9, max_iter=200)
    res = gromov_barycenter([torch.from_numpy(c) for c in Cs], N, init=torch.from_numpy(C0), eps=eps, tol=1e-9)
    assert res.convergence.all_converged
    np.testing.assert_allclose(res.cost.numpy(), C_pot, atol=1e-6)  # measured 2.8e-8 (POT: inner tol 1e-4)


@pytest.mark.parametrize("cost", ["precomputed", "sqeuclidean"])
def test_barycenter_of_identical_inputs_is_the_input(cost):
    rng = np.random.default_rng(16)
    x = torch.from_numpy(rng.normal(size=(6, 3)))
    C = torch.cdist(x, x) ** 2
    X = C if cost == "precomputed" else x
    torch.manual_seed(0)
    res = gromov_barycenter([X, X], 6, cost=cost, lambdas=[0.3, 0.7])
    assert res.convergence.all_converged
    torch.testing.assert_close(torch.linalg.eigvalsh(res.cost), torch.linalg.eigvalsh(C), atol=1e-10, rtol=0)
    torch.testing.assert_close(res.cost.flatten().sort().values, C.flatten().sort().values, atol=1e-10, rtol=0)
    assert float(res.value) < 1e-12


# --- bad input ----------------------------------------------------------------------------------------------------

X3, Y3 = torch.rand(3, 2, **T64), torch.rand(3, 2, **T64)
C3 = torch.cdist(X3, X3) ** 2


@pytest.mark.parametrize("call, match", [
    (lambda: EntropicGromovWasserstein(eps=0.1, backend="gpu"), "backend: expected one of"),
    (lambda: EntropicGromovWasserstein(eps=0.1, grad="unroll"), "grad: expected one of"),
    (lambda: EntropicGromovWasserstein(eps=0.1, backend="lazy")(QuadraticProblem(C3, C3)), "backend: 'lazy' needs"),
    (lambda: gromov_wasserstein(X3, Y3, eps=0.1, rho_a=-1.0), "rho_a: "),
    (lambda: gromov_wasserstein(X3, Y3, rho_b=1.0), "rho_a/rho_b"),
    (lambda: gromov_wasserstein(torch.rand(2, 3, 2, **T64), torch.rand(3, 3, 2, **T64)), "y: expected a batch of 2"),
    (lambda: gromov_wasserstein(torch.rand(2, 3, 2, **T64), Y3, torch.ones(3, 3, **T64) / 3), "a: expected a batch"),
    (lambda: gromov_barycenter([], 3), "spaces: expected a non-empty list"),
    (lambda: gromov_barycenter(C3, 3), "spaces: expected a non-empty list"),
    (lambda: gromov_barycenter([C3], 0), "n_support: "),
    (lambda: gromov_barycenter([C3], 3, lambdas=[1.0, 2.0]), "lambdas: expected 1"),
    (lambda: gromov_barycenter([C3], 3, weights=[None, None]), "weights: expected a list of 1"),
    (lambda: gromov_barycenter([C3], 3, weights=[torch.ones(4, **T64) / 4]), r"weights\[0\]: "),
    (lambda: gromov_barycenter([C3], 3, init=torch.rand(2, 2, **T64)), "init: expected a structure of shape"),
    (lambda: gromov_barycenter([C3], 3, init=torch.rand(3, 3, **T64) + torch.eye(3, **T64) * 0 +
                               torch.triu(torch.ones(3, 3, **T64))), "init: expected a symmetric"),
    (lambda: gromov_barycenter([torch.rand(3, 4, **T64)], 3), r"spaces\[0\]: "),
    (lambda: gromov_barycenter([C3], 3, p=torch.ones(4, **T64)), "p: "),
    (lambda: gromov_barycenter([C3], 3, tol=0.0), "tol: "),
    (lambda: gromov_barycenter([C3], 3, max_iter=0), "max_iter: "),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()

"""Gromov-Wasserstein: against POT, closed forms and invariants, brute force, gradients, bad input."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import ot
import pytest
import torch

from monge.geometry import DenseCost, PointCloud
from monge.problems.quadratic import QuadraticProblem
from monge.solvers.gromov import (EntropicGromovWasserstein, GromovWasserstein, fused_gromov_wasserstein,
                                  gromov_wasserstein)
from monge.solvers.gromov.common import Objective

T64 = dict(dtype=torch.float64)


def clouds(rng, n, m, dx=2, dy=3, weights="uniform"):
    x, y = rng.normal(size=(n, dx)), rng.normal(size=(m, dy))
    if weights == "uniform":
        a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    else:
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    return x, y, a, b


def rotation(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


def t(*arrays):
    return [torch.from_numpy(np.ascontiguousarray(v)) for v in arrays]


# --- against POT -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", ["uniform", "dirichlet"])
def test_exact_never_worse_than_pot_from_same_start(weights):
    rng = np.random.default_rng(1)
    equal = 0
    for _ in range(8):
        n, m = rng.integers(5, 16, size=2)
        x, y, a, b = clouds(rng, n, m, weights=weights)
        Cx, Cy = ot.dist(x, x), ot.dist(y, y)
        _, log = ot.gromov.gromov_wasserstein(Cx, Cy, a, b, "square_loss", log=True)
        res = gromov_wasserstein(*t(x, y, a, b))
        ours = float(res.value)
        assert ours <= log["gw_dist"] * (1 + 1e-9) + 1e-12
        equal += abs(ours - log["gw_dist"]) <= 1e-9 * log["gw_dist"]
        assert res.convergence.all_converged
    assert equal >= 4  # mostly the same stationary point from the same start


def test_dense_and_low_rank_and_pot_agree():
    rng = np.random.default_rng(2)
    x, y, a, b = clouds(rng, 12, 9, weights="dirichlet")
    Cx, Cy = ot.dist(x, x), ot.dist(y, y)
    lr = gromov_wasserstein(*t(x, y, a, b))
    dense = gromov_wasserstein(*t(Cx, Cy, a, b), cost="precomputed")
    assert QuadraticProblem(PointCloud(t(x)[0]), PointCloud(t(y)[0])).is_low_rank
    assert float(lr.value) == pytest.approx(float(dense.value), rel=1e-10)
    torch.testing.assert_close(lr.plan, dense.plan, atol=1e-10, rtol=0)


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.9])
def test_fused_never_worse_than_pot(alpha):
    rng = np.random.default_rng(3)
    for _ in range(4):
        x, y, a, b = clouds(rng, 10, 8, dx=2, dy=2, weights="dirichlet")
        M = ot.dist(x, y)
        Cx, Cy = ot.dist(x, x), ot.dist(y, y)
        _, log = ot.gromov.fused_gromov_wasserstein(M, Cx, Cy, a, b, "square_loss", alpha=alpha, log=True)
        res = fused_gromov_wasserstein(*t(M, Cx, Cy, a, b), alpha=alpha)
        assert float(res.value) <= log["fgw_dist"] * (1 + 1e-9) + 1e-12
        lin, quad = float(res.linear_term), float(res.quadratic_term)
        assert float(res.value) == pytest.approx((1 - alpha) * lin + alpha * quad, rel=1e-12)


def test_kl_loss_never_worse_than_pot():
    rng = np.random.default_rng(4)
    x, y, a, b = clouds(rng, 9, 7)
    Cx, Cy = np.exp(-ot.dist(x, x)), np.exp(-ot.dist(y, y))  # positive similarities
    _, log = ot.gromov.gromov_wasserstein(Cx, Cy, a, b, "kl_loss", log=True)
    res = gromov_wasserstein(*t(Cx, Cy, a, b), cost="precomputed", loss="kl")
    assert float(res.value) <= log["gw_dist"] * (1 + 1e-9) + 1e-12
    assert res.convergence.all_converged


def test_entropic_matches_pot():
    rng = np.random.default_rng(5)
    x, y, a, b = clouds(rng, 10, 8)
    x, y = x / 4, y / 4
    Cx, Cy = ot.dist(x, x), ot.dist(y, y)
    eps = 5e-2
    T_pot = ot.gromov.entropic_gromov_wasserstein(Cx, Cy, a, b, "square_loss", epsilon=eps, tol=1e-12,
                                                  max_iter=5000)
    res = gromov_wasserstein(*t(Cx, Cy, a, b), cost="precomputed", eps=eps, tol=1e-10, inner_tol=1e-12)
    assert res.convergence.all_converged
    assert np.abs(res.plan.numpy() - T_pot).sum() < 1e-6
    E_pot = ot.gromov.gwloss(*ot.gromov.init_matrix(Cx, Cy, a, b, "square_loss"), T_pot)
    assert float(res.quadratic_term) == pytest.approx(E_pot, rel=1e-6)
    kl = (T_pot * np.log(T_pot / np.outer(a, b))).sum()
    assert float(res.value) == pytest.approx(E_pot + eps * kl, rel=1e-6)


# --- closed forms and invariants ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cost", ["sqeuclidean", "precomputed"])
def test_isometric_copy_gives_zero_and_recovers_permutation(cost):
    rng = np.random.default_rng(6)
    n = 40
    x = rng.normal(size=(n, 3))
    perm = rng.permutation(n)
    y = (x @ rotation(rng, 3).T + rng.normal(size=3))[perm]
    if cost == "precomputed":
        x, y = ot.dist(x, x), ot.dist(y, y)
    res = gromov_wasserstein(*t(x, y), cost=cost)
    assert float(res.value) < 1e-10
    assert res.convergence.all_converged and res.convergence.criterion == "fw_gap"
    assert res.plan.argmax(1).tolist() == np.argsort(perm).tolist()


def test_symmetry_and_rigid_invariance():
    rng = np.random.default_rng(7)
    x, y, a, b = clouds(rng, 11, 8, weights="dirichlet")
    v = float(gromov_wasserstein(*t(x, y, a, b)).value)
    vt = gromov_wasserstein(*t(y, x, b, a))
    assert float(vt.value) == pytest.approx(v, rel=1e-9)
    x2 = x @ rotation(rng, 2).T + 5.0
    y2 = y @ rotation(rng, 3).T - 3.0
    assert float(gromov_wasserstein(*t(x2, y2, a, b)).value) == pytest.approx(v, rel=1e-9)


def test_low_rank_gradient_equals_dense():
    rng = np.random.default_rng(8)
    x, y, a, b = clouds(rng, 30, 25)
    x = x * 3 + 10.0  # far from the origin: centring keeps the factorisation accurate
    P = torch.from_numpy(rng.dirichlet(np.ones(30 * 25)).reshape(30, 25))
    xt, yt, at, bt = t(x, y, a, b)
    lr = Objective(QuadraticProblem(PointCloud(xt), PointCloud(yt), at, bt))
    Cx, Cy = PointCloud(xt).cost(), PointCloud(yt).cost()
    dense = Objective(QuadraticProblem(Cx, Cy, at, bt))
    G_lr, G_dense = lr.grad(lr.cross(P)), dense.grad(dense.cross(P))
    scale = float(G_dense.abs().max())
    assert float((G_lr - G_dense).abs().max()) <= 1e-12 * scale
    Pf = at[:, None] * bt[None]  # and both equal the definition 2 sum_kl L(Cx_ik, Cy_jl) P_kl on a feasible plan
    G_def = 2 * torch.einsum("ikjl,kl->ij", (Cx[:, :, None, None] - Cy[None, None]) ** 2, Pf)
    assert float((dense.grad(dense.cross(Pf)) - G_def).abs().max()) <= 1e-12 * scale
    assert float((lr.grad(lr.cross(Pf)) - G_def).abs().max()) <= 1e-12 * scale


@pytest.mark.parametrize("B, n, m, dx, dy", [(6, 6, 4, 2, 3), (4, 6, 4, 3, 3), (3, 40, 30, 2, 5)])
def test_cross_batch_element_bitwise_equals_its_single_product(B, n, m, dx, dy):
    """A batch's element of ``H_x P H_y^T`` equals its own 2-D product bitwise (low-rank and dense factors): torch's
    small 2-D and batched products round differently, and the batched entropic loop takes the single solves'
    steps only from the same linearised costs."""
    from monge.problems.quadratic import LowRank, cross
    g = torch.Generator().manual_seed(B * n + m)
    r = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    Ux, Vx, Uy, Vy, P = r(B, n, dx + 2), r(B, n, dx + 2), r(B, m, dy + 2), r(B, m, dy + 2), r(B, n, m)
    Cx, Cy = Ux @ Ux.mT, Uy @ Uy.mT
    for Hx, Hy, one in ((LowRank(Ux, Vx), LowRank(Uy, Vy), lambda k: (LowRank(Ux[k], Vx[k]), LowRank(Uy[k], Vy[k]))),
                        (Cx, Cy, lambda k: (Cx[k], Cy[k]))):
        batched = cross(Hx, P, Hy)
        for k in range(B):
            hx, hy = one(k)
            assert torch.equal(batched[k], cross(hx, P[k], hy))


def test_certificate_small_and_plan_feasible():
    rng = np.random.default_rng(9)
    x, y, a, b = clouds(rng, 60, 50, weights="dirichlet")
    res = gromov_wasserstein(*t(x, y, a, b))
    c = res.convergence
    assert c.all_converged and c.status == ("converged",)
    assert float(c.error) <= max(1e-9 * float(res.value), 1e-12 * 100)
    assert c.level("network_simplex").all_converged
    r, s = res.marginals
    torch.testing.assert_close(r, t(a)[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(s, t(b)[0], atol=1e-12, rtol=0)
    assert bool((res.plan >= 0).all())
    assert float(res.f @ t(a)[0] + res.g @ t(b)[0]) == pytest.approx(float((res.plan * _grad(res, x, y, a, b)).sum()),
                                                                     rel=1e-9)


def _grad(res, x, y, a, b):
    obj = Objective(QuadraticProblem(*[PointCloud(v) for v in t(x, y)], *t(a, b)))
    return obj.grad(obj.cross(res.plan))


def test_brute_force_permutations():
    """Square loss between squared-Euclidean clouds with uniform weights is concave on the polytope (both costs are
    conditionally negative definite), so the global optimum is a permutation: enumerate them all."""
    rng = np.random.default_rng(10)
    hits, spectral, trials = 0, 0, 30
    for k in range(trials):
        n = 4 + k % 3
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 3))
        Cx, Cy = ot.dist(x, x), ot.dist(y, y)
        best = min(((Cx - Cy[np.ix_(p, p)]) ** 2).sum() for p in itertools.permutations(range(n))) / n**2
        v = float(gromov_wasserstein(*t(x, y)).value)
        w = float(gromov_wasserstein(*t(x, y), starts="spectral").value)
        assert v >= best - 1e-12 and w >= best - 1e-12  # nothing beats the global optimum
        assert w <= v + 1e-12  # the product start is one of the spectral starts
        hits += v <= best + 1e-12
        spectral += w <= best + 1e-12
    print(f"CG found the global optimum in {hits}/{trials} brute-force instances from the product start, "
          f"{spectral}/{trials} with starts='spectral'")
    assert hits >= trials // 3  # measured: 14/30 (GW is nonconvex; the product start is one of many)
    assert spectral >= hits + 5  # measured: 23/30


def test_user_init_and_not_worse_than_start():
    rng = np.random.default_rng(11)
    x, y, a, b = clouds(rng, 12, 12)
    perm = torch.from_numpy(np.eye(12)[rng.permutation(12)] / 12)
    xt, yt = t(x, y)
    obj = Objective(QuadraticProblem(PointCloud(xt), PointCloud(yt)))
    start = float(obj.value(*obj.terms(perm)))
    res = gromov_wasserstein(xt, yt, init=perm.clone())
    assert float(res.value) <= start + 1e-15
    assert res.convergence.all_converged


# --- gradients ---------------------------------------------------------------------------------------------------

def _entropic_value(solver, alpha=0.6):
    def value(x, y, M):
        return solver(QuadraticProblem(PointCloud(x), PointCloud(y), geom_xy=M, alpha=alpha)).value
    return value


def test_entropic_gradcheck_points():
    rng = np.random.default_rng(12)
    xt, yt = [v.requires_grad_() for v in t(rng.normal(size=(3, 2)) / 2, rng.normal(size=(3, 2)) / 2)]
    M = torch.rand(3, 3, **T64)
    value = _entropic_value(EntropicGromovWasserstein(eps=1.0, tol=1e-8, inner_tol=1e-10))  # the value is stationary
    assert torch.autograd.gradcheck(lambda x, y: value(x, y, M), (xt, yt), eps=1e-6, atol=1e-6, rtol=1e-4,
                                    fast_mode=True)  # (one random direction; every entry: the slow test below)
    M.requires_grad_()
    res = EntropicGromovWasserstein(eps=1.0)(QuadraticProblem(PointCloud(xt), PointCloud(yt), geom_xy=M, alpha=0.6))
    (gM,) = torch.autograd.grad(res.value, M)
    torch.testing.assert_close(gM, 0.4 * res.plan)  # envelope: d value / d M = (1 - alpha) P


@pytest.mark.slow
def test_entropic_gradcheck_points_and_fused_cost_small_eps():
    rng = np.random.default_rng(12)
    x, y, a, b = clouds(rng, 4, 3, dx=2, dy=2)
    xt, yt = [v.requires_grad_() for v in t(x / 2, y / 2)]
    M = torch.rand(4, 3, **T64, requires_grad=True)
    value = _entropic_value(EntropicGromovWasserstein(eps=0.2, tol=1e-12, inner_tol=1e-13, max_iter=2000))
    assert torch.autograd.gradcheck(value, (xt, yt, M), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_entropic_weight_gradient_along_tangent():
    rng = np.random.default_rng(13)
    x, y, a, b = clouds(rng, 6, 5, weights="dirichlet")
    xt, yt, at, bt = t(x / 2, y / 2, a, b)
    solver = EntropicGromovWasserstein(eps=0.5, tol=1e-10, inner_tol=1e-12)
    at.requires_grad_()
    v = solver(QuadraticProblem(PointCloud(xt), PointCloud(yt), at, bt)).value
    (ga,) = torch.autograd.grad(v, at)
    d = torch.from_numpy(rng.normal(size=6))
    d -= d.mean()
    h = 1e-6
    fd = [float(solver(QuadraticProblem(PointCloud(xt), PointCloud(yt), at.detach() + s * h * d,
                                        bt * (1 + s * h * 0))).value) for s in (1, -1)]
    assert (fd[0] - fd[1]) / (2 * h) == pytest.approx(float(ga @ d), rel=1e-4, abs=1e-7)


def test_exact_envelope_gradient_matches_finite_differences():
    """At a permutation (a vertex that stays optimal nearby) the exact value is smooth in the points."""
    rng = np.random.default_rng(14)
    x, y, _, _ = clouds(rng, 6, 6)
    xt, yt = t(x, y)
    xt.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: gromov_wasserstein(x, yt).value, (xt,), eps=1e-7, atol=1e-6)


def test_exact_weight_gradient_along_tangent():
    """Concave case (squared-Euclidean clouds, square loss): the CG plan is a nondegenerate vertex whose basis stays
    optimal nearby, so the value is smooth in the weights with gradient the centred duals of the last LP."""
    rng = np.random.default_rng(17)
    x, y, a, b = clouds(rng, 6, 5, weights="dirichlet")
    xt, yt, at, bt = t(x, y, a, b)
    at.requires_grad_()
    (ga,) = torch.autograd.grad(gromov_wasserstein(xt, yt, at, bt).value, at)
    d, h = torch.from_numpy(rng.normal(size=6)), 1e-7
    d -= d.mean()
    fd = [float(gromov_wasserstein(xt, yt, at.detach() + s * h * d, bt).value) for s in (1, -1)]
    assert (fd[0] - fd[1]) / (2 * h) == pytest.approx(float(ga @ d), rel=1e-5, abs=1e-8)


# --- input handling ----------------------------------------------------------------------------------------------

def test_not_converged_warns_once_at_user_line():
    rng = np.random.default_rng(15)
    x, y, _, _ = clouds(rng, 30, 30)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = gromov_wasserstein(*t(x, y), max_iter=1, rtol=0.0, atol=1e-300)
    assert len(w) == 1 and w[0].filename == __file__
    assert res.convergence.status in (("max_iter",), ("stalled",))
    assert not res.convergence.all_converged


def test_float32_keeps_dtype():
    x, y = torch.rand(7, 2), torch.rand(6, 3)
    res = gromov_wasserstein(x, y)
    assert res.plan.dtype == torch.float32 and res.value.dtype == torch.float32
    ent = gromov_wasserstein(x, y, eps=0.05)
    assert ent.plan.dtype == torch.float32 and ent.convergence.all_converged


@pytest.mark.parametrize("call, match", [
    (lambda: gromov_wasserstein(torch.rand(4, 3, **T64), torch.rand(4, 4, **T64), cost="precomputed"), "x: "),
    (lambda: gromov_wasserstein(torch.zeros(3, 3, **T64), torch.rand(4, 4, **T64), cost="precomputed"),
     "y: expected a symmetric"),
    (lambda: gromov_wasserstein(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), torch.rand(2, 2), cost="precomputed"),
     "x: expected finite"),
    (lambda: gromov_wasserstein(torch.rand(5, 2, **T64), torch.rand(4, 2, **T64), torch.ones(4, **T64)), "a: "),
    (lambda: gromov_wasserstein(torch.rand(3, 2, **T64), torch.rand(3, 2, **T64), b=torch.tensor([0.5, 0.7, -0.2],
                                                                                                 **T64)), "b: "),
    (lambda: fused_gromov_wasserstein(torch.rand(3, 4, **T64), torch.zeros(3, 3, **T64), torch.zeros(3, 3, **T64)),
     "M: expected the fused cost M of shape"),
    (lambda: fused_gromov_wasserstein(torch.rand(3, 3, **T64), torch.zeros(3, 3, **T64), torch.zeros(3, 3, **T64),
                                      alpha=1.5), "alpha: "),
    (lambda: gromov_wasserstein(torch.rand(3, 2, **T64), torch.rand(3, 2, **T64), loss="l1"), "loss: "),
    (lambda: gromov_wasserstein(torch.zeros(3, 3, **T64), torch.zeros(3, 3, **T64), cost="precomputed", loss="kl"),
     "y: loss='kl' needs positive"),
    (lambda: gromov_wasserstein(torch.rand(3, 2, **T64), torch.rand(3, 2, **T64), init=torch.ones(3, 3, **T64)),
     "init: expected a feasible plan"),
    (lambda: gromov_wasserstein(torch.rand(3, 2, **T64), torch.rand(3, 2, **T64), eps=-1.0), "eps: "),
    (lambda: QuadraticProblem(torch.zeros(3, 3, **T64), torch.zeros(3, 3, **T64), rho_a=0.0), "rho_a: "),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_unbalanced_is_rejected_where_unsupported():
    prob = QuadraticProblem(torch.zeros(3, 3, **T64), torch.zeros(2, 2, **T64), rho_a=1.0, rho_b=1.0)
    with pytest.raises(ValueError, match="rho_a/rho_b"):
        GromovWasserstein()(prob)
    half = QuadraticProblem(torch.zeros(3, 3, **T64), torch.zeros(2, 2, **T64), rho_a=1.0)
    with pytest.raises(ValueError, match="rho_a/rho_b"):
        GromovWasserstein()(half)  # one-sided: entropic only (tests/solvers/test_gromov_entropic.py)


def test_unbalanced_entropic_tends_to_balanced_and_gradient():
    rng = np.random.default_rng(16)
    x, y, a, b = clouds(rng, 6, 5, weights="dirichlet")
    xt, yt, at, bt = t(x / 2, y / 2, a, b)
    solver = EntropicGromovWasserstein(eps=0.5, tol=1e-10, inner_tol=1e-12, max_iter=100)
    bal = solver(QuadraticProblem(PointCloud(xt), PointCloud(yt), at, bt))
    loose = EntropicGromovWasserstein(eps=0.5, tol=1e-7, inner_tol=1e-9)
    big = loose(QuadraticProblem(PointCloud(xt), PointCloud(yt), at, bt, rho_a=100.0, rho_b=100.0))
    assert big.convergence.all_converged
    assert float(big.value) == pytest.approx(float(bal.value), rel=2e-2)  # measured: 1.1% apart at rho = 100
    assert float(big.value) <= float(bal.value)  # penalties instead of constraints: never above the balanced optimum
    at.requires_grad_()
    res = solver(QuadraticProblem(PointCloud(xt), PointCloud(yt), at, bt, rho_a=1.0, rho_b=1.0))
    assert res.convergence.all_converged and float(res.value.detach()) < float(bal.value)
    (ga,) = torch.autograd.grad(res.value, at)
    d, h = torch.from_numpy(rng.normal(size=6)), 1e-6
    fd = [float(solver(QuadraticProblem(PointCloud(xt), PointCloud(yt), at.detach() + s * h * d, bt, rho_a=1.0,
                                        rho_b=1.0)).value) for s in (1, -1)]
    assert (fd[0] - fd[1]) / (2 * h) == pytest.approx(float(ga @ d), rel=1e-4, abs=1e-7)


def test_geometries_are_accepted():
    C = torch.rand(4, 4, **T64)
    C = C + C.T
    C.fill_diagonal_(0)
    res = gromov_wasserstein(DenseCost(C), DenseCost(C))
    assert float(res.value) < 1e-12

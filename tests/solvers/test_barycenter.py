"""Fixed-support barycenters on dense / point-cloud geometries: POT, the exact LP, invariants, gradients, errors."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

import monge
from monge.geometry import DenseCost, PointCloud
from monge.problems.barycenter import BarycenterProblem
from monge.solvers.barycenter import Barycenter
from monge.api import barycenter
from monge.solvers.exact.lp_barycenter import lp_barycenter


def instance(n=30, K=3, seed=0, mass=1.0):
    """1-D support on [0, 1], squared cost, K positive histograms (bumps + floor), nonuniform weights."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, n)
    centres, widths = rng.uniform(0.1, 0.9, K), rng.uniform(0.003, 0.03, K)
    A = np.exp(-((x[None] - centres[:, None]) ** 2) / widths[:, None]) + 1e-3
    A = mass * A / A.sum(1, keepdims=True)
    w = rng.dirichlet(np.ones(K))
    return x, (x[:, None] - x[None]) ** 2, A, w


def solve(M, A, w, dtype=torch.float64, **kw):
    eps, rho = kw.pop("eps"), kw.pop("rho", None)
    prob = BarycenterProblem(DenseCost(torch.tensor(M, dtype=dtype)), torch.tensor(A, dtype=dtype),
                             torch.tensor(w, dtype=dtype), rho=rho)
    return Barycenter(eps=eps, **kw)(prob)


@pytest.mark.parametrize("eps", [1e-2, 1e-3])
def test_matches_pot_ibp(eps):
    """POT's log-domain IBP minimises the same objective (sum_k lambda_k KL(P_k | K)): same barycenter."""
    _, M, A, w = instance()
    ref = ot.bregman.barycenter(A.T, M, eps, w, method="sinkhorn_log", numItermax=50000, stopThr=1e-14)
    res = solve(M, A, w, eps=eps, tol=1e-12, max_iter=50000)
    assert res.convergence.all_converged
    np.testing.assert_allclose(res.barycenter.numpy(), ref, atol=1e-10 * ref.max() + 1e-14)


def test_matches_pot_debiased():
    _, M, A, w = instance(seed=1)
    ref = ot.bregman.barycenter_debiased(A.T, M, 1e-3, w, method="sinkhorn_log", numItermax=50000, stopThr=1e-14)
    res = solve(M, A, w, eps=1e-3, debias=True, tol=1e-12, max_iter=50000)
    np.testing.assert_allclose(res.barycenter.numpy(), ref, atol=1e-8 * ref.max())


@pytest.mark.parametrize("rho", [0.1, 1.0])
def test_matches_pot_unbalanced(rho):
    _, M, A, w = instance(seed=2)
    A = A * np.array([1.0, 1.5, 0.7])[:, None]  # unequal masses: only the unbalanced problem accepts them
    ref = ot.unbalanced.barycenter_unbalanced(A.T, M, 1e-2, rho, weights=w, numItermax=50000, stopThr=1e-15)
    res = solve(M, A, w, eps=1e-2, rho=rho, tol=1e-12, max_iter=50000)
    assert res.convergence.all_converged
    np.testing.assert_allclose(res.barycenter.numpy(), ref, atol=1e-9 * ref.max())


def test_float32_small_eps_matches_float64():
    _, M, A, w = instance(n=60)
    r64 = solve(M, A, w, eps=2e-4, max_iter=20000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 converges too: no warning
        r32 = solve(M, A, w, dtype=torch.float32, eps=2e-4, max_iter=20000)
    assert r32.barycenter.dtype == torch.float32 and torch.isfinite(r32.barycenter).all()
    assert r32.convergence.all_converged and r64.convergence.all_converged
    assert float((r32.barycenter.double() - r64.barycenter).abs().sum()) < 1e-3


@pytest.mark.parametrize("backend", ["dense", "lazy"])
def test_point_cloud_geometry(backend):
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.random((25, 2)))
    A = torch.tensor(rng.random((3, 25)) + 0.1)
    A = A / A.sum(1, keepdim=True)
    ref = Barycenter(eps=0.02, tol=1e-11)(BarycenterProblem(DenseCost(((x[:, None] - x[None]) ** 2).sum(-1)), A))
    res = Barycenter(eps=0.02, tol=1e-11)(BarycenterProblem(PointCloud(x, backend=backend), A))
    torch.testing.assert_close(res.barycenter, ref.barycenter, rtol=1e-9, atol=1e-12)
    res2 = barycenter(A, geom=PointCloud(x), eps=0.02, tol=1e-11)  # the shortcut builds the same point cloud
    torch.testing.assert_close(res2.barycenter, ref.barycenter, rtol=1e-9, atol=1e-12)


def test_marginals_and_mass_conservation():
    _, M, A, w = instance(mass=2.5)
    res = solve(M, A, w, eps=5e-3, tol=1e-10)
    rows, cols = res.marginals
    assert float(res.barycenter.sum()) == pytest.approx(2.5, rel=1e-9)
    torch.testing.assert_close(rows, torch.tensor(A), atol=1e-10, rtol=0)
    torch.testing.assert_close(cols, res.barycenter.expand_as(cols), atol=1e-10, rtol=0)
    torch.testing.assert_close(res.plans.sum(-1), rows, atol=1e-12, rtol=1e-10)


def test_non_square_geometry_and_lp_limit():
    """Inputs on n points, barycenter on m others; the entropic cost decreases to the exact LP value as eps -> 0."""
    rng = np.random.default_rng(4)
    xs, xb = np.sort(rng.random(12)), np.linspace(0, 1, 9)
    C = torch.tensor((xs[:, None] - xb[None]) ** 2)
    A = torch.tensor(rng.random((3, 12)) + 0.05)
    A = A / A.sum(1, keepdim=True)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    lp = lp_barycenter(A, w, C)
    assert lp.status == "optimal" and float(lp.barycenter.sum()) == pytest.approx(1.0)
    # the LP value is sum_k lambda_k W(a_k, b*) for its own barycenter (an independent exact solver agrees)
    exact = sum(float(w[k]) * float(monge.emd(A[k], lp.barycenter, C).value) for k in range(3))
    assert exact == pytest.approx(float(lp.value), rel=1e-7)
    gaps = []
    for eps in (1e-2, 3e-3, 1e-3):
        res = barycenter(A, w, geom=C, eps=eps, max_iter=20000)
        assert res.convergence.all_converged
        assert res.barycenter.shape == (9,)
        cost = float((w[:, None, None] * res.plans * C).sum())
        gaps.append(cost - float(lp.value))
    assert gaps[0] > gaps[1] > abs(gaps[2]) and abs(gaps[2]) < 1e-2 * float(lp.value)


def test_batched_equals_looped():
    _, M, A, w = instance()
    A2 = np.stack([A, instance(seed=5)[2]])
    W = np.stack([w, [0.1, 0.1, 0.8]])
    Cb = torch.tensor(np.stack([M, 0.5 * M]))
    res = Barycenter(eps=5e-3, tol=1e-10)(BarycenterProblem(DenseCost(Cb), torch.tensor(A2), torch.tensor(W)))
    assert res.barycenter.shape == (2, 30) and res.f.shape == (2, 3, 30) and res.convergence.converged.shape == (2,)
    for i in range(2):
        one = Barycenter(eps=5e-3, tol=1e-10)(BarycenterProblem(DenseCost(Cb[i]), torch.tensor(A2[i]),
                                                                torch.tensor(W[i])))
        torch.testing.assert_close(res.barycenter[i], one.barycenter, rtol=1e-8, atol=1e-12)
    # one geometry, a batch of weight vectors: hists broadcast
    res = Barycenter(eps=5e-3, tol=1e-10)(BarycenterProblem(DenseCost(torch.tensor(M)), torch.tensor(A),
                                                            torch.tensor(W)))
    assert res.barycenter.shape == (2, 30)
    torch.testing.assert_close(res.barycenter[0], solve(M, A, w, eps=5e-3, tol=1e-10).barycenter, rtol=1e-8,
                               atol=1e-12)


def test_unroll_gradcheck():
    """The L-step unrolled barycenter is differentiable w.r.t. the histograms and the weights (float64)."""
    n, K = 6, 3
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    geom = DenseCost((x[:, None] - x[None]) ** 2)
    solver = Barycenter(eps=0.05, tol=0, max_iter=12, grad="unroll")

    def fn(logits_a, logits_w):
        hists = torch.softmax(logits_a, -1)  # stay on the simplex under gradcheck's perturbations
        return solver(BarycenterProblem(geom, hists, torch.softmax(logits_w, -1))).barycenter

    la = torch.randn(K, n, dtype=torch.float64, requires_grad=True)
    lw = torch.randn(K, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (la, lw), eps=1e-6, atol=1e-7)
    # unrolling changes the gradient, never the forward result
    env = Barycenter(eps=0.05, tol=0, max_iter=12)(BarycenterProblem(geom, torch.softmax(la, -1),
                                                                     torch.softmax(lw, -1)))
    torch.testing.assert_close(fn(la, lw), env.barycenter, rtol=1e-12, atol=1e-15)


def test_unroll_gradcheck_debiased_and_unbalanced():
    n, K = 5, 2
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    geom = DenseCost((x[:, None] - x[None]) ** 2)

    def fn(a, lw, **kw):
        return Barycenter(eps=0.1, tol=0, max_iter=8, grad="unroll", **{k: v for k, v in kw.items() if k != "rho"})(
            BarycenterProblem(geom, a, torch.softmax(lw, -1), rho=kw.get("rho"))).barycenter

    a = (torch.rand(K, n, dtype=torch.float64) + 0.1).requires_grad_(True)
    lw = torch.randn(K, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, lw: fn(a, lw, rho=0.5), (a, lw), eps=1e-6, atol=1e-7)
    an = torch.softmax(torch.randn(K, n, dtype=torch.float64), -1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda lw: fn(an.detach(), lw, debias=True), (lw,), eps=1e-6, atol=1e-7)


def test_envelope_gradient_flows_to_weights():
    _, M, A, w = instance()
    wt = torch.tensor(w, requires_grad=True)
    res = Barycenter(eps=1e-2)(BarycenterProblem(DenseCost(torch.tensor(M)), torch.tensor(A), wt))
    (res.barycenter * torch.linspace(0, 1, 30, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(wt.grad).all() and float(wt.grad.abs().max()) > 0


def test_non_convergence_reported():
    _, M, A, w = instance()
    with pytest.warns(RuntimeWarning, match="barycenter: 1 of 1 problems reached max_iter=5"):
        res = solve(M, A, w, eps=1e-4, max_iter=5)
    assert not res.convergence.all_converged and res.convergence.status == ("max_iter",)
    assert torch.isfinite(res.barycenter).all() and int(res.convergence.n_iters) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tol=0: exactly max_iter iterations were asked for, no warning
        res = solve(M, A, w, eps=1e-4, max_iter=5, tol=0)
    assert int(res.convergence.n_iters) == 5


def test_error_trace_decreases():
    _, M, A, w = instance()
    res = solve(M, A, w, eps=5e-3, tol=1e-10, check_every=5)
    errs = res.convergence.errors.reshape(-1)
    assert float(errs[-1]) < 1e-3 * float(errs[1]) and float(res.convergence.error) <= 1e-10


def test_bad_inputs():
    geom = DenseCost(torch.rand(4, 4, dtype=torch.float64))
    A = torch.full((2, 4), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"hists: expected K histograms of shape \(..., K, n\)"):
        BarycenterProblem(geom, torch.ones(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="hists: expected nonnegative"):
        BarycenterProblem(geom, torch.tensor([[0.5, 0.5, 0.5, -0.5], [0.25] * 4], dtype=torch.float64))
    with pytest.raises(ValueError, match="equal mass"):
        BarycenterProblem(geom, A * torch.tensor([[1.0], [2.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="hists: expected finite"):
        BarycenterProblem(geom, torch.tensor([[0.5, 0.5, float("nan"), 0.0], [0.25] * 4], dtype=torch.float64))
    with pytest.raises(ValueError, match="weights: expected weights summing to 1"):
        BarycenterProblem(geom, A, torch.tensor([0.5, 0.6], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"weights: expected barycentric weights of shape \(..., K\) with K = 2"):
        BarycenterProblem(geom, A, torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64))
    with pytest.raises(ValueError, match="weights: expected nonnegative"):
        BarycenterProblem(geom, A, torch.tensor([1.5, -0.5], dtype=torch.float64))
    with pytest.raises(TypeError, match="geom: expected a monge Geometry"):
        BarycenterProblem(torch.rand(4, 4), A)
    with pytest.raises(ValueError, match="rho"):
        BarycenterProblem(geom, A, rho=-1.0)
    with pytest.raises(TypeError, match="dtype"):
        BarycenterProblem(geom, A.float())
    with pytest.raises(ValueError, match="eps"):
        Barycenter(eps=0.0)
    with pytest.raises(ValueError, match="tol"):
        Barycenter(eps=0.1, tol=-1.0)
    with pytest.raises(ValueError, match="grad: expected one of"):
        Barycenter(eps=0.1, grad="implicit")
    with pytest.raises(ValueError, match="max_iter"):
        Barycenter(eps=0.1, max_iter=0)
    with pytest.raises(TypeError, match="prob: expected a monge BarycenterProblem"):
        Barycenter(eps=0.1)(A)
    with pytest.raises(ValueError, match="debias: the debiased barycenter is balanced only"):
        Barycenter(eps=0.1, debias=True)(BarycenterProblem(geom, A, rho=1.0))
    with pytest.raises(ValueError, match="debias: needs the same support"):
        Barycenter(eps=0.1, debias=True)(BarycenterProblem(DenseCost(torch.rand(4, 3, dtype=torch.float64)), A))
    with pytest.raises(ValueError, match="expected exactly one way"):
        barycenter(A, eps=0.1)
    with pytest.raises(ValueError, match="expected exactly one way"):
        barycenter(A, eps=0.1, C=geom.C, grid=True)
    with pytest.raises(ValueError, match="hists: the exact barycenter needs histograms of equal mass"):
        lp_barycenter(A * torch.tensor([[1.0], [2.0]], dtype=torch.float64), None, geom.C)


def test_problem_is_immutable_and_dtype_preserved():
    prob = BarycenterProblem(DenseCost(torch.rand(4, 4)), torch.full((2, 4), 0.25))
    with pytest.raises(AttributeError):
        prob.rho = 1.0
    res = Barycenter(eps=0.5)(prob)
    assert res.barycenter.dtype == torch.float32 and res.f.shape == (2, 4) and res.g.shape == (2, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_fast_path_matches_log_domain(dtype):
    """The shifted-product soft-min equals the log-sum-exp, also where it underflows (exact fallback) and on -inf."""
    from monge.ops.logsumexp import dense_softmin
    from monge.geometry._backends.kernel import KernelDense

    rng = np.random.default_rng(6)
    x = rng.random((40, 2))
    C = torch.tensor(((x[:, None] - x[None]) ** 2).sum(-1), dtype=dtype)
    for eps in (0.5, 1e-2, 1e-4):
        geom = KernelDense(C, eps)
        h = torch.tensor(rng.standard_normal((3, 40)), dtype=dtype) * 0.3
        h[0, :10] = -torch.inf
        for dim in (0, 1):
            ref = dense_softmin(C.double(), h.double(), eps, dim)
            out = geom.softmin(h, eps, dim)
            assert out.dtype == dtype and torch.isfinite(out).all()
            tol = 1e-12 if dtype == torch.float64 else 2e-6
            assert float((out.double() - ref).abs().max()) <= tol * max(1.0, float(ref.abs().max()))

"""Entropic OT: against POT and GeomLoss, closed forms, backends, batches, numerics, warm starts."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

import monge
from monge import EpsScaling, LinearProblem, Sinkhorn
from monge.testing import assert_close


def _inst(rng, n, m, dirichlet=True):
    x, y = rng.random((n, 2)), rng.random((m, 2))
    a = rng.dirichlet(np.ones(n)) if dirichlet else np.full(n, 1 / n)
    b = rng.dirichlet(np.ones(m)) if dirichlet else np.full(m, 1 / m)
    return x, y, a, b, ot.dist(x, y)


def _t(*arrs):
    return [torch.from_numpy(v) for v in arrs]


@pytest.mark.parametrize("eps", [1.0, 0.1, 0.02])
def test_balanced_against_pot(rng, eps):
    x, y, a, b, C = _inst(rng, 40, 27)
    P_ref = ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", stopThr=1e-14, numItermax=10**5)
    Ct, at, bt = _t(C, a, b)
    res = monge.solve(Ct, at, bt, eps=eps, tol=1e-12, max_iter=10**5)
    np.testing.assert_allclose(res.plan.numpy(), P_ref, atol=1e-10)
    P = res.plan.numpy()
    primal = (P * C).sum() + eps * (P * np.log(P / np.outer(a, b)) - P + np.outer(a, b)).sum()
    np.testing.assert_allclose(float(res.value), primal, rtol=1e-10)
    np.testing.assert_allclose(float(res.transport_cost), (P_ref * C).sum(), rtol=1e-9)
    r, c = res.marginals
    np.testing.assert_allclose(r.numpy(), a, atol=1e-12)
    np.testing.assert_allclose(c.numpy(), b, atol=1e-12)


@pytest.mark.parametrize("rho", [0.05, 1.0, 10.0])
def test_unbalanced_against_pot(rng, rho):
    x, y, a, b, C = _inst(rng, 30, 35)
    eps = 0.05
    P_ref = ot.unbalanced.sinkhorn_unbalanced(a, 2 * b, C, eps, rho, method="sinkhorn_stabilized",
                                              stopThr=1e-15, numItermax=10**5)
    res = monge.solve(*_t(C, a, 2 * b), eps=eps, rho=rho, tol=1e-13, max_iter=10**5)
    np.testing.assert_allclose(res.plan.numpy(), P_ref, atol=1e-10)


def test_semi_unbalanced(rng):
    """rho=(None, rho_b): the source marginal stays exact, the target one is penalised."""
    x, y, a, b, C = _inst(rng, 20, 25)
    res = monge.solve(*_t(C, a, 3 * b), eps=0.05, rho=(None, 0.5), tol=1e-12)
    r, c = res.marginals
    np.testing.assert_allclose(r.numpy(), a, atol=1e-10)
    assert abs(float(c.sum()) - 1.0) < 1e-10 and not np.allclose(c.numpy(), 3 * b)


@pytest.mark.parametrize("debias", [False, True])
def test_against_geomloss(rng, debias):
    from geomloss import SamplesLoss

    x, y = (torch.from_numpy(rng.random((k, 2))) for k in (60, 45))
    blur = 0.4
    gl = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.995, debias=debias, backend="tensorized")(x, y)
    # GeomLoss's p=2 cost is |x - y|^2 / 2 with eps = blur^2: in monge's units (|x - y|^2), eps = 2 blur^2
    if debias:
        ours = monge.sinkhorn_divergence(x, y, eps=2 * blur**2, tol=1e-13) / 2
    else:
        ours = monge.solve_points(x, y, eps=2 * blur**2, tol=1e-13).value / 2
    np.testing.assert_allclose(float(ours), float(gl), rtol=1e-6, atol=2e-8)


def test_single_point_closed_form(rng):
    """One source point: the only coupling is a x b, KL = 0, value = sum_j b_j C_0j."""
    y, b = torch.from_numpy(rng.random((9, 2))), torch.from_numpy(rng.dirichlet(np.ones(9)))
    x = torch.tensor([[0.3, 0.6]], dtype=torch.float64)
    for eps in (1e-3, 1.0):
        res = monge.solve_points(x, y, None, b, eps=eps)
        assert_close(res.value, (b * ((x - y) ** 2).sum(-1)).sum())
        assert_close(res.plan[0], b)


def test_converges_to_exact_as_eps_vanishes(rng):
    x, y, a, b, C = _inst(rng, 30, 30)
    exact = ot.emd2(a, b, C)
    gaps = []
    for eps in (1e-1, 1e-2, 1e-3):
        res = monge.solve(*_t(C, a, b), eps=eps, schedule=EpsScaling(0.5), max_iter=20000)
        gaps.append(abs(float(res.transport_cost) - exact))
        assert float(res.value) - exact <= eps * np.log(30 * 30) + 1e-9  # OT_eps <= OT_0 + eps log(nm)
    assert gaps[2] < gaps[0] and gaps[2] < 5e-3


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
def test_dense_equals_lazy(rng, cost):
    x = torch.from_numpy(rng.random((70, 3))).requires_grad_()
    y = torch.from_numpy(rng.random((55, 3))).requires_grad_()
    res = {}
    for backend in ("dense", "lazy"):
        r = monge.solve_points(x, y, cost=cost, eps=0.02, backend=backend, tol=1e-11)
        res[backend] = (r.value, *torch.autograd.grad(r.value, (x, y)), r.f)
    for u, v in zip(res["dense"], res["lazy"]):
        assert_close(u, v, scale=100)


def test_batched_equals_looped(rng):
    x = torch.from_numpy(rng.random((3, 25, 2)))
    y = torch.from_numpy(rng.random((3, 30, 2)))
    b = torch.from_numpy(rng.dirichlet(np.ones(30), size=3))
    res = monge.solve_points(x, y, None, b, eps=0.03, tol=1e-10)
    assert res.value.shape == (3,) and res.convergence.converged.shape == (3,)
    for i in range(3):
        single = monge.solve_points(x[i], y[i], None, b[i], eps=0.03, tol=1e-10)
        assert_close(res.value[i], single.value, scale=10)
        assert_close(res.plan[i], single.plan, scale=1e3)


@pytest.mark.parametrize("dtype,rel_eps", [(torch.float32, 1e-4), (torch.float64, 1e-6)])
def test_small_eps_is_finite(rng, dtype, rel_eps):
    x, y = (torch.from_numpy(rng.random((k, 2))).to(dtype) for k in (50, 40))
    C = torch.cdist(x, y) ** 2
    eps = rel_eps * float(C.max())
    with pytest.warns(RuntimeWarning, match="marginal error"):
        res = monge.solve(C, eps=eps, max_iter=50, check_every=10)
    for t in (res.f, res.g, res.value, res.plan, res.convergence.error):
        assert torch.isfinite(t).all()
    assert not res.convergence.all_converged and res.convergence.status == ("max_iter",)
    # with eps-scaling: converges at 1e-4 x max cost (and its transport cost is near the exact optimum); at 1e-6
    # Sinkhorn crawls (exp(-1/eps) rates) but stays finite and reports it
    with pytest.warns(RuntimeWarning) if rel_eps < 1e-5 else _no_warning():
        res = monge.solve(C, eps=eps, schedule=EpsScaling(0.7), max_iter=20000 if rel_eps > 1e-5 else 2000)
    assert res.value.dtype == dtype and torch.isfinite(res.plan).all()
    assert res.convergence.all_converged == (rel_eps > 1e-5)
    if rel_eps > 1e-5:
        exact = float(monge.solve(C.double()).value)
        assert abs(float(res.transport_cost) - exact) < 1e-3 * exact


def _no_warning():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def ctx():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield

    return ctx()


def test_zero_weights_and_warm_start(rng):
    x, y, a, b, C = _inst(rng, 20, 20)
    a[:5] = 0
    a /= a.sum()
    Ct, at, bt = _t(C, a, b)
    res = monge.solve(Ct, at, bt, eps=0.05, tol=1e-11)
    assert torch.isfinite(res.f).all() and float(res.plan[:5].abs().max()) == 0.0
    warm = Sinkhorn(eps=0.05, tol=1e-11)(LinearProblem(monge.DenseCost(Ct), at, bt), init=(res.f, res.g))
    assert int(warm.convergence.n_iters) <= 10 < int(res.convergence.n_iters)
    assert_close(warm.value, res.value)


def test_transport_map(rng):
    x, y = (torch.from_numpy(rng.random((k, 2))) for k in (15, 20))
    res = monge.solve_points(x, y, eps=0.05, tol=1e-12)
    P = res.plan
    assert_close(res.transport(), P @ y / P.sum(1, keepdim=True), scale=100)
    assert res.transport(torch.rand(4, 2, dtype=torch.float64)).shape == (4, 2)


BAD = [
    (dict(eps=0.0), ValueError, "eps"),
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(eps=0.1, rho=0.0), ValueError, "rho_a"),
    (dict(eps=0.1, grad="magic"), ValueError, "grad"),
    (dict(eps=0.1, max_iter=0), ValueError, "max_iter"),
    (dict(rho=1.0), ValueError, "only for entropic"),
    (dict(eps=0.1, schedule=0.5), TypeError, "schedule"),
]


@pytest.mark.parametrize("kw,exc,match", BAD)
def test_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        monge.solve(torch.rand(4, 5), **kw)


def test_bad_init():
    with pytest.raises(ValueError, match="init f"):
        Sinkhorn(eps=0.1)(LinearProblem(monge.DenseCost(torch.rand(4, 5))), init=(torch.zeros(3), torch.zeros(5)))


def test_cuda_skips_cleanly():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, y = torch.rand(100, 2, device="cuda"), torch.rand(90, 2, device="cuda")
    for backend in ("dense", "lazy"):
        res = monge.solve_points(x, y, eps=0.01, backend=backend)
        assert res.f.device.type == "cuda" and res.convergence.all_converged


class _TorchOnly(monge.DenseCost):
    """The same dense geometry with its own soft-min: no compiled start, block or finish (the general path)."""

    def softmin(self, h, eps, dim):
        return super().softmin(h, eps, dim)


def _small(seed, n, m, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 2, generator=g, dtype=dtype), torch.rand(m, 2, generator=g, dtype=dtype)
    a, b = torch.rand(n, generator=g, dtype=dtype) + 0.1, torch.rand(m, generator=g, dtype=dtype) + 0.1
    return torch.cdist(x, y) ** 2, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("n,m,rho", [(16, 16, None), (5, 23, None), (23, 5, 0.3)])
def test_small_fast_path_equals_general_path_with_gradients(n, m, rho):
    """The compiled start/block/finish of a small float64 dense solve against the torch path: values, potentials,
    certificates and envelope gradients w.r.t. C, a, b."""
    C, a, b = _small(1, n, m)
    out = []
    for geom_cls in (monge.DenseCost, _TorchOnly):
        Cg, ag, bg = (t.clone().requires_grad_() for t in (C, a, b))
        res = Sinkhorn(eps=0.05, tol=1e-11)(LinearProblem(geom_cls(Cg), ag, bg, rho_a=rho, rho_b=rho))
        res.value.backward()
        out.append((res, Cg.grad, ag.grad, bg.grad))
        # the no-gradient call (compiled finish on the fast path) returns the same numbers
        plain = Sinkhorn(eps=0.05, tol=1e-11)(LinearProblem(geom_cls(C), a, b, rho_a=rho, rho_b=rho))
        torch.testing.assert_close(plain.value, res.value.detach(), atol=1e-13, rtol=0)
        torch.testing.assert_close(plain.f, res.f.detach(), atol=1e-12, rtol=0)
        assert plain.convergence.status == ("converged",) and float(plain.convergence.error) <= 1e-11
    (fast, *gf), (ref, *gr) = out
    torch.testing.assert_close(fast.f, ref.f, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.g, ref.g, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.value, ref.value, atol=1e-12, rtol=0)
    for u, v in zip(gf, gr):
        torch.testing.assert_close(u, v, atol=1e-9, rtol=0)
    if rho is None:
        torch.testing.assert_close(gf[0], fast.plan.detach(), atol=1e-12, rtol=0)  # d value / dC = plan


def test_small_fast_path_reports_max_iter_truthfully():
    C, a, b = _small(2, 12, 9)
    with pytest.warns(RuntimeWarning, match="reached max_iter=7"):
        res = monge.solve(C, a, b, eps=0.01, tol=1e-12, max_iter=7)
    conv = res.convergence
    assert conv.status == ("max_iter",) and not conv.all_converged and int(conv.n_iters) == 7
    P = res.plan
    err = (P.sum(1) - a).abs().sum() + (P.sum(0) - b).abs().sum()
    torch.testing.assert_close(conv.error, err, atol=1e-15, rtol=1e-9)  # the certificate of the returned plan
    assert conv.converged.shape == () and conv.n_iters.dtype == torch.int64 and conv.errors.dim() == 1


def test_small_fast_path_nan_cost_scale_is_diverged_not_converged():
    """Costs / eps beyond float64's exponent range: no silent 'converged'."""
    C, a, b = _small(3, 8, 8)
    with pytest.warns(RuntimeWarning):
        res = monge.solve(C * 1e300, a, b, eps=1e-300, max_iter=50)
    assert res.convergence.status[0] in ("diverged", "stalled", "max_iter")
    assert not res.convergence.all_converged


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_small_batch_with_b_equal_n_equals_single_solves(dtype):
    n = 6
    Cs, As, Bs = zip(*(_small(s, n, n, dtype) for s in range(n)))
    C, a, b = torch.stack(Cs), torch.stack(As), torch.stack(Bs)  # (B, n, n) with B = n = m
    tol = None if dtype == torch.float32 else 1e-12  # tight: two converged runs stop at different iterates
    batched = monge.solve(C, a, b, eps=0.05, tol=tol)
    single = [monge.solve(C[i], a[i], b[i], eps=0.05, tol=tol) for i in range(n)]
    atol = 1e-5 if dtype == torch.float32 else 1e-11
    torch.testing.assert_close(batched.value, torch.stack([r.value for r in single]), atol=atol, rtol=0)
    torch.testing.assert_close(batched.plan, torch.stack([r.plan for r in single]), atol=atol, rtol=0)
    gauge = lambda f: f - f[..., :1]  # noqa: E731  (balanced potentials are defined up to f + c, g - c)
    torch.testing.assert_close(gauge(batched.f), gauge(torch.stack([r.f for r in single])), atol=10 * atol, rtol=0)
    assert batched.convergence.converged.shape == (n,) and batched.convergence.all_converged
    assert all(r.convergence.all_converged and r.f.dtype == dtype for r in single)


def test_small_distinct_weights_of_equal_mass_are_not_rescaled():
    C, a, b = _small(4, 7, 7)
    prob = LinearProblem(monge.DenseCost(C), a, b.clone())
    torch.testing.assert_close(prob.b, b, atol=1e-16, rtol=0)
    with pytest.raises(ValueError, match="same total mass"):
        LinearProblem(monge.DenseCost(C), a, 2 * b)


@pytest.mark.parametrize("backend", ["lazy", "dense"])
def test_small_point_cloud_loop_on_its_cost_equals_the_cloud_loop(monkeypatch, backend):
    """A small float64 cloud iterates on its materialised cost (DENSE_LOOP_MAX_ENTRIES); values, potentials and
    gradients w.r.t. the points equal those of the loop on the cloud itself; the symmetric (divergence) terms too."""
    from monge.solvers import sinkhorn as sk

    g = torch.Generator().manual_seed(5)
    x0, y0 = torch.rand(20, 3, generator=g, dtype=torch.float64), torch.rand(15, 3, generator=g, dtype=torch.float64)
    out = []
    for limit in (sk.DENSE_LOOP_MAX_ENTRIES, 0):
        monkeypatch.setattr(sk, "DENSE_LOOP_MAX_ENTRIES", limit)
        loop = sk._loop_geometry(monge.PointCloud(x0, y0, backend=backend), False)
        assert isinstance(loop, monge.DenseCost) == (limit > 0)
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        res = monge.solve_points(x, y, eps=0.02, tol=1e-11, backend=backend)
        div = monge.sinkhorn_divergence(x, y, eps=0.02, tol=1e-11, backend=backend)
        (res.value + div).backward()
        out.append((res.f.detach(), res.value.detach(), div.detach(), x.grad, y.grad))
    for u, v in zip(*out):
        torch.testing.assert_close(u, v, atol=1e-9, rtol=0)


@pytest.mark.parametrize("rho", [None, 0.5])
def test_symmetric_compiled_iterations_equal_the_torch_ones(rho):
    """OT(a, a) on one support: the compiled averaged iterations against the torch ones (values, potentials,
    certificate of the returned plan, gradient w.r.t. the weights)."""
    g = torch.Generator().manual_seed(6)
    x = torch.rand(17, 2, generator=g, dtype=torch.float64)
    C = torch.cdist(x, x) ** 2
    C = 0.5 * (C + C.T)
    a = torch.rand(17, generator=g, dtype=torch.float64) + 0.1
    a = a / a.sum()
    out = []
    for geom_cls in (monge.DenseCost, _TorchOnly):
        ag = a.clone().requires_grad_()
        res = Sinkhorn(eps=0.03, tol=1e-12)(LinearProblem(geom_cls(C, symmetric=True), ag, ag, rho_a=rho, rho_b=rho))
        res.value.backward()
        assert res.convergence.status == ("converged",)
        out.append((res.f.detach(), res.g.detach(), res.value.detach(), ag.grad))
    for u, v in zip(*out):
        torch.testing.assert_close(u, v, atol=1e-10, rtol=0)


@pytest.mark.parametrize("rho,symmetric", [(None, False), (0.4, False), (None, True)])
def test_compiled_annealing_stages_equal_the_torch_stages(rho, symmetric):
    """eps-scaling's stages on a Gibbs kernel per stage (compiled) against the torch stages: the same iterates up to
    rounding, hence the same iteration counts and results."""
    C, a, b = _small(7, 14, 14 if symmetric else 11)
    if symmetric:
        C, b = 0.5 * (C + C.T), a
    # (OT(a, a)'s averaged updates converge slowly at small eps: 0.05 there)
    solver = Sinkhorn(eps=0.05 if symmetric else 0.01, tol=1e-11, schedule=EpsScaling(0.5, iters_per_stage=2))
    res = [solver(LinearProblem(cls(C, symmetric=symmetric), a, b, rho_a=rho, rho_b=rho))
           for cls in (monge.DenseCost, _TorchOnly)]
    assert res[0].convergence.status == res[1].convergence.status == ("converged",)
    assert abs(int(res[0].convergence.n_iters) - int(res[1].convergence.n_iters)) <= 10
    torch.testing.assert_close(res[0].value, res[1].value, atol=1e-12, rtol=0)
    torch.testing.assert_close(res[0].plan, res[1].plan, atol=1e-10, rtol=0)


@pytest.mark.parametrize("rho", [None, 0.5])
def test_small_float32_cost_iterates_in_float64_and_returns_float32(rho):
    """A small float32 dense cost runs the float64 compiled loop; the result is float32, its value and certificate
    those of the returned float32 potentials, and equal to the float32 torch path within float32 rounding;
    gradients (float32) too."""
    C, a, b = _small(8, 19, 13, torch.float32)
    res, ref = (Sinkhorn(eps=0.05)(LinearProblem(cls(C), a, b, rho_a=rho, rho_b=rho))
                for cls in (monge.DenseCost, _TorchOnly))
    assert res.f.dtype == res.g.dtype == res.value.dtype == res.convergence.error.dtype == torch.float32
    assert res.convergence.status == ref.convergence.status == ("converged",)
    torch.testing.assert_close(res.value, ref.value, atol=2e-6, rtol=0)
    torch.testing.assert_close(res.plan, ref.plan, atol=2e-6, rtol=0)
    if rho is None:  # the certificate is that of the returned (float32) plan
        P = res.plan.double()
        err = (P.sum(1) - a.double()).abs().sum() + (P.sum(0) - b.double()).abs().sum()
        assert abs(float(err) - float(res.convergence.error)) <= 1e-6
    grads = []
    for cls in (monge.DenseCost, _TorchOnly):
        Cg = C.clone().requires_grad_()
        Sinkhorn(eps=0.05)(LinearProblem(cls(Cg), a, b, rho_a=rho, rho_b=rho)).value.backward()
        grads.append(Cg.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=2e-6, rtol=0)

"""Sinkhorn divergences and MMD: limits, positivity, peers, loss modules."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import monge
from monge.nn import MMDLoss, SinkhornLoss


def _clouds(rng, n=60, m=45, shift=0.3):
    return torch.from_numpy(rng.random((n, 2))), torch.from_numpy(rng.random((m, 2)) + shift)


def test_limit_eps_to_zero_is_wasserstein(rng):
    x, y = _clouds(rng)
    for p in (1, 2):
        exact = ot.emd2(np.full(60, 1 / 60), np.full(45, 1 / 45), torch.cdist(x, y).numpy() ** p)
        s = monge.sinkhorn_divergence(x, y, eps=1e-4, p=p, max_iter=20000)
        np.testing.assert_allclose(float(s), exact, rtol=1e-2)


def test_limit_eps_to_infinity_is_half_energy_distance(rng):
    x, y = _clouds(rng)
    energy = 2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()
    s = monge.sinkhorn_divergence(x, y, eps=1e5, p=1)
    np.testing.assert_allclose(float(s), 0.5 * float(energy), rtol=1e-4)
    np.testing.assert_allclose(float(monge.mmd(x, y)), 0.5 * float(energy), rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), eps=st.sampled_from([0.01, 0.1, 1.0]), rho=st.sampled_from([None, 0.5]))
def test_nonnegative_and_zero_on_equal_inputs(seed, eps, rho):
    g = np.random.default_rng(seed)
    x, y = torch.from_numpy(g.random((20, 2))), torch.from_numpy(g.random((15, 2)))
    b = torch.from_numpy(g.dirichlet(np.ones(15)))
    assert float(monge.sinkhorn_divergence(x, y, None, b, eps=eps, rho=rho)) >= -1e-10
    assert abs(float(monge.sinkhorn_divergence(x, x, eps=eps, rho=rho))) < 1e-10


def test_unbalanced_mass_term(rng):
    """Different masses: the divergence stays >= 0 and grows with the mass difference."""
    x, _ = _clouds(rng)
    a = torch.full((60,), 1 / 60, dtype=torch.float64)
    s = [float(monge.sinkhorn_divergence(x, x, a, k * a, eps=0.05, rho=0.5)) for k in (1.0, 1.5, 2.0)]
    assert abs(s[0]) < 1e-10 and 0 < s[1] < s[2]


@pytest.mark.parametrize("kernel,scale", [("energy", None), ("gaussian", 0.3), ("laplacian", 0.3)])
def test_mmd_against_dense_formula(rng, kernel, scale):
    x, y = _clouds(rng)
    a = torch.from_numpy(rng.dirichlet(np.ones(60)))
    b = torch.from_numpy(rng.dirichlet(np.ones(45)))
    k = monge.divergences.KERNELS[kernel]
    z, w = torch.cat([x, y]), torch.cat([a, -b])
    ref = 0.5 * w @ k(z, z, scale) @ w
    torch.testing.assert_close(monge.mmd(x, y, a, b, kernel=kernel, scale=scale, chunk=7), ref)


def test_mmd_errors():
    with pytest.raises(ValueError, match="kernel"):
        monge.mmd(torch.zeros(2, 2), torch.zeros(2, 2), kernel="rbf")
    with pytest.raises(ValueError, match="scale"):
        monge.mmd(torch.zeros(2, 2), torch.zeros(2, 2), kernel="gaussian")


def test_loss_modules_batched_and_differentiable(rng):
    x = torch.rand(3, 40, 2, dtype=torch.float64, requires_grad=True)
    y = torch.rand(3, 30, 2, dtype=torch.float64)
    for loss in (SinkhornLoss(blur=0.1), SinkhornLoss(blur=0.1, reach=0.5), SinkhornLoss(p=1, blur=0.1),
                 SinkhornLoss(blur=0.1, debias=False), MMDLoss(), MMDLoss("gaussian", 0.5)):
        v = loss(x, y)
        assert v.shape == (3,)
        (g,) = torch.autograd.grad(v.sum(), x)
        assert torch.isfinite(g).all()
        for i in range(3):
            np.testing.assert_allclose(float(loss(x[i], y[i])), float(v[i]), rtol=1e-6, atol=1e-12)


def test_loss_module_blur_convention(rng):
    x, y = _clouds(rng, 30, 30)
    torch.testing.assert_close(SinkhornLoss(p=2, blur=0.2)(x, y), monge.sinkhorn_divergence(x, y, eps=0.04, p=2))
    with pytest.raises(ValueError, match="blur"):
        SinkhornLoss(blur=0.0)
    with pytest.raises(ValueError, match="scaling"):
        SinkhornLoss(scaling=1.5)


def test_gradient_flow_decreases_divergence(rng):
    """A few gradient steps on the points reduce the divergence to a target (the Lagrangian flow)."""
    x = torch.from_numpy(rng.random((50, 2))).requires_grad_()
    y = torch.from_numpy(rng.random((50, 2)) * 0.3 + 0.6)
    loss = SinkhornLoss(blur=0.05)
    start = float(loss(x, y))
    for _ in range(10):
        (g,) = torch.autograd.grad(loss(x, y), x)
        x = (x - 25.0 * g).detach().requires_grad_()  # step ~ 1/(2 a_i) for uniform weights a_i = 1/50
    assert float(loss(x, y)) < 0.1 * start


# ---------------------------------------------------------------- issue 11: clamp, and GeomLoss's 1/2 convention
def test_unconverged_divergence_is_clamped_where_the_math_says_nonnegative():
    """An unconverged cross term can leave S_eps slightly negative; for the squared cost (a positive definite Gibbs
    kernel) S_eps >= 0, so the value is clamped and sqrt of it is never NaN. A generic callable is not clamped."""
    import warnings

    from monge.geometry import SqEuclidean

    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 2, generator=g, dtype=torch.float64)
    y = x + 1e-6
    kw = dict(eps=1e-2, max_iter=2, schedule=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = monge.sinkhorn_divergence(x, y, cost=lambda u, v: SqEuclidean()(u, v), **kw)
        clamped = monge.sinkhorn_divergence(x, y, **kw)
    assert float(raw) < 0  # the unconverged value (the callable cost keeps it raw)
    assert float(clamped) == 0.0 and bool(torch.isfinite(torch.sqrt(clamped)))


def test_geomloss_half_cost_convention():
    """SinkhornLoss(cost="sqeuclidean_half", blur) is GeomLoss's SamplesLoss("sinkhorn", p=2, blur) (the limit of
    GeomLoss's scaling -> 1) and half of monge's default loss at blur * sqrt(2)."""
    from monge.nn import SinkhornLoss

    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(30, 2, generator=g, dtype=torch.float64), torch.rand(25, 2, generator=g, dtype=torch.float64)
    half = SinkhornLoss(blur=0.1, cost="sqeuclidean_half", tol=1e-12)(x, y)
    full = SinkhornLoss(blur=0.1 * 2**0.5, tol=1e-12)(x, y)
    torch.testing.assert_close(half, full / 2, rtol=1e-8, atol=1e-12)
    div = monge.sinkhorn_divergence(x, y, eps=0.01, cost="sqeuclidean_half", tol=1e-12)
    torch.testing.assert_close(div, half, rtol=1e-8, atol=1e-12)
    geomloss = pytest.importorskip("geomloss")
    ref = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.1, scaling=0.999, backend="tensorized")(x, y)
    torch.testing.assert_close(half, ref, rtol=1e-4, atol=1e-8)


def test_divergence_gradcheck_points_and_weights():
    """Envelope gradients of S_eps (float64, converged): w.r.t. both clouds and both weight vectors, against finite
    differences (the small dense compiled path: annealing stages, loop and finish)."""
    g = torch.Generator().manual_seed(11)
    x, y = torch.rand(6, 2, generator=g, dtype=torch.float64), torch.rand(5, 2, generator=g, dtype=torch.float64)
    a, b = torch.rand(6, generator=g, dtype=torch.float64) + 0.5, torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    x, y = x.requires_grad_(), y.requires_grad_()
    div = lambda x, y: monge.sinkhorn_divergence(x, y, eps=0.1, tol=1e-13)  # noqa: E731
    assert torch.autograd.gradcheck(div, (x, y), eps=1e-6, atol=1e-7, rtol=1e-5)
    # weights: the unbalanced divergence (masses may move freely)
    a, b = (a / a.sum()).requires_grad_(), (b / b.sum() * 1.2).requires_grad_()
    xd, yd = x.detach(), y.detach()
    divw = lambda a, b: monge.sinkhorn_divergence(xd, yd, a, b, eps=0.1, rho=1.0, tol=1e-13)  # noqa: E731
    assert torch.autograd.gradcheck(divw, (a, b), eps=1e-6, atol=1e-7, rtol=1e-5)

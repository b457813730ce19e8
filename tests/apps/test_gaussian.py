"""Gaussian closed forms: 1-D and commuting cases, the map against the exact solver, barycenter, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import monge
from monge.apps.gaussian import (
    bures_wasserstein,
    bures_wasserstein_samples,
    gaussian_barycenter,
    gaussian_fit,
    gaussian_geodesic,
    gaussian_map,
    sqrtm_psd,
)
from monge.testing.closed_forms import gaussian_w2


def _spd(rng, d, batch=()):
    A = torch.tensor(rng.normal(size=(*batch, d, d)), dtype=torch.float64)
    return A @ A.transpose(-1, -2) + 0.5 * torch.eye(d, dtype=torch.float64)


def test_one_dimensional_closed_form():
    # W_2^2(N(m0, s0^2), N(m1, s1^2)) = (m0 - m1)^2 + (s0 - s1)^2
    m0, s0, m1, s1 = 0.3, 1.5, -1.2, 0.4
    w2 = bures_wasserstein(torch.tensor([m0]), torch.tensor([[s0**2]]), torch.tensor([m1]), torch.tensor([[s1**2]]),
                           squared=True)
    assert float(w2) == pytest.approx((m0 - m1) ** 2 + (s0 - s1) ** 2, rel=1e-6)


def test_commuting_covariances(rng):
    # common eigenbasis Q: W_2^2 = |dm|^2 + sum (sqrt(l0) - sqrt(l1))^2
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    l0, l1 = rng.uniform(0.1, 3, 4), rng.uniform(0.1, 3, 4)
    S0, S1 = torch.tensor(Q @ np.diag(l0) @ Q.T), torch.tensor(Q @ np.diag(l1) @ Q.T)
    m0, m1 = torch.tensor(rng.normal(size=4)), torch.tensor(rng.normal(size=4))
    ref = float(((m0 - m1) ** 2).sum()) + float(np.sum((np.sqrt(l0) - np.sqrt(l1)) ** 2))
    assert float(bures_wasserstein(m0, S0, m1, S1, squared=True)) == pytest.approx(ref, rel=1e-10)
    T = gaussian_map(m0, S0, m1, S1)
    torch.testing.assert_close(T.A, torch.tensor(Q @ np.diag(np.sqrt(l1 / l0)) @ Q.T))


def test_general_against_numpy_reference_and_batch(rng):
    S0, S1 = _spd(rng, 3, (5,)), _spd(rng, 3, (5,))
    m0, m1 = torch.tensor(rng.normal(size=(5, 3))), torch.tensor(rng.normal(size=(5, 3)))
    out = bures_wasserstein(m0, S0, m1, S1)
    assert out.shape == (5,)
    ref = [gaussian_w2(m0[i].numpy(), S0[i].numpy(), m1[i].numpy(), S1[i].numpy()) for i in range(5)]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)
    # symmetric, zero on equal inputs, triangle inequality
    torch.testing.assert_close(out, bures_wasserstein(m1, S1, m0, S0))
    assert float(bures_wasserstein(m0, S0, m0, S0).max()) < 1e-6
    S2, m2 = _spd(rng, 3, (5,)), torch.tensor(rng.normal(size=(5, 3)))
    assert bool((out <= bures_wasserstein(m0, S0, m2, S2) + bures_wasserstein(m2, S2, m1, S1) + 1e-10).all())


def test_map_pushes_forward_and_is_optimal_for_the_exact_solver(rng):
    S0, S1 = _spd(rng, 2), _spd(rng, 2)
    m0, m1 = torch.tensor([1.0, -1.0], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    T = gaussian_map(m0, S0, m1, S1)
    torch.testing.assert_close(T.A @ S0 @ T.A, S1)  # A S0 A = S1: the push-forward is N(m1, S1)
    x = m0 + torch.tensor(rng.normal(size=(300, 2))) @ torch.linalg.cholesky(S0).T
    y = T(x)
    # T is the gradient of a convex function: matching x_i to T(x_i) is optimal (cyclical monotonicity)
    res = monge.solve_points(x, y)
    assert float(res.plan.diagonal().sum()) == pytest.approx(1.0, abs=1e-9)
    torch.testing.assert_close(T.inverse(y), x)
    # and its cost tends to the closed form (sampling error only)
    w2 = float(bures_wasserstein(m0, S0, m1, S1, squared=True))
    assert float(res.value) == pytest.approx(w2, rel=0.15)


def test_samples_against_exact_solver_large_n():
    g = torch.Generator().manual_seed(0)
    S0 = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    S1 = torch.tensor([[0.5, -0.2], [-0.2, 1.5]], dtype=torch.float64)
    m1 = torch.tensor([2.0, 1.0], dtype=torch.float64)
    n = 2000
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(S0).T
    y = m1 + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(S1).T
    exact = float(monge.solve_points(x, y).value)
    closed = float(bures_wasserstein(torch.zeros(2, dtype=torch.float64), S0, m1, S1, squared=True))
    plug = float(bures_wasserstein_samples(x, y, squared=True))
    # the empirical W_2^2 differs by the sampling error of the means and covariances (O(n^{-1/2})) plus an upward
    # bias O(n^{-1/2} log n) in d = 2: ~0.1 at n = 2000 for a value of 5.5; the plug-in estimate: O(n^{-1/2})
    assert exact == pytest.approx(closed, abs=0.15)
    assert plug == pytest.approx(closed, abs=0.1)


def test_barycenter_closed_forms(rng):
    # commuting: sqrt(S) = sum w_k sqrt(S_k)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    lams = rng.uniform(0.2, 4, size=(4, 3))
    covs = torch.tensor(np.stack([Q @ np.diag(l) @ Q.T for l in lams]))
    w = torch.tensor(rng.dirichlet(np.ones(4)))
    means = torch.tensor(rng.normal(size=(4, 3)))
    bar = gaussian_barycenter(means, covs, w)
    ref = Q @ np.diag((w.numpy()[:, None] * np.sqrt(lams)).sum(0) ** 2) @ Q.T
    np.testing.assert_allclose(bar.cov.numpy(), ref, atol=1e-8)
    torch.testing.assert_close(bar.mean, (w[:, None] * means).sum(0))
    assert bar.convergence.all_converged and bar.convergence.criterion == "stationarity_fro"


def test_barycenter_general_is_stationary_and_minimises(rng):
    covs, means = _spd(rng, 2, (3,)), torch.tensor(rng.normal(size=(3, 2)))
    w = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    bar = gaussian_barycenter(means, covs, w)
    assert bar.convergence.all_converged
    obj = lambda m, S: float((w * bures_wasserstein(m, S, means, covs, squared=True)).sum())  # noqa: E731
    best = obj(bar.mean, bar.cov)
    for _ in range(20):  # random perturbations of the covariance never do better
        E = 0.05 * _spd(rng, 2)
        assert obj(bar.mean, bar.cov + E) >= best - 1e-12
    # two Gaussians: the barycenter with weights (1 - t, t) is the geodesic at t
    m_t, S_t = gaussian_geodesic(means[0], covs[0], means[1], covs[1], 0.3)
    bar2 = gaussian_barycenter(means[:2], covs[:2], torch.tensor([0.7, 0.3], dtype=torch.float64))
    torch.testing.assert_close(bar2.cov, S_t, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(bar2.mean, m_t)


def test_barycenter_batched_equals_looped(rng):
    covs, means = _spd(rng, 2, (4, 3)), torch.tensor(rng.normal(size=(4, 3, 2)))
    bar = gaussian_barycenter(means, covs)
    assert bar.cov.shape == (4, 2, 2) and bar.convergence.converged.shape == (4,)
    for i in range(4):
        torch.testing.assert_close(bar.cov[i], gaussian_barycenter(means[i], covs[i]).cov, atol=1e-9, rtol=1e-9)


def test_gradients_gradcheck_and_repeated_eigenvalues(rng):
    S0, S1 = _spd(rng, 2), _spd(rng, 2)
    m0 = torch.tensor(rng.normal(size=2), requires_grad=True)
    A = S0.clone().requires_grad_(True)
    f = lambda m, S: bures_wasserstein(m, 0.5 * (S + S.T), torch.zeros(2, dtype=torch.float64), S1,  # noqa: E731
                                       squared=True)
    assert torch.autograd.gradcheck(f, (m0, A))
    # identity covariances have repeated eigenvalues: the generic eigh backward would give NaN
    I = torch.eye(3, dtype=torch.float64).requires_grad_(True)
    v = bures_wasserstein(torch.zeros(3, dtype=torch.float64), I, torch.ones(3, dtype=torch.float64),
                          4 * torch.eye(3, dtype=torch.float64), squared=True)
    v.backward()
    assert bool(torch.isfinite(I.grad).all())
    # the gradient of W_2^2 w.r.t. S0 is I - A (A the Monge map's matrix): A = 2 I here, so -I
    torch.testing.assert_close(I.grad, -torch.eye(3, dtype=torch.float64))
    X = torch.diag(torch.tensor([1.0, 1.0, 4.0], dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda S: sqrtm_psd(0.5 * (S + S.T)), (X,))


def test_fit_weighted_and_float32(rng):
    x = torch.tensor(rng.normal(size=(500, 3)), dtype=torch.float32)
    a = torch.rand(500)
    m, S = gaussian_fit(x, a)
    an = (a / a.sum()).double()
    xd = x.double()
    mr = (an[:, None] * xd).sum(0)
    torch.testing.assert_close(m, mr.float())
    torch.testing.assert_close(S, ((an[:, None] * (xd - mr)).T @ (xd - mr)).float(), atol=1e-5, rtol=1e-5)
    assert bures_wasserstein_samples(x, x + 1).dtype == torch.float32


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="S1: expected a covariance of shape"):
        bures_wasserstein(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="S0: the Monge map needs a positive definite"):
        gaussian_map(torch.zeros(2), torch.zeros(2, 2), torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="means: expected"):
        gaussian_barycenter(torch.zeros(2), torch.eye(2))

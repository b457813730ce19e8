"""Free-support barycenters: POT, translations, 1-D quantile averaging, Gaussians, monotonicity, errors."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

from monge.solvers.free_support import FreeSupportBarycenter, free_support_barycenter

D64 = torch.float64


def _random_inputs(rng, sizes=(20, 30, 25), d=2):
    xs = [rng.normal(size=(n, d)) + i for i, n in enumerate(sizes)]
    as_ = [rng.dirichlet(np.ones(n)) for n in sizes]
    return xs, as_, rng.dirichlet(np.ones(len(sizes)))


def test_matches_pot(rng):
    xs, as_, lam = _random_inputs(rng)
    X0, b = rng.normal(size=(15, 2)), rng.dirichlet(np.ones(15))
    ref = ot.lp.free_support_barycenter(xs, as_, X0, b=b, weights=lam, numItermax=40, stopThr=0.0)
    t = lambda v: torch.tensor(v)  # noqa: E731
    res = free_support_barycenter([t(x) for x in xs], [t(a) for a in as_], t(lam), init=t(X0), b=t(b), max_iter=40,
                                  tol=1e-14)
    assert res.convergence.all_converged
    np.testing.assert_allclose(res.support.numpy(), ref, atol=1e-5)
    # value: the lambda-weighted sum of exact W_2^2 at the returned support
    ws = [ot.emd2(b, a, ot.dist(ref, x)) for x, a in zip(xs, as_)]
    assert float(res.value) == pytest.approx(float(np.dot(lam, ws)), rel=1e-9)


def test_objective_decreases_exact(rng):
    xs, as_, lam = _random_inputs(rng, sizes=(40, 35, 50))
    res = free_support_barycenter([torch.tensor(x) for x in xs], [torch.tensor(a) for a in as_], torch.tensor(lam),
                                  k=30, seed=3)
    obj = res.objective
    assert len(obj) >= 2 and bool((obj[1:] <= obj[:-1] + 1e-12).all())
    assert float(res.value) <= float(obj[-1]) + 1e-12


def test_translations(rng):
    x = torch.tensor(rng.normal(size=(25, 2)))
    shifts = torch.tensor([[0.0, 0.0], [3.0, -1.0], [-2.0, 5.0]], dtype=D64)
    lam = torch.tensor([0.2, 0.5, 0.3], dtype=D64)
    init = x + 0.01 * torch.tensor(rng.normal(size=(25, 2)))
    res = free_support_barycenter([x + s for s in shifts], weights=lam, init=init)
    mean_shift = lam @ shifts
    torch.testing.assert_close(res.support, x + mean_shift, rtol=0, atol=1e-12)
    expected = float((lam * ((shifts - mean_shift) ** 2).sum(-1)).sum())
    assert float(res.value) == pytest.approx(expected, rel=1e-10)


def test_1d_quantile_averaging(rng):
    sizes = (3, 5, 4)
    xs = [torch.tensor(np.sort(rng.normal(size=n) * (i + 1)))[:, None] for i, n in enumerate(sizes)]
    as_ = [torch.tensor(rng.dirichlet(np.ones(n))) for n in sizes]
    lam = torch.tensor([0.5, 0.2, 0.3], dtype=D64)
    # the barycenter's quantile function is sum_k lam_k Q_k: atoms on the merged cumulative levels
    levels = torch.unique(torch.cat([torch.zeros(1, dtype=D64)] + [a.cumsum(0) for a in as_]).clamp(0, 1))
    levels = levels[torch.cat([torch.ones(1, dtype=torch.bool), levels.diff() > 1e-12])]
    levels[-1] = 1.0
    b = levels.diff()
    mids = (levels[1:] + levels[:-1]) / 2
    Q = lambda x, a, u: x[torch.searchsorted(a.cumsum(0), u).clamp_max(len(a) - 1), 0]  # noqa: E731
    expected = sum(lam[k] * Q(xs[k], as_[k], mids) for k in range(3))
    init = torch.linspace(-1, 1, len(b), dtype=D64)[:, None]
    res = free_support_barycenter(xs, as_, lam, init=init, b=b)
    torch.testing.assert_close(res.support[:, 0], expected, rtol=0, atol=1e-12)


def _gaussian_barycenter_cov(covs, lam, iters=200):
    S = np.eye(covs[0].shape[0])
    for _ in range(iters):
        w, V = np.linalg.eigh(S)
        r = (V * np.sqrt(w)) @ V.T
        ri = (V / np.sqrt(w)) @ V.T
        M = sum(lk * _sqrtm(r @ C @ r) for lk, C in zip(lam, covs))
        S = ri @ M @ M @ ri
    return S


def _sqrtm(S):
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0, None))) @ V.T


def test_gaussians_sample_based(rng):
    means = [np.array([0.0, 0.0]), np.array([4.0, 1.0]), np.array([-1.0, 3.0])]
    covs = [np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[0.4, -0.1], [-0.1, 1.2]]), np.diag([2.0, 0.3])]
    lam = np.array([0.3, 0.3, 0.4])
    xs = [torch.tensor(rng.multivariate_normal(m, C, size=400)) for m, C in zip(means, covs)]
    res = free_support_barycenter(xs, weights=torch.tensor(lam), k=200, seed=0)
    X = res.support.numpy()
    np.testing.assert_allclose(X.mean(0), lam @ np.array(means), atol=0.15)
    np.testing.assert_allclose(np.cov(X.T, bias=True), _gaussian_barycenter_cov(covs, lam), atol=0.15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_list_or_tensor(rng, dtype):
    xs = torch.tensor(rng.normal(size=(3, 20, 2)), dtype=dtype)
    res = free_support_barycenter(xs, k=10, seed=1)
    assert res.support.dtype == dtype and res.weights.dtype == dtype and res.value.dtype == dtype
    ref = free_support_barycenter(list(xs.double()), k=10, seed=1)
    torch.testing.assert_close(res.support.double(), ref.support, rtol=0, atol=1e-4 if dtype == torch.float32 else 0)


def test_sinkhorn_method_close_to_exact(rng):
    xs, as_, lam = _random_inputs(rng, sizes=(15, 20, 18))
    xs = [torch.tensor(x) / 4 for x in xs]
    as_, lam = [torch.tensor(a) for a in as_], torch.tensor(lam)
    init = xs[0][:12].clone()
    exact = free_support_barycenter(xs, as_, lam, init=init)
    ent = free_support_barycenter(xs, as_, lam, init=init, method="sinkhorn", eps=1e-3, tol=1e-6)
    assert ent.convergence.all_converged
    assert float(ent.value) == pytest.approx(float(exact.value), rel=0.05)


def test_update_weights_helps(rng):
    x = torch.tensor(rng.normal(size=(20, 2)))
    a = torch.tensor(rng.dirichlet(np.ones(20) * 0.5))
    fixed = free_support_barycenter([x], [a], init=x.clone())
    with pytest.warns(RuntimeWarning, match="max_iter"):
        free = free_support_barycenter([x], [a], init=x.clone(), update_weights=True, max_iter=100)
    assert abs(float(free.weights.sum()) - 1) < 1e-12 and bool((free.weights >= 0).all())
    assert float(free.value) < 0.9 * float(fixed.value)  # a subgradient method: slow, but it improves


def test_not_converged_is_reported(rng):
    xs = _random_inputs(rng)[0]
    with pytest.warns(RuntimeWarning, match="max_iter=1"):
        res = free_support_barycenter([torch.tensor(x) for x in xs], k=10, max_iter=1)
    assert not res.convergence.all_converged and res.convergence.status == ("max_iter",)
    assert torch.isfinite(res.support).all()


def test_seeded_init_is_deterministic(rng):
    xs = [torch.tensor(rng.normal(size=(30, 2))) for _ in range(2)]
    r1 = free_support_barycenter(xs, k=8, seed=5)
    r2 = free_support_barycenter(xs, k=8, seed=torch.Generator().manual_seed(5))
    torch.testing.assert_close(r1.support, r2.support)


def test_bad_inputs():
    x = torch.rand(5, 2)
    with pytest.raises(TypeError, match="xs"):
        free_support_barycenter([])
    with pytest.raises(ValueError, match=r"xs\[1\]"):
        free_support_barycenter([x, torch.rand(4, 3)])
    with pytest.raises(ValueError, match="weights"):
        free_support_barycenter([x, x], weights=torch.ones(3))
    with pytest.raises(ValueError, match=r"as_\[0\]"):
        free_support_barycenter([x], [torch.ones(4)])
    with pytest.raises(ValueError, match=r"as_\[0\]"):
        free_support_barycenter([x], [-torch.ones(5)])
    with pytest.raises(ValueError, match="init"):
        free_support_barycenter([x], init=torch.rand(3, 3))
    with pytest.raises(ValueError, match="k"):
        free_support_barycenter([x], k=0)
    with pytest.raises(ValueError, match="method"):
        FreeSupportBarycenter(method="lp")
    with pytest.raises(ValueError, match="eps"):
        FreeSupportBarycenter(method="sinkhorn")
    with pytest.raises(ValueError, match="max_iter"):
        FreeSupportBarycenter(max_iter=0)
    with pytest.raises(TypeError, match=r"xs\[1\]"):
        free_support_barycenter([x, x.double()])
    with pytest.raises(ValueError, match=r"xs\[0\]"):
        free_support_barycenter([torch.full((3, 2), float("nan"))])


def test_failed_inner_solves_fail_the_outer_loop():
    """Issue 11, item 4: with every inner Sinkhorn solve stopped by its max_iter the barycenter reported converged
    (and a value below the exact optimum). The level "ot" records the inner solves at the returned support; the
    outer loop converges only if they did, and one warning (not one per solve) names the failed level."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(10, 2, dtype=torch.float64, generator=g) for _ in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = free_support_barycenter(xs, k=5, method="sinkhorn", eps=1e-4, seed=0)
    assert len(caught) == 1 and caught[0].filename == __file__
    assert "inner 'ot' solves" in str(caught[0].message)
    ot = res.convergence.level("ot")
    assert not ot.all_converged and ot.converged.shape == (3,) and ot.criterion == "marginal_l1"
    assert not res.convergence.all_converged and res.convergence.status != ("converged",)
    assert float(res.convergence.error) <= 1e-7  # the outer move met tol: the inner level is what failed


def test_levels_of_a_converged_run(rng):
    xs = [torch.tensor(x) for x in _random_inputs(rng)[0]]
    res = free_support_barycenter(xs, k=8, seed=0)
    assert res.convergence.all_converged and res.convergence.criterion == "relative_move"
    assert res.convergence.level("ot").all_converged and res.convergence.level("ot").status[0] == "converged"


@pytest.mark.parametrize("scale", [1e-200, 2.0**-600, 1e100])
def test_extreme_scales_give_the_scaled_barycenter(rng, scale):
    """Issue 11, item 7 (class): at 1e-200 the squared distances underflowed to 0, the plans were arbitrary and the
    support wrong with converged=True. The loop runs in units of a power of two: the support scales exactly."""
    xs = [torch.tensor(x) for x in _random_inputs(rng)[0]]
    ref = free_support_barycenter(xs, k=6, seed=0)
    res = free_support_barycenter([x * scale for x in xs], k=6, seed=0)
    assert res.convergence.all_converged
    torch.testing.assert_close(res.support / scale, ref.support, rtol=1e-12, atol=0)
    if float(ref.value) * scale**2 > 1e-300:
        assert float(res.value) == pytest.approx(float(ref.value) * scale**2, rel=1e-12)

"""k-means as quantisation: scikit-learn, monotone inertia, equal masses, chunks, dtypes, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs

import monge
from monge.apps.kmeans import KMeans, assign, kmeans, kmeans_plusplus


@pytest.fixture
def blobs():
    X, _ = make_blobs(1500, centers=5, cluster_std=0.6, random_state=0)
    return torch.tensor(X)


def test_matches_sklearn_same_init(blobs):
    c0 = kmeans_plusplus(blobs, 5, seed=2)
    ref = SKKMeans(5, init=c0.numpy(), n_init=1, tol=0.0, algorithm="lloyd").fit(blobs.numpy())
    res = kmeans(blobs, 5, init=c0)
    assert res.converged
    np.testing.assert_allclose(res.centers.numpy(), ref.cluster_centers_, atol=1e-10)
    assert float(res.inertia) == pytest.approx(ref.inertia_ / len(blobs), rel=1e-10)
    assert (res.labels.numpy() == ref.labels_).all()


def test_weighted_matches_sklearn_sample_weight(blobs, rng):
    w = rng.random(len(blobs))
    c0 = blobs[:4].clone()
    ref = SKKMeans(4, init=c0.numpy(), n_init=1, tol=0.0, algorithm="lloyd").fit(blobs.numpy(), sample_weight=w)
    res = kmeans(blobs, 4, torch.tensor(w), init=c0)
    np.testing.assert_allclose(res.centers.numpy(), ref.cluster_centers_, atol=1e-9)
    assert float(res.inertia) == pytest.approx(ref.inertia_ / w.sum(), rel=1e-9)


def test_inertia_is_w2_of_quantisation(blobs):
    x = blobs[:200]
    res = kmeans(x, 6, seed=0)
    w2 = monge.solve(monge.PointCloud(x, res.centers), None, res.weights).value
    assert float(res.inertia) == pytest.approx(float(w2), rel=1e-9)
    torch.testing.assert_close(res.plan.to_dense().sum(1), res.weights)


def test_lloyd_never_increases_inertia(rng):
    x = torch.tensor(rng.normal(size=(800, 3)))
    res = kmeans(x, 12, seed=1, n_init=2)
    tr = res.inertia_trace
    assert len(tr) >= 3 and bool((tr[1:] <= tr[:-1] + 1e-14).all())
    assert float(res.inertia) == pytest.approx(float(tr[-1]))


def test_restarts_pick_the_best(rng):
    x = torch.tensor(rng.normal(size=(300, 2)))
    gen = torch.Generator().manual_seed(0)  # the restarts draw their seeds in turn from one generator
    single = [float(kmeans(x, 8, init=kmeans_plusplus(x, 8, seed=gen)).inertia) for _ in range(5)]
    best = kmeans(x, 8, n_init=5, seed=0)
    assert float(best.inertia) == pytest.approx(min(single), rel=1e-12)
    assert max(single) > min(single)  # the restarts did differ


def test_equal_mass_quantisation(rng):
    x = torch.tensor(rng.normal(size=(120, 2)))
    res = kmeans(x, 6, mass="equal", seed=0)
    assert res.converged
    torch.testing.assert_close(res.weights, torch.full((6,), 1 / 6, dtype=torch.float64))
    P = res.plan.to_dense()
    torch.testing.assert_close(P.sum(1), res.weights, rtol=0, atol=1e-12)  # equal masses, really transported
    torch.testing.assert_close(P.sum(0), torch.full((120,), 1 / 120, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.bincount(res.labels, minlength=6).tolist() == [20] * 6  # 120 / 6 points, no split needed
    # each centre is the mean of the mass it receives; inertia is the exact W_2^2
    torch.testing.assert_close(res.centers, (P @ x) / P.sum(1, keepdim=True))
    w2 = monge.solve(monge.PointCloud(res.centers, x)).value
    assert float(res.inertia) == pytest.approx(float(w2), rel=1e-10)
    assert bool((res.inertia_trace[1:] <= res.inertia_trace[:-1] + 1e-12).all())
    lloyd = kmeans(x, 6, init=res.centers)
    assert float(lloyd.inertia) <= float(res.inertia) + 1e-12  # free masses can only do better


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_chunks(blobs, dtype):
    x = blobs.to(dtype)
    res = kmeans(x, 5, seed=3, chunk=97)
    ref = kmeans(x, 5, seed=3)
    assert res.centers.dtype == dtype and res.inertia.dtype == dtype
    torch.testing.assert_close(res.centers, ref.centers)
    eq = kmeans(x[:100], 4, mass="equal", seed=0)
    assert eq.centers.dtype == dtype and eq.weights.dtype == dtype


def test_assign_chunks_match_dense(rng):
    x, c = torch.tensor(rng.normal(size=(257, 3))), torch.tensor(rng.normal(size=(7, 3)))
    labels, d2 = assign(x, c, chunk=10)
    full = ((x[:, None] - c[None]) ** 2).sum(-1)
    torch.testing.assert_close(d2, full.min(1).values)
    assert (labels == full.argmin(1)).all()


def test_empty_cluster_is_refilled():
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1], [9.0]], dtype=torch.float64)
    res = kmeans(x, 3, init=torch.tensor([[0.0], [100.0], [5.0]], dtype=torch.float64))  # centre 1 starts empty
    assert torch.bincount(res.labels, minlength=3).min() >= 1
    assert float(res.inertia) < 0.01


def test_not_converged_is_reported(rng):
    x = torch.tensor(rng.normal(size=(500, 2)))
    with pytest.warns(RuntimeWarning, match="max_iter=1"):
        res = kmeans(x, 10, max_iter=1, seed=0)
    assert not res.converged and res.convergence.status == ("max_iter",)


def test_bad_inputs():
    x = torch.rand(10, 2)
    with pytest.raises(ValueError, match="k"):
        kmeans(x, 0)
    with pytest.raises(ValueError, match="k"):
        kmeans(x, 11)
    with pytest.raises(ValueError, match="mass"):
        KMeans(3, mass="balanced")
    with pytest.raises(ValueError, match="x"):
        kmeans(torch.rand(10), 2)
    with pytest.raises(ValueError, match="a"):
        kmeans(x, 2, torch.ones(9))
    with pytest.raises(ValueError, match="init"):
        kmeans(x, 2, init=torch.rand(3, 2))
    with pytest.raises(TypeError, match="init"):
        kmeans(x, 2, init=torch.rand(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="chunk"):
        KMeans(2, chunk=0)


def test_relocated_empty_centre_does_not_stop_the_loop():
    """Issue 11, item 11: a centre relocated to an empty cell had zero old mass, its move counted as none and the
    loop stopped at 4x the optimal inertia; scikit-learn and OTT reach 0.0625."""
    x = torch.tensor([[0, 0], [0.5, 0], [0.5, 1], [1, 1]], dtype=torch.float64)
    init = torch.tensor([[0.5, 0.5], [3, 3]], dtype=torch.float64)
    res = kmeans(x, 2, init=init)
    ref = SKKMeans(2, init=init.numpy(), n_init=1, tol=0.0, algorithm="lloyd").fit(x.numpy())
    assert res.converged and float(res.inertia) == pytest.approx(0.0625, rel=1e-12)
    assert float(res.inertia) == pytest.approx(ref.inertia_ / len(x), rel=1e-12)
    cells = torch.stack([x[res.labels == j].mean(0) for j in range(2)])
    torch.testing.assert_close(res.centers, cells)  # the returned centres are the means of their cells
    assert float(res.convergence.error) == 0.0 and res.convergence.criterion == "relative_move"


@pytest.mark.parametrize("scale", [1e-150, 1e150, 1e300])
def test_extreme_scales(blobs, scale):
    """Issue 11, item 7: points near 1e300 gave a NaN inertia with converged=True. The loop runs in units of a power
    of two, so centres and labels are the same as at scale 1; an inertia that overflows is inf, with a warning."""
    x = blobs[:300]
    ref = kmeans(x, 4, seed=0)
    if scale == 1e300:
        with pytest.warns(RuntimeWarning, match="overflows"):
            res = kmeans(x * scale, 4, seed=0)
        assert float(res.inertia) == float("inf")
    else:
        res = kmeans(x * scale, 4, seed=0)
        assert float(res.inertia) == pytest.approx(float(ref.inertia) * scale**2, rel=1e-12)
    assert res.converged and res.convergence.status == ("converged",)
    assert (res.labels == ref.labels).all()
    torch.testing.assert_close(res.centers / scale, ref.centers, rtol=1e-12, atol=0)
    assert bool(torch.isfinite(res.centers).all())


def test_batched_weights_are_a_clear_error():
    x = torch.rand(10, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"a: expected weights of shape \(n,\) = \(10,\), got shape \(3, 10\)"):
        kmeans(x, 2, torch.rand(3, 10, dtype=torch.float64))


def test_one_warning_per_call_pointing_at_the_caller(rng):
    x = torch.tensor(rng.normal(size=(500, 2)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kmeans(x, 10, max_iter=1, n_init=3, seed=0)
    assert len(caught) == 1 and caught[0].filename == __file__


# --- the differentiable inertia ---------------------------------------------------------------------------------

from monge.apps.kmeans import kmeans_inertia  # noqa: E402


def test_inertia_matches_sklearn_and_the_fitted_result(blobs):
    c0 = kmeans_plusplus(blobs, 5, seed=2)
    ref = SKKMeans(5, init=c0.numpy(), n_init=1, tol=0.0, algorithm="lloyd").fit(blobs.numpy())
    c = torch.tensor(ref.cluster_centers_)
    ones = torch.ones(len(blobs), dtype=torch.float64)
    assert float(kmeans_inertia(blobs, c, ones)) == pytest.approx(ref.inertia_, rel=1e-10)
    res = kmeans(blobs, 5, init=c0)
    assert float(kmeans_inertia(blobs, res.centers)) == pytest.approx(float(res.inertia), rel=1e-10)
    assert float(kmeans_inertia(blobs, c, chunk=7)) == pytest.approx(ref.inertia_ / len(blobs), rel=1e-10)


def test_inertia_gradcheck_hard_and_soft():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 2, dtype=torch.float64, generator=g, requires_grad=True)
    c = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    a = torch.rand(9, dtype=torch.float64, generator=g).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda u, v, w: kmeans_inertia(u, v, w), (x, c, a))
    assert torch.autograd.gradcheck(lambda u, v, w: kmeans_inertia(u, v, w, eps=0.3), (x, c, a))
    # the hard gradient is 2 a_i (x_i - c_k(i)); the centres' gradient is the (negated) cell sums
    I = kmeans_inertia(x, c, a)
    gx, gc = torch.autograd.grad(I, (x, c))
    lab = torch.cdist(x, c).argmin(-1)
    torch.testing.assert_close(gx, 2 * a[:, None] * (x - c[lab]))
    torch.testing.assert_close(gc, -2 * torch.zeros_like(c).index_add(0, lab, a[:, None] * (x - c[lab])))


def test_soft_inertia_brackets_the_hard_one_and_converges():
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(50, 3, dtype=torch.float64, generator=g), torch.randn(4, 3, dtype=torch.float64, generator=g)
    hard = float(kmeans_inertia(x, c))
    for eps in (1.0, 0.1, 1e-3):
        soft = float(kmeans_inertia(x, c, eps=eps))
        assert hard - 1e-12 <= soft <= hard + eps * np.log(4) + 1e-12
    assert abs(float(kmeans_inertia(x, c, eps=1e-4)) - hard) < 2e-4


@pytest.mark.parametrize("B", [3, 5])  # B = d, B = k
def test_inertia_batched_equals_looped(B):
    g = torch.Generator().manual_seed(B)
    x, c = torch.randn(B, 6, 3, generator=g), torch.randn(B, 5, 3, generator=g)
    out = kmeans_inertia(x, c, eps=0.5)
    assert out.shape == (B,) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.stack([kmeans_inertia(x[i], c[i], eps=0.5) for i in range(B)]))
    torch.testing.assert_close(kmeans_inertia(x, c[0]), torch.stack([kmeans_inertia(x[i], c[0]) for i in range(B)]))


def test_inertia_bad_inputs():
    x = torch.rand(5, 2)
    with pytest.raises(ValueError, match="centers: expected shape"):
        kmeans_inertia(x, torch.rand(3, 3))
    with pytest.raises(ValueError, match="eps"):
        kmeans_inertia(x, torch.rand(3, 2), eps=-1.0)
    with pytest.raises(ValueError, match="center_weights: only"):
        kmeans_inertia(x, torch.rand(3, 2), center_weights=torch.ones(3))
    with pytest.raises(ValueError, match="a: expected weights"):
        kmeans_inertia(x, torch.rand(3, 2), torch.ones(4))
    assert monge.kmeans_inertia is kmeans_inertia and monge.apps.kmeans_inertia is kmeans_inertia

"""Displacement interpolation: endpoints, geodesic property, mass, maps, Gaussians, batches, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import monge
from monge.apps.interpolation import displacement_interpolation, gaussian_geodesic
from monge.testing.closed_forms import gaussian_w2


def _w2sq(x, a, y, b):
    return float(monge.solve(monge.PointCloud(x.double(), y.double()), a.double(), b.double()).value)


def _clouds(rng, n=12, m=9, dtype=torch.float64):
    x, y = torch.tensor(rng.normal(size=(n, 2)), dtype=dtype), torch.tensor(rng.normal(size=(m, 2)) + 2, dtype=dtype)
    a, b = torch.tensor(rng.dirichlet(np.ones(n)), dtype=dtype), torch.tensor(rng.dirichlet(np.ones(m)), dtype=dtype)
    return x, a, y, b


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_endpoints_and_mass(rng, dtype):
    x, a, y, b = _clouds(rng, dtype=dtype)
    it = displacement_interpolation(x, y, a, b)
    K = it.weights.shape[-1]
    assert K <= len(x) + len(y) - 1 and it.weights.dtype == dtype
    pts = it.at(torch.tensor([0.0, 1.0]))
    # t = 0 gives (x, a), t = 1 gives (y, b): the atoms' masses summed per source / target point
    for P, pts_t, ref, w in ((0, pts[0], x, a), (1, pts[1], y, b)):
        idx = torch.cdist(pts_t.double(), ref.double()).argmin(1)
        torch.testing.assert_close(pts_t, ref[idx], rtol=0, atol=0)
        torch.testing.assert_close(torch.zeros_like(w).index_add_(0, idx, it.weights), w, **_tol(dtype))
    assert float(it.weights.sum()) == pytest.approx(1.0, abs=1e-6)


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}


def test_geodesic_property(rng):
    x, a, y, b = _clouds(rng)
    it = displacement_interpolation(x, y, a, b)
    W = _w2sq(x, a, y, b) ** 0.5
    assert float(it.value) == pytest.approx(W**2, rel=1e-12)
    ts = torch.tensor([0.1, 0.25, 0.5, 0.9], dtype=torch.float64)
    pts = it.at(ts)
    for s, ps in zip(ts.tolist(), pts):
        assert _w2sq(x, a, ps, it.weights) ** 0.5 == pytest.approx(s * W, rel=1e-9)
        assert _w2sq(ps, it.weights, y, b) ** 0.5 == pytest.approx((1 - s) * W, rel=1e-9)
    d = _w2sq(pts[1], it.weights, pts[2], it.weights) ** 0.5
    assert d == pytest.approx(0.25 * W, rel=1e-9)


def test_permutation_is_a_map(rng):
    x, y = torch.tensor(rng.normal(size=(30, 2))), torch.tensor(rng.normal(size=(30, 2)))
    it = displacement_interpolation(x, y)
    assert it.weights.shape == (30,)
    torch.testing.assert_close(it.start, x)  # one atom per source point, in order
    torch.testing.assert_close(it.weights, torch.full((30,), 1 / 30, dtype=torch.float64))
    perm = monge.assignment(torch.cdist(x, y) ** 2).cols
    torch.testing.assert_close(it.end, y[perm])


def test_batched_equals_looped(rng):
    xs = torch.tensor(rng.normal(size=(3, 10, 2)))
    ys = torch.tensor(rng.normal(size=(3, 8, 2)))
    it = displacement_interpolation(xs, ys)
    pts = it.at([0.3, 0.7])
    assert pts.shape[:2] == (2, 3)
    for k in range(3):
        one = displacement_interpolation(xs[k], ys[k])
        K = one.weights.shape[-1]
        torch.testing.assert_close(pts[:, k, :K], one.at([0.3, 0.7]))
        torch.testing.assert_close(it.weights[k, :K], one.weights)
        assert float(it.weights[k, K:].abs().sum()) == 0  # padding atoms carry no mass


def test_gaussian_closed_form(rng):
    m0, m1 = np.array([0.0, 1.0]), np.array([3.0, -1.0])
    S0, S1 = np.array([[1.0, 0.4], [0.4, 0.6]]), np.array([[0.3, -0.1], [-0.1, 1.5]])
    ts = torch.tensor([0.0, 0.3, 0.6, 1.0], dtype=torch.float64)
    mt, St = gaussian_geodesic(torch.tensor(m0), torch.tensor(S0), torch.tensor(m1), torch.tensor(S1), ts)
    torch.testing.assert_close(mt[-1], torch.tensor(m1)) and torch.testing.assert_close(St[-1], torch.tensor(S1))
    W = gaussian_w2(m0, S0, m1, S1)
    for t, m, S in zip(ts.tolist(), mt, St):
        assert gaussian_w2(m0, S0, m.numpy(), S.numpy()) == pytest.approx(t * W, rel=1e-9, abs=1e-12)
    # sample-based: the exact interpolant of samples is close to the geodesic Gaussian (loose)
    n = 600
    x = torch.tensor(rng.multivariate_normal(m0, S0, size=n))
    y = torch.tensor(rng.multivariate_normal(m1, S1, size=n))
    pts = displacement_interpolation(x, y).at(ts)
    for k in range(len(ts)):
        p = pts[k].numpy()
        np.testing.assert_allclose(p.mean(0), mt[k].numpy(), atol=0.15)
        np.testing.assert_allclose(np.cov(p.T), St[k].numpy(), atol=0.2)


def test_sinkhorn_projection_shrinks(rng):
    x, y = torch.tensor(rng.normal(size=(40, 2))), torch.tensor(rng.normal(size=(40, 2)) * 2)
    it = displacement_interpolation(x, y, method="sinkhorn", eps=0.5)
    ex = displacement_interpolation(x, y)
    torch.testing.assert_close(it.start, x)
    spread = lambda p: float(((p - p.mean(0)) ** 2).sum(-1).mean())  # noqa: E731
    assert spread(it.at(1.0)) < spread(ex.at(1.0))
    torch.testing.assert_close(it.at(1.0).mean(0), y.mean(0), rtol=0, atol=1e-6)  # the mean is kept


def test_gradient_of_positions(rng):
    x, a, y, b = _clouds(rng, n=4, m=3)
    it = displacement_interpolation(x, y, a, b)
    rows = torch.cdist(it.start, x).argmin(1)
    cols = torch.cdist(it.end, y).argmin(1)
    f = lambda xx, yy: ((1 - 0.3) * xx[rows] + 0.3 * yy[cols]).pow(2).sum()  # noqa: E731
    assert torch.autograd.gradcheck(f, (x.clone().requires_grad_(), y.clone().requires_grad_()))
    # the value's gradient w.r.t. the points at the fixed plan is the envelope gradient of W_2^2
    xr, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    displacement_interpolation(xr, y, a, b).value.backward()
    monge.solve_points(xs, y, a, b).value.backward()
    torch.testing.assert_close(xr.grad, xs.grad)


def test_bad_inputs():
    x, y = torch.rand(5, 2), torch.rand(4, 2)
    it = displacement_interpolation(x, y)
    with pytest.raises(ValueError, match="t"):
        it.at(1.5)
    with pytest.raises(ValueError, match="t"):
        it.at(torch.rand(2, 2))
    with pytest.raises(ValueError, match="method"):
        displacement_interpolation(x, y, method="map")
    with pytest.raises(ValueError, match="eps"):
        displacement_interpolation(x, y, method="sinkhorn")
    with pytest.raises(ValueError, match="eps"):
        displacement_interpolation(x, y, eps=0.1)
    with pytest.raises(ValueError, match="x"):
        displacement_interpolation(torch.rand(5), y)
    with pytest.raises(TypeError, match="y"):
        displacement_interpolation(x, y.double())
    with pytest.raises(ValueError, match="S1"):
        gaussian_geodesic(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3), 0.5)

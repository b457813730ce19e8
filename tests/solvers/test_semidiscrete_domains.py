"""Semi-discrete OT on convex polygons (closed forms on triangles, rasterisation) and for the cost |x - y|
(stochastic solver against the exact LP on a fine discretisation)."""

import math

import numpy as np
import pytest
import torch

import monge
from monge.solvers.semidiscrete import semidiscrete
from monge.solvers.semidiscrete.polygon import ConvexPolygon, clip_segments_convex

D = torch.float64
RIGHT = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=D)  # area 1/2


def _rel_err(r):
    return float(((r.masses - r.b).abs() / r.b).max())


def _raster(domain, k):
    """Centres of a k x k raster of the domain's bounding box that fall inside the polygon."""
    dom = ConvexPolygon(domain.numpy())
    u = (np.arange(k) + 0.5) / k
    X = dom.lo + (dom.hi - dom.lo) * np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    return torch.tensor(X[dom.contains(X, tol=0.0)])


@pytest.mark.parametrize("orient", [1, -1])
def test_one_dirac_in_a_triangle(orient):
    tri = RIGHT if orient == 1 else RIGHT.flip(0)  # counter-clockwise or clockwise
    y = torch.tensor([[0.6, 0.1]], dtype=D)
    r = semidiscrete(y, domain=tri)
    g = np.array([1 / 3, 1 / 3])
    v = RIGHT.numpy()
    spread = sum(((v[i] - v[j]) ** 2).sum() for i, j in ((0, 1), (1, 2), (0, 2))) / 36  # E|X - g|^2
    assert r.masses.tolist() == pytest.approx([1.0], abs=1e-14)
    assert r.centroids[0].tolist() == pytest.approx(g.tolist(), abs=1e-14)
    assert float(r.value) == pytest.approx(spread + ((y[0].numpy() - g) ** 2).sum(), abs=1e-14)
    P = r.cells[0].numpy()
    assert np.all(P.sum(1) <= 1 + 1e-12) and np.all(P >= -1e-12)


@pytest.mark.parametrize("t", [0.2, 0.5, 0.9])
def test_two_diracs_split_a_right_triangle_on_a_vertical_line(t):
    a, c = 0.1, 0.6
    y = torch.tensor([[a, 0.2], [c, 0.2]], dtype=D)
    r = semidiscrete(y, torch.tensor([t, 1 - t], dtype=D), domain=RIGHT, tol=1e-13)
    s = 1 - math.sqrt(1 - t)  # the triangle's mass left of x1 = s is 2s - s^2
    assert r.masses.tolist() == pytest.approx([t, 1 - t], rel=1e-12)
    assert float(r.psi[0] - r.psi[1]) == pytest.approx((s - a) ** 2 - (s - c) ** 2, abs=1e-12)
    assert r.cells[0].numpy()[:, 0].max() == pytest.approx(s, abs=1e-12)


def test_symmetric_pair_in_an_isosceles_triangle():
    tri = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.9]], dtype=D)
    y = torch.tensor([[0.3, 0.25], [0.7, 0.25]], dtype=D)
    r = semidiscrete(y, domain=tri)
    assert float(r.psi[0] - r.psi[1]) == pytest.approx(0.0, abs=1e-12)
    assert r.masses.tolist() == pytest.approx([0.5, 0.5], rel=1e-12)
    left, right = (P.numpy() for P in r.cells)
    assert left[:, 0].max() == pytest.approx(0.5, abs=1e-12)
    assert sorted(map(tuple, np.round(left * [-1, 1] + [1, 0], 12))) == sorted(map(tuple, np.round(right, 12)))


def test_square_domain_equals_the_box():
    rng = np.random.default_rng(0)
    y = torch.tensor(rng.random((30, 2)))
    sq = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=D)
    r, ref = semidiscrete(y, domain=sq), semidiscrete(y)
    assert torch.allclose(r.psi, ref.psi, atol=1e-10) and torch.allclose(r.masses, ref.masses, atol=1e-12)


@pytest.mark.parametrize("grid", [False, True])
def test_pentagon_against_a_fine_rasterisation(grid):
    ang = 2 * math.pi * torch.arange(5, dtype=D) / 5 + 0.3
    pent = 0.5 + 0.45 * torch.stack([ang.cos(), ang.sin()], 1)
    rng = np.random.default_rng(1)
    y = torch.tensor(0.3 + 0.4 * rng.random((8, 2)))
    b = torch.tensor(rng.random(8) + 0.5)
    b = b / b.sum()
    w = torch.tensor(rng.random((5, 6)) + 0.2) if grid else None
    r = semidiscrete(y, b, w, domain=pent)
    assert r.convergence.all_converged and _rel_err(r) <= 1e-9
    X = _raster(pent, 600)
    dom = ConvexPolygon(pent.numpy())
    rho = torch.ones(len(X), dtype=D)
    if grid:
        cell = ((X.numpy() - dom.lo) / (dom.hi - dom.lo) * np.array(w.shape)).astype(int)
        rho = w[cell[:, 0], cell[:, 1]]
    j = (torch.cdist(X, y).square() - r.psi).argmin(1)
    mass = torch.zeros(8, dtype=D).index_add_(0, j, rho) / rho.sum()
    assert float((mass - r.masses).abs().max()) < 2e-3
    cost = float((rho * ((X - y[j]) ** 2).sum(1)).sum() / rho.sum())
    assert float(r.value) == pytest.approx(cost, abs=1e-3)
    areas = [0.5 * (P[:, 0] * P.roll(-1, 0)[:, 1] - P.roll(-1, 0)[:, 0] * P[:, 1]).sum() for P in r.cells]
    assert float(sum(areas)) == pytest.approx(dom.area, rel=1e-12)  # the cells tile the pentagon
    assert all(bool(dom.contains(P.numpy()).all()) for P in r.cells)


def test_cyrus_beck_clips_segments_to_the_triangle():
    dom = ConvexPolygon(RIGHT.numpy())
    p = np.array([[-0.5, 0.25], [0.2, 0.2], [2.0, 2.0]])
    q = np.array([[1.5, 0.25], [0.3, 0.1], [3.0, 2.0]])
    a, b = clip_segments_convex(p, q, dom.normals, dom.offsets)
    assert np.allclose(a[:2], [[0.0, 0.25], [0.2, 0.2]]) and np.allclose(b[:2], [[0.75, 0.25], [0.3, 0.1]])
    assert np.allclose(a[2], b[2])  # outside: empty


def test_euclidean_cost_sgd_against_the_exact_lp():
    rng = np.random.default_rng(2)
    y = torch.tensor(rng.random((4, 2)))
    b = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=D)
    torch.manual_seed(0)
    r = semidiscrete(y, b, method="sgd", cost="euclidean", max_iter=3000, batch_size=512)
    k = 40
    u = (np.arange(k) + 0.5) / k
    X = torch.tensor(np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2))
    lp = monge.solve_points(X, y, torch.full((k * k,), 1.0 / k ** 2, dtype=D), b, cost="euclidean")
    assert float(r.value) == pytest.approx(float(lp.value), rel=5e-3)  # psi = 0: 23% off
    assert float((r.masses - b).abs().max()) < 0.01
    agree = float(lp.plan[torch.arange(k * k), r.assign(X)].sum())  # LP mass sent where the cells say
    assert agree > 0.98  # psi = 0: 0.60
    j = (torch.cdist(X, y) - r.psi).argmin(1)  # Apollonius cells, not Laguerre
    assert torch.equal(r.assign(X), j) and r.cost == "euclidean" and r.cells is None


def test_euclidean_single_dirac_value_and_gradient():
    y = torch.tensor([[0.3, 0.5]], dtype=D, requires_grad=True)
    r = semidiscrete(y, method="sgd", cost="euclidean", max_iter=10, n_eval=400_000)
    k = 1000
    u = (np.arange(k) + 0.5) / k
    X = torch.tensor(np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2))
    diff = y.detach() - X
    assert float(r.value.detach()) == pytest.approx(float(diff.norm(dim=1).mean()), abs=3e-3)
    (g,) = torch.autograd.grad(r.value, y)
    ref = (diff / diff.norm(dim=1, keepdim=True)).mean(0)  # d/dy E|x - y|
    assert g[0].tolist() == pytest.approx(ref.tolist(), abs=5e-3)


def test_sgd_on_a_polygon_samples_inside_it():
    y = torch.tensor([[0.2, 0.2], [0.5, 0.1]], dtype=D)
    torch.manual_seed(0)
    r = semidiscrete(y, method="sgd", domain=RIGHT, max_iter=3000)
    exact = semidiscrete(y, domain=RIGHT)
    assert float((r.masses - exact.masses).abs().max()) < 0.03  # r.masses are exact on its diagram
    assert float((r.psi - exact.psi).abs().max()) < 0.02

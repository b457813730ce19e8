"""Semi-discrete OT: closed forms, symmetry, the exact LP on fine discretisations, gradients, bad inputs."""

import math

import numpy as np
import pytest
import torch

import monge
from monge.solvers.semidiscrete import laguerre_lloyd, semidiscrete
from monge.solvers.semidiscrete.integrate import GridDensity, polygon_moments

D = torch.float64


def _rel_err(r):
    return float(((r.masses - r.b).abs() / r.b).max())


def test_single_dirac_takes_all_mass():
    y = torch.tensor([[0.3, 0.8]], dtype=D)
    r = semidiscrete(y)
    assert r.masses.tolist() == pytest.approx([1.0], abs=1e-14)
    assert r.centroids[0].tolist() == pytest.approx([0.5, 0.5], abs=1e-14)
    assert float(r.value) == pytest.approx(1 / 6 + 0.2 ** 2 + 0.3 ** 2, abs=1e-14)  # variance + shift
    assert r.convergence.all_converged and r.convergence.criterion == "relative_mass_error"


@pytest.mark.parametrize("t", [0.2, 0.5, 0.83])
def test_two_diracs_split_at_weighted_bisector(t):
    a, c = 0.1, 0.6
    y = torch.tensor([[a, 0.5], [c, 0.5]], dtype=D)
    r = semidiscrete(y, torch.tensor([t, 1 - t], dtype=D))
    assert r.masses.tolist() == pytest.approx([t, 1 - t], rel=1e-12)
    # the boundary x1 = t: (t - a)^2 - psi_1 = (t - c)^2 - psi_2
    assert float(r.psi[0] - r.psi[1]) == pytest.approx((t - a) ** 2 - (t - c) ** 2, abs=1e-12)
    cube = lambda u, v: (v ** 3 - u ** 3) / 3  # noqa: E731
    value = cube(-a, t - a) + cube(t - c, 1 - c) + 1 / 12
    assert float(r.value) == pytest.approx(value, abs=1e-12)
    left = r.cells[0].numpy()
    assert left[:, 0].max() == pytest.approx(t, abs=1e-12) and left[:, 0].min() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("theta", [0.0, 0.3, 1.1])
def test_four_symmetric_diracs_have_equal_weights(theta):
    k = torch.arange(4, dtype=D)
    ang = theta + k * math.pi / 2
    y = 0.5 + 0.3 * torch.stack([ang.cos(), ang.sin()], 1)
    rng = np.random.default_rng(0)
    w = rng.random((8, 8))
    w = w + np.rot90(w) + np.rot90(w, 2) + np.rot90(w, 3)  # invariant under the quarter turn
    for density in (None, torch.tensor(w.copy())):
        r = semidiscrete(y, density=density)
        assert (r.psi - r.psi.mean()).abs().max() < 1e-10
        assert r.masses.tolist() == pytest.approx([0.25] * 4, rel=1e-12)


def _discretised_lp(y, b, w, s):
    """Exact LP from the s x s sub-pixel centres of every grid cell of density w to the Diracs."""
    n1, n2 = w.shape
    u1 = (np.arange(n1 * s) + 0.5) / (n1 * s)
    u2 = (np.arange(n2 * s) + 0.5) / (n2 * s)
    X = np.stack(np.meshgrid(u1, u2, indexing="ij"), -1).reshape(-1, 2)
    a = np.kron(w / w.sum(), np.ones((s, s)) / s ** 2).reshape(-1)
    return float(monge.solve_points(torch.tensor(X), y, torch.tensor(a), b).value)


def test_value_matches_exact_lp_as_the_grid_refines():
    rng = np.random.default_rng(1)
    y = torch.tensor(rng.random((5, 2)))
    b = torch.tensor(rng.random(5) + 0.5)
    b = b / b.sum()
    w = rng.random((3, 3)) + 0.2
    for density in (None, torch.tensor(w)):
        ref = semidiscrete(y, b, density)
        ww = np.ones((1, 1)) if density is None else w
        errs = [abs(_discretised_lp(y, b, ww, s // ww.shape[0]) - float(ref.value)) for s in (6, 12, 24)]
        assert errs[2] < errs[0] / 3 and errs[2] < 2e-3, errs


def test_relative_mass_error_below_tol_at_return():
    rng = np.random.default_rng(2)
    y = torch.tensor(rng.random((300, 2)))
    b = torch.tensor(rng.random(300) + 0.1)
    b = b / b.sum()
    for density in (None, torch.tensor(rng.random((20, 30)) + 0.05)):
        r = semidiscrete(y, b, density)
        assert r.convergence.all_converged and float(r.convergence.error) <= 1e-9
        assert _rel_err(r) <= 1e-9
        assert r.convergence.errors[-1] == r.convergence.error


def test_grid_density_integrals_match_fine_quadrature():
    rng = np.random.default_rng(3)
    w = rng.random((4, 5))
    g = GridDensity(w, (np.zeros(2), np.ones(2)))
    tri = np.array([[0.1, 0.05], [0.93, 0.4], [0.3, 0.88]])
    mass, mom, sec = polygon_moments(g, tri, np.zeros(3, dtype=int), 1)
    k = 2000
    u = (np.arange(k) + 0.5) / k
    X1, X2 = np.meshgrid(u, u, indexing="ij")
    rho = g.rho[(X1 * 4).astype(int), (X2 * 5).astype(int)]
    e1, e2 = tri[1] - tri[0], tri[2] - tri[0]
    det = e1[0] * e2[1] - e1[1] * e2[0]
    p1 = ((X1 - tri[0, 0]) * e2[1] - (X2 - tri[0, 1]) * e2[0]) / det
    p2 = (e1[0] * (X2 - tri[0, 1]) - e1[1] * (X1 - tri[0, 0])) / det
    inside = (p1 >= 0) & (p2 >= 0) & (p1 + p2 <= 1)
    q = rho * inside / k ** 2
    assert mass[0] == pytest.approx(q.sum(), rel=2e-3)
    assert mom[0] == pytest.approx([(q * X1).sum(), (q * X2).sum()], rel=2e-3)
    assert sec[0] == pytest.approx((q * (X1 ** 2 + X2 ** 2)).sum(), rel=2e-3)


def test_cells_polygons_areas_are_masses_and_map_is_the_power_argmin():
    rng = np.random.default_rng(4)
    y = torch.tensor(rng.random((50, 2)))
    r = semidiscrete(y)
    areas = []
    for P in r.cells:
        p = P.numpy()
        q = np.roll(p, -1, 0)
        areas.append(0.5 * (p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]).sum())
    assert np.allclose(areas, r.masses.numpy(), rtol=1e-10)
    x = torch.rand(2000, 2, dtype=D, generator=torch.Generator().manual_seed(0))
    j = (torch.cdist(x, y).square() - r.psi).argmin(1)
    assert torch.equal(r.transport(x), y[j])


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    m = 6
    y = torch.tensor(rng.uniform(0.1, 0.9, (m, 2)), requires_grad=True)
    b = torch.tensor(rng.random(m) + 0.5)
    b = (b / b.sum()).requires_grad_(True)
    w = torch.tensor(rng.random((7, 7)) + 0.3)
    value = semidiscrete(y, b, w).value
    gy, gb = torch.autograd.grad(value, (y, b))
    dy = torch.tensor(rng.normal(size=(m, 2)))
    db = torch.tensor(rng.normal(size=m))
    db = db - db.mean()  # simplex tangent
    h = 1e-5
    f = lambda yy, bb: float(semidiscrete(yy, bb, w).value)  # noqa: E731
    fd_y = (f(y.detach() + h * dy, b.detach()) - f(y.detach() - h * dy, b.detach())) / (2 * h)
    fd_b = (f(y.detach(), b.detach() + h * db) - f(y.detach(), b.detach() - h * db)) / (2 * h)
    assert float((gy * dy).sum()) == pytest.approx(fd_y, rel=1e-6, abs=1e-9)
    assert float((gb * db).sum()) == pytest.approx(fd_b, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(y=torch.tensor([[0.5, 1.2]], dtype=D)), "inside the box"),
    (dict(y=torch.tensor([[0.2, 0.5], [0.8, 0.5]], dtype=D), b=torch.tensor([1.2, -0.2], dtype=D)), "positive"),
    (dict(y=torch.tensor([[0.2, 0.5], [0.8, 0.5]], dtype=D), b=torch.tensor([0.3, 0.3], dtype=D)), "summing to 1"),
    (dict(y=torch.tensor([[0.2, 0.5], [0.2, 0.5]], dtype=D)), "distinct"),
    (dict(y=torch.full((2, 4), 0.5, dtype=D)), "method='sgd'"),
    (dict(y=torch.full((1, 3), 0.5, dtype=D), density=torch.ones(2, 2)), r"\(n_1, ..., n_d\) with d = 3"),
    (dict(y=torch.tensor([[0.2, 0.5]], dtype=D), cost="euclidean"), "method='sgd' with cost='euclidean'"),
    (dict(y=torch.tensor([[0.2, 0.5]], dtype=D), cost="cosine"), "cost"),
    (dict(y=torch.tensor([[0.2, 0.5]], dtype=D), domain=torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0],
                                                                        [0.0, 1.0]])), "convex polygon"),
    (dict(y=torch.tensor([[0.2, 0.5]], dtype=D), domain=torch.tensor([[0.0, 0.0], [1.0, 0.0]])), r"\(k, 2\)"),
    (dict(y=torch.tensor([[0.9, 0.9]], dtype=D), domain=torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]])),
     "bounding box"),
    (dict(y=torch.tensor([0.5, 0.5], dtype=D)), r"\(m, d\)"),
    (dict(y=torch.tensor([[0.2, 0.5]], dtype=D), density=-torch.ones(2, 2)), "nonnegative"),
    (dict(y=torch.tensor([[0.2, 0.5]], dtype=D), method="lbfgs"), "method"),
    (dict(y=torch.tensor([[0.2, 0.5]], dtype=D), box=([0, 0], [1])), "box"),
])
def test_bad_inputs_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        semidiscrete(**kwargs)


def test_box_other_than_unit_square():
    y = torch.tensor([[1.0, 3.0], [2.5, 3.5]], dtype=D)
    r = semidiscrete(y, box=([0.0, 2.0], [4.0, 5.0]))
    assert r.masses.tolist() == pytest.approx([0.5, 0.5], rel=1e-12)
    assert float(sum(P.shape[0] > 0 for P in r.cells)) == 2


def test_sgd_approaches_the_newton_weights_in_2d():
    rng = np.random.default_rng(6)
    y = torch.tensor(rng.random((10, 2)))
    exact = semidiscrete(y)
    torch.manual_seed(0)
    r = semidiscrete(y, method="sgd", max_iter=4000, batch_size=256)
    assert _rel_err(r) < 0.1
    assert float(r.value) == pytest.approx(float(exact.value), rel=2e-2)
    assert float((r.psi - exact.psi).abs().max()) < 0.1 * float(exact.psi.abs().max()) + 1e-3


def test_sgd_any_dimension_with_sampler_and_entropic_option():
    y = torch.tensor([[0.25, 0.5, 0.5], [0.75, 0.5, 0.5]], dtype=D)
    torch.manual_seed(0)
    r = semidiscrete(y, method="sgd", max_iter=2000)
    assert r.masses.tolist() == pytest.approx([0.5, 0.5], abs=0.02)
    assert abs(float(r.psi[0] - r.psi[1])) < 0.02
    assert r.cells is None and r.centroids[0, 0] == pytest.approx(0.25, abs=0.01)
    sampler = lambda k: torch.rand(k, 3, dtype=D)  # noqa: E731
    re = semidiscrete(y, torch.tensor([0.3, 0.7], dtype=D), sampler, method="sgd", eps=0.01, max_iter=2000)
    assert re.masses.tolist() == pytest.approx([0.3, 0.7], abs=0.03)


def test_lloyd_decreases_value_and_centres_the_points():
    torch.manual_seed(0)
    y0 = torch.rand(20, 2, dtype=D) * 0.5 + 0.25
    r = laguerre_lloyd(y0, n_iter=8)
    assert bool((r.trace[1:] <= r.trace[:-1] + 1e-12).all())
    assert float((r.y - r.ot.centroids).norm(dim=1).max()) < 0.05


def test_initial_cell_without_mass_continuation_or_diverged():
    w = torch.ones(4, 4, dtype=D)
    w[:2] = 0.0  # no mass on x1 < 1/2
    y = torch.tensor([[0.1, 0.5], [0.9, 0.5]], dtype=D)  # the first Voronoi cell misses the support
    r = semidiscrete(y, density=w)  # Newton cannot start; the continuation from the uniform density can
    assert r.convergence.all_converged and r.masses.tolist() == pytest.approx([0.5, 0.5], rel=1e-12)
    # the boundary x1 = 3/4: (3/4 - 0.1)^2 - psi_0 = (3/4 - 0.9)^2 - psi_1
    assert float(r.psi[0] - r.psi[1]) == pytest.approx(0.65 ** 2 - 0.15 ** 2, abs=1e-12)
    bad = semidiscrete(y, psi0=torch.tensor([-10.0, 0.0], dtype=D))  # an empty initial cell, uniform density
    assert not bad.convergence.all_converged and bad.convergence.status == ("diverged",)


def test_float32_positions_keep_their_dtype():
    y = torch.tensor([[0.2, 0.3], [0.7, 0.6], [0.4, 0.9]])
    r = semidiscrete(y)
    assert r.value.dtype == torch.float32 and r.psi.dtype == torch.float32
    assert r.convergence.all_converged


def test_cells_agree_with_the_exact_lp_plan():
    rng = np.random.default_rng(7)
    y = torch.tensor(rng.random((5, 2)))
    r = semidiscrete(y)
    k = 30
    u = (np.arange(k) + 0.5) / k
    X = torch.tensor(np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2))
    lp = monge.solve_points(X, y, torch.full((k * k,), 1.0 / k ** 2, dtype=D), r.b)
    P = lp.plan
    agree = float(P[torch.arange(k * k), r.assign(X)].sum())  # LP mass sent where the Laguerre cell says
    assert agree > 0.97


def test_clustered_diracs_on_a_rough_density_converge():
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.rand(150, 2, dtype=D, generator=g) * 0.01 + 0.5, torch.rand(150, 2, dtype=D, generator=g)])
    y[0] = torch.tensor([0.0, 0.0], dtype=D)  # on the box's corner
    w = torch.rand(32, 32, generator=g, dtype=D) ** 4
    r = semidiscrete(y, density=w)
    assert r.convergence.all_converged and _rel_err(r) <= 1e-9

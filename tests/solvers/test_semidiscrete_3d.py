"""Semi-discrete OT in 3-D (exact power diagrams from a lifted 4-D hull), uniform and grid densities: closed
forms, symmetry, voxel estimates, the Hessian and the value's gradients against finite differences."""

import itertools

import numpy as np
import pytest
import torch

from monge.solvers.semidiscrete import semidiscrete
from monge.solvers.semidiscrete.newton import graph_laplacian
from monge.solvers.semidiscrete.power3d import power_cells3d

D = torch.float64
CUBE = (np.zeros(3), np.ones(3))


def _rel_err(r):
    return float(((r.masses - r.b).abs() / r.b).max())


def test_single_dirac_gets_the_whole_cube():
    y = torch.tensor([[0.3, 0.8, 0.1]], dtype=D)
    r = semidiscrete(y)
    assert r.masses.tolist() == pytest.approx([1.0], abs=1e-14)
    assert r.centroids[0].tolist() == pytest.approx([0.5, 0.5, 0.5], abs=1e-14)
    assert float(r.value) == pytest.approx(3 / 12 + 0.2 ** 2 + 0.3 ** 2 + 0.4 ** 2, abs=1e-14)
    assert r.cells is None and r.convergence.all_converged


@pytest.mark.parametrize("t", [0.15, 0.5, 0.8])
def test_two_diracs_split_on_a_plane(t):
    a, c = 0.2, 0.7
    y = torch.tensor([[a, 0.4, 0.6], [c, 0.4, 0.6]], dtype=D)
    r = semidiscrete(y, torch.tensor([t, 1 - t], dtype=D))
    assert r.masses.tolist() == pytest.approx([t, 1 - t], rel=1e-12)
    assert float(r.psi[0] - r.psi[1]) == pytest.approx((t - a) ** 2 - (t - c) ** 2, abs=1e-12)  # plane x1 = t
    cube = lambda u, v: (v ** 3 - u ** 3) / 3  # noqa: E731
    rest = 1 / 12 + 0.1 ** 2 + 1 / 12 + 0.1 ** 2  # the two other coordinates, about 0.4 and 0.6
    assert float(r.value) == pytest.approx(cube(-a, t - a) + cube(t - c, 1 - c) + rest, abs=1e-12)
    assert r.centroids[0].tolist() == pytest.approx([t / 2, 0.5, 0.5], abs=1e-12)


@pytest.mark.parametrize("pts", ["corners", "octahedron"])
def test_symmetric_configurations_have_equal_weights(pts):
    if pts == "corners":
        y = torch.tensor(list(itertools.product([0.3, 0.7], repeat=3)), dtype=D)
    else:
        e = torch.eye(3, dtype=D)
        y = 0.5 + 0.3 * torch.cat([e, -e])
    r = semidiscrete(y)
    m = y.shape[0]
    assert (r.psi - r.psi.mean()).abs().max() < 1e-10
    assert r.masses.tolist() == pytest.approx([1 / m] * m, rel=1e-12)


def test_lattice_of_cospherical_sites_gives_the_cubes():
    """A 3 x 3 x 3 lattice: the Voronoi cells are the 27 small cubes (a degenerate, cospherical input)."""
    u = (np.arange(3) + 0.5) / 3
    y = np.stack(np.meshgrid(u, u, u, indexing="ij"), -1).reshape(-1, 3)
    c = power_cells3d(y, np.zeros(27), CUBE)
    assert c.mass == pytest.approx(np.full(27, 1 / 27), rel=1e-12)
    assert c.moment / c.mass[:, None] == pytest.approx(y, abs=1e-13)
    assert c.cost == pytest.approx(np.full(27, 3 / 12 / 3 ** 2 / 27), rel=1e-10)
    assert np.sort(c.area) == pytest.approx(np.full(54, 1 / 9), rel=1e-10)  # 54 faces between neighbours


def test_mass_error_below_tol_with_random_masses():
    rng = np.random.default_rng(0)
    y = torch.tensor(rng.random((300, 3)))
    b = torch.tensor(rng.random(300) + 0.2)
    b = b / b.sum()
    r = semidiscrete(y, b)
    assert r.convergence.all_converged and float(r.convergence.error) <= 1e-9 and _rel_err(r) <= 1e-9
    assert float(r.masses.sum()) == pytest.approx(1.0, abs=1e-12)


def test_cells_against_a_fine_voxel_estimate():
    rng = np.random.default_rng(1)
    n = 12
    y = rng.random((n, 3))
    psi = 0.02 * rng.standard_normal(n)
    c = power_cells3d(y, psi, CUBE)
    k = 64
    u = (np.arange(k) + 0.5) / k
    X = np.stack(np.meshgrid(u, u, u, indexing="ij"), -1).reshape(-1, 3)
    j = (torch.cdist(torch.tensor(X), torch.tensor(y)).square() - torch.tensor(psi)).argmin(1).numpy()
    mass = np.bincount(j, minlength=n) / len(X)
    mom = np.stack([np.bincount(j, X[:, a], minlength=n) for a in range(3)], 1) / len(X)
    cost = np.bincount(j, ((X - y[j]) ** 2).sum(1), minlength=n) / len(X)
    assert c.mass.sum() == pytest.approx(1.0, abs=1e-13)
    assert c.mass.min() > 0.02  # every cell is seen by thousands of voxels
    assert np.abs(c.mass - mass).max() < 6e-4
    assert np.abs(c.moment - mom).max() < 6e-4
    assert np.abs(c.cost - cost).max() < 6e-5


def test_hessian_is_the_derivative_of_the_masses():
    rng = np.random.default_rng(2)
    n = 20
    y = rng.random((n, 3))
    psi = 0.01 * rng.standard_normal(n)
    box = (np.array([0.0, -0.5, 0.0]), np.array([1.0, 1.5, 2.0]))  # not the unit cube: rho = 1/4
    y = box[0] + (box[1] - box[0]) * y
    c = power_cells3d(y, psi, box)
    i, j = c.pairs.T
    L = graph_laplacian(n, c.pairs, 0.25 * c.area / (2 * np.linalg.norm(y[i] - y[j], axis=1))).toarray()
    h = 1e-6
    for k in (0, 7, 13):
        e = np.zeros(n)
        e[k] = h
        fd = (power_cells3d(y, psi + e, box).mass - power_cells3d(y, psi - e, box).mass) / (2 * h)
        assert fd == pytest.approx(L[:, k], abs=1e-7)


def test_value_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    m = 8
    y = torch.tensor(rng.uniform(0.15, 0.85, (m, 3)), requires_grad=True)
    b = torch.tensor(rng.random(m) + 0.5)
    b = (b / b.sum()).requires_grad_(True)
    gy, gb = torch.autograd.grad(semidiscrete(y, b).value, (y, b))
    dy = torch.tensor(rng.normal(size=(m, 3)))
    db = torch.tensor(rng.normal(size=m))
    db = db - db.mean()  # simplex tangent
    h = 1e-5
    f = lambda yy, bb: float(semidiscrete(yy, bb, tol=1e-12).value)  # noqa: E731
    yd, bd = y.detach(), b.detach()
    fd_y = (f(yd + h * dy, bd) - f(yd - h * dy, bd)) / (2 * h)
    fd_b = (f(yd, bd + h * db) - f(yd, bd - h * db)) / (2 * h)
    assert float((gy * dy).sum()) == pytest.approx(fd_y, rel=1e-6, abs=1e-9)
    assert float((gb * db).sum()) == pytest.approx(fd_b, rel=1e-6, abs=1e-9)


def test_box_other_than_the_unit_cube_and_transport_is_the_power_argmin():
    rng = np.random.default_rng(4)
    lo, hi = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 0.5, 3.0])
    y = torch.tensor(lo + (hi - lo) * rng.random((40, 3)))
    r = semidiscrete(y, box=(lo, hi))
    assert r.convergence.all_converged and _rel_err(r) <= 1e-9
    x = torch.tensor(lo + (hi - lo) * rng.random((500, 3)))
    j = (torch.cdist(x, y).square() - r.psi).argmin(1)
    assert torch.equal(r.transport(x), y[j])


def test_clustered_diracs_with_skewed_masses_converge():
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.rand(80, 3, dtype=D, generator=g) * 0.01 + 0.5, torch.rand(80, 3, dtype=D, generator=g)])
    y[0] = torch.tensor([0.0, 0.0, 0.0], dtype=D)  # on a corner of the cube
    y[1] = torch.tensor([1.0, 0.5, 0.0], dtype=D)  # on an edge
    b = torch.rand(160, dtype=D, generator=g) ** 3 + 1e-3
    r = semidiscrete(y, b / b.sum())
    assert r.convergence.all_converged and _rel_err(r) <= 1e-9


def test_grid_density_equal_to_uniform_gives_the_uniform_solution():
    rng = np.random.default_rng(5)
    y = torch.tensor(rng.random((60, 3)))
    r, ref = semidiscrete(y, density=torch.ones(3, 4, 5, dtype=D)), semidiscrete(y)
    assert torch.allclose(r.psi, ref.psi, atol=1e-10) and float(r.value) == pytest.approx(float(ref.value), abs=1e-12)


def test_grid_density_split_on_a_plane_closed_form():
    w = torch.tensor([0.25, 0.75], dtype=D).reshape(2, 1, 1)  # rho = 1/2 on x1 < 1/2, 3/2 beyond
    a, c = 0.3, 0.8
    y = torch.tensor([[a, 0.5, 0.5], [c, 0.5, 0.5]], dtype=D)
    r = semidiscrete(y, density=w, tol=1e-13)
    s = 0.5 + 0.25 / 1.5  # mass 1/4 left of 1/2, then 3/2 per unit length
    assert r.masses.tolist() == pytest.approx([0.5, 0.5], rel=1e-12)
    assert float(r.psi[0] - r.psi[1]) == pytest.approx((s - a) ** 2 - (s - c) ** 2, abs=1e-12)
    cube = lambda u, v: (v ** 3 - u ** 3) / 3  # noqa: E731
    value = 0.5 * cube(-a, 0.5 - a) + 1.5 * (cube(0.5 - a, s - a) + cube(s - c, 1 - c)) + 2 / 12
    assert float(r.value) == pytest.approx(value, abs=1e-12)


def test_grid_density_cells_against_voxels_and_hessian():
    rng = np.random.default_rng(6)
    n = 12
    y = rng.random((n, 3))
    psi = 0.02 * rng.standard_normal(n)
    w = rng.random((3, 4, 5)) + 0.1
    from monge.solvers.semidiscrete.integrate3d import GridDensity3D
    dens = GridDensity3D(w, CUBE)
    c = power_cells3d(y, psi, CUBE, dens)
    k = 60  # a multiple of every grid size: each voxel sees one density value
    u = (np.arange(k) + 0.5) / k
    X = np.stack(np.meshgrid(u, u, u, indexing="ij"), -1).reshape(-1, 3)
    rho = dens.rho[tuple((X * np.array(w.shape)).astype(int).T)]
    j = (torch.cdist(torch.tensor(X), torch.tensor(y)).square() - torch.tensor(psi)).argmin(1).numpy()
    assert c.mass.sum() == pytest.approx(1.0, abs=1e-13)
    assert np.abs(c.mass - np.bincount(j, rho, minlength=n) / k ** 3).max() < 3e-4  # uniform: 3e-2
    assert np.abs(c.cost - np.bincount(j, rho * ((X - y[j]) ** 2).sum(1), minlength=n) / k ** 3).max() < 5e-5
    i0, j0 = c.pairs.T
    L = graph_laplacian(n, c.pairs, c.weight / (2 * np.linalg.norm(y[i0] - y[j0], axis=1))).toarray()
    h = 1e-6
    for m in (0, 5):
        e = np.zeros(n)
        e[m] = h
        fd = (power_cells3d(y, psi + e, CUBE, dens).mass - power_cells3d(y, psi - e, CUBE, dens).mass) / (2 * h)
        assert fd == pytest.approx(L[:, m], abs=1e-7)


def test_grid_density_newton_and_zero_mass_start():
    rng = np.random.default_rng(7)
    y = torch.tensor(rng.random((100, 3)))
    r = semidiscrete(y, density=torch.tensor(rng.random((4, 5, 6)) ** 2 + 0.01))
    assert r.convergence.all_converged and _rel_err(r) <= 1e-9
    w = torch.ones(4, 2, 2, dtype=D)
    w[:2] = 0.0  # no mass on x1 < 1/2: the first Voronoi cell is empty, the continuation solves it
    y2 = torch.tensor([[0.1, 0.5, 0.5], [0.9, 0.5, 0.5]], dtype=D)
    r2 = semidiscrete(y2, density=w)
    assert r2.convergence.all_converged and r2.masses.tolist() == pytest.approx([0.5, 0.5], rel=1e-12)
    assert float(r2.psi[0] - r2.psi[1]) == pytest.approx(0.65 ** 2 - 0.15 ** 2, abs=1e-12)

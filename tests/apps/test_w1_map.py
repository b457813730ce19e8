"""W1 Monge map along transport rays: cost vs exact W1, push-forward, closed forms (1-D, translation, radial)."""

import numpy as np
import pytest
import torch

from monge.apps.w1_map import w1_map
from monge.solvers.exact.graph import grid_graph, w1_graph


def _blob(n, c, s):
    t = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(t, t, indexing="ij")
    d = np.exp(-((X - c[0]) ** 2 + (Y - c[1]) ** 2) / (2 * s * s))
    return d / d.sum()


def _pair(n):
    return _blob(n, (0.3, 0.3), 0.12), 0.5 * _blob(n, (0.7, 0.6), 0.1) + 0.5 * _blob(n, (0.3, 0.75), 0.08)


def _sample(mu, k, seed=0):
    rng = np.random.default_rng(seed)
    n0, n1 = mu.shape
    cells = rng.choice(mu.size, k, p=mu.ravel() / mu.sum())
    return (np.stack(np.unravel_index(cells, mu.shape), 1) + rng.random((k, 2))) / max(n0, n1)


def _midpoints(mu, sub):
    off = (np.stack(np.meshgrid(np.arange(sub), np.arange(sub), indexing="ij"), -1).reshape(-1, 2) + 0.5) / sub
    idx = np.stack(np.unravel_index(np.arange(mu.size), mu.shape), 1)
    return ((idx[:, None] + off[None]) / max(mu.shape)).reshape(-1, 2), np.repeat(mu.ravel() / sub**2, sub**2)


def test_cost_matches_w1_and_push_forward_converges():
    gaps, errs = [], []
    for n in (8, 16, 24):
        mu, nu = _pair(n)
        m = w1_map(mu, nu)
        gaps.append(m.cost - m.value)
        x, wx = _midpoints(mu, 6)  # deterministic quadrature of mu: no sampling noise in the histogram
        T = m.transport(x).numpy()
        assert not np.isnan(T).any()
        H, _, _ = np.histogram2d(T[:, 0], T[:, 1], bins=4, range=[[0, 1], [0, 1]], weights=wx)
        nu4 = np.array([[nu[i * n // 4:(i + 1) * n // 4, j * n // 4:(j + 1) * n // 4].sum() for j in range(4)]
                        for i in range(4)])
        errs.append(np.abs(H - nu4).sum())
        if n == 16:  # the LP value is W1 for |x - y|; the 8-neighbour path metric is within 8.3% above it
            e, ln = grid_graph((n, n), stencil=8, spacing=1.0 / n)
            g = float(w1_graph(e, ln, mu.ravel(), nu.ravel()).value)
            assert m.value <= g + 1e-9 <= 1.0824 * m.value + 1e-9
    # the map moves the piecewise-constant densities, the LP the cell centres: they differ by O(h)
    assert all(abs(g) < 0.15 / n for g, n in zip(gaps, (8, 16, 24))), gaps
    assert abs(gaps[2]) < 0.007 * 0.44
    assert errs[2] < errs[1] < errs[0] and errs[2] < 0.02  # measured 0.045, 0.031, 0.014


def test_one_dimensional_is_the_monotone_map():
    W = 40
    t = (np.arange(W) + 0.5) / W
    mu = np.exp(-((t - 0.3) / 0.1) ** 2)
    nu = np.exp(-((t - 0.6) / 0.12) ** 2)
    mu, nu = mu / mu.sum(), nu / nu.sum()
    assert (np.cumsum(mu) >= np.cumsum(nu) - 1e-12).all()  # nu dominates: every optimal plan moves right
    m = w1_map(mu[None], nu[None])
    s = np.linspace(0.0, 1.0, 2001)[1:-1]
    edges = np.linspace(0, 1, W + 1)
    Fmu, Fnu = np.r_[0, np.cumsum(mu)], np.r_[0, np.cumsum(nu)]
    keep = np.interp(s, edges, Fmu) > 1e-9
    keep &= np.interp(s, edges, Fmu) < 1 - 1e-9
    expected = np.interp(np.interp(s[keep], edges, Fmu), Fnu, edges)
    T = m.transport(np.stack([np.full(keep.sum(), 0.5 / W), s[keep]], 1)).numpy()
    np.testing.assert_allclose(T[:, 1], expected, atol=1e-6)
    np.testing.assert_allclose(T[:, 0], 0.5 / W, atol=1e-6)  # strips of 1e-7 of a cell hold mass that stays
    np.testing.assert_allclose(m.cost, m.value, rtol=1e-3)


@pytest.mark.parametrize("shift", [(0, 5), (3, 3), (2, 5)])
def test_translation(shift):
    mu = np.zeros((16, 16))
    mu[3:7, 2:8] = 1.0
    mu[4, 3] = 3.0
    mu /= mu.sum()
    nu = np.roll(mu, shift, (0, 1))
    m = w1_map(torch.from_numpy(mu), torch.from_numpy(nu))
    d = np.array(shift) / 16
    assert m.value == pytest.approx(np.hypot(*d), rel=1e-9)
    x = _sample(mu, 2000)
    err = np.abs(m.transport(x).numpy() - x - d).max()
    assert err < (1e-12 if 0 in shift else 1.0 / 16)  # axis shifts exactly; oblique ones within a cell
    assert m.cost == pytest.approx(np.hypot(*d), rel=5e-3)


def test_radial_disc_to_annulus():
    n = 24
    t = (np.arange(n) + 0.5) / n - 0.5
    R = np.hypot(*np.meshgrid(t, t, indexing="ij"))
    mu, nu = (R < 0.2).astype(float), ((R > 0.3) & (R < 0.45)).astype(float)
    m = w1_map(mu / mu.sum(), nu / nu.sum())
    x = _sample(mu, 3000)
    T = m.transport(x).numpy() - 0.5
    x = x - 0.5
    r = np.linalg.norm(x, axis=1)
    far = r > 0.05
    cos = (T * x).sum(1)[far] / (np.linalg.norm(T, axis=1)[far] * r[far])
    assert np.median(cos) > 0.99  # rays are (close to) radial
    # closed form: u(x) = -|x - c| is a Kantorovich potential, so W1 = E_nu|y - c| - E_mu|x - c|
    mean_r = lambda lo, hi: 2.0 / 3.0 * (hi**3 - lo**3) / (hi**2 - lo**2)
    w1 = mean_r(0.3, 0.45) - mean_r(0.0, 0.2)
    assert m.value == pytest.approx(w1, rel=0.02)
    assert m.cost == pytest.approx(w1, rel=0.03)


def test_discrete_target():
    mu = _blob(16, (0.4, 0.4), 0.15)
    y = np.array([[0.2, 0.2], [0.8, 0.3], [0.5, 0.9]])
    b = np.array([0.5, 0.3, 0.2])
    m = w1_map(mu, (y, b))
    x = _sample(mu, 50_000)
    T = m.transport(x).numpy()
    hit = np.linalg.norm(T[:, None] - y[None], axis=-1).argmin(1)
    assert np.linalg.norm(T - y[hit], axis=1).max() < 1e-9  # a Monge map onto the atoms
    np.testing.assert_allclose(np.bincount(hit, minlength=3) / len(x), b, atol=0.01)
    u = m.potential(np.r_[m._sources, y]).numpy()  # 1-Lipschitz dual with the W1 value
    np.testing.assert_allclose(mu.ravel()[mu.ravel() > 0] @ u[:len(m._sources)] - b @ u[len(m._sources):], m.value,
                               rtol=1e-6)
    assert m.cost == pytest.approx(m.value, rel=0.02)


def test_errors():
    with pytest.raises(ValueError, match="nu"):
        w1_map(np.ones((3, 3)) / 9, np.ones((3, 4)) / 12)
    with pytest.raises(ValueError, match="total masses"):
        w1_map(np.ones((3, 3)), np.ones((3, 3)) / 9)
    with pytest.raises(ValueError, match="metric"):
        w1_map(np.ones((3, 3)), np.ones((3, 3)), metric="l1")  # neither LP nor graph
    with pytest.raises(ValueError, match="mu"):
        w1_map(np.ones(3), np.ones(3))


def test_mass_that_stays_and_moves():
    mu = np.zeros((6, 6))
    mu[1:3, 1:4] = 1.0
    nu = mu.copy()
    nu[1, 1], nu[4, 4] = 0.0, 1.0
    mu, nu = mu / mu.sum(), nu / nu.sum()
    m = w1_map(mu, nu)
    assert m.value == pytest.approx(np.hypot(3, 3) / 6 / 6, rel=1e-9)  # one sixth of the mass moves (3, 3) cells
    assert set(np.unique(m.arcs[:, 3]).astype(int)) == set(range(m.n_rays))  # ray ids are compact
    x, wx = _midpoints(mu, 4)
    T = m.transport(x).numpy()
    assert not np.isnan(T[wx > 0]).any()
    assert m.value <= m.cost <= 1.05 * m.value


def test_graph8_route():
    n = 24
    mu, nu = _pair(n)
    m, exact = w1_map(mu, nu, metric="graph8"), w1_map(mu, nu)
    assert exact.value < m.value < 1.0824 * exact.value  # W1 for the 8-neighbour path metric
    assert abs(m.cost - exact.value) < 0.01 * exact.value  # its rays as segments: near-optimal for |x-y| (O(h))
    u = m.potential((np.stack(np.unravel_index(np.arange(n * n), (n, n)), 1) + 0.5) / n).numpy()
    assert (mu - nu).ravel() @ u == pytest.approx(m.value, rel=1e-9)
    errs = []
    for n in (12, 48):  # push-forward on 4 x 4 bins (the midpoint rule adds ~0.005 of aliasing)
        mu, nu = _pair(n)
        x, wx = _midpoints(mu, 6)
        T = w1_map(mu, nu, metric="graph8").transport(x).numpy()
        H, _, _ = np.histogram2d(T[:, 0], T[:, 1], bins=4, range=[[0, 1], [0, 1]], weights=wx)
        errs.append(np.abs(H - nu.reshape(4, n // 4, 4, n // 4).sum((1, 3))).sum())
    assert errs[1] < errs[0] / 2 and errs[1] < 0.01
    mu = np.zeros((16, 16))
    mu[3:7, 2:8] = 1.0
    mu /= mu.sum()
    x = _sample(mu, 500)
    T = w1_map(mu, np.roll(mu, 5, 1), metric="graph8").transport(x).numpy()
    np.testing.assert_allclose(T - x, np.broadcast_to([0, 5 / 16], x.shape), atol=1e-12)
    with pytest.raises(ValueError, match="graph8"):
        w1_map(mu, (np.array([[0.5, 0.5]]), np.array([1.0])), metric="graph8")

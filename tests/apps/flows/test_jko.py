"""Entropic JKO flows on grids: closed forms (heat flow, quadratic drift), Barenblatt, congestion, prox, errors."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch

from monge.apps.flows.jko import (
    Congestion,
    Entropy,
    PorousMedium,
    PotentialEnergy,
    grid_coordinates,
    jko_flow,
)
from monge.geometry.grid import Grid

DTYPES = [torch.float32, torch.float64]


def gaussian_1d(n, mean, sd, dtype):
    geom = Grid(n, dtype=dtype)
    (x,) = grid_coordinates(geom)
    mu = torch.exp(-((x - mean) ** 2) / (2 * sd**2))
    return geom, x, mu / mu.sum()


def moments(mu, x):
    m = (mu * x).sum(-1) / mu.sum(-1)
    return m, (mu * (x - m[..., None]) ** 2).sum(-1) / mu.sum(-1)


def heat_step_entropic(v, tau, eps):
    """Variance after one entropic JKO step of the heat flow from N(., v): (a-1)(a v + eps/2) = tau."""
    qb = eps / 2 - v
    alpha = (-qb + math.sqrt(qb * qb + 4 * v * (eps / 2 + tau))) / (2 * v)
    return alpha * alpha * v + eps * alpha / 2


def heat_step_exact(v, tau):
    """Variance after one unregularised JKO step of the heat flow: (v' - tau)^2 = v' v."""
    return tau + v / 2 + math.sqrt(v * v / 4 + tau * v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_heat_flow_variance_closed_form(dtype):
    tau, eps, steps = 1e-3, 2e-4, 4
    geom, x, mu0 = gaussian_1d(200, 0.5, 0.05, dtype)
    res = jko_flow(mu0, geom, Entropy(), tau, eps, steps)
    assert res.convergence.all_converged and res.snapshots.dtype == dtype
    v_ent = 0.05**2
    rtol = 1e-5 if dtype == torch.float64 else 1e-4
    variances = [float(moments(s.double(), x.double())[1]) for s in res.snapshots]
    for t in range(1, steps + 1):
        v_ent = heat_step_entropic(v_ent, tau, eps)
        assert variances[t] == pytest.approx(v_ent, rel=rtol)
        # the entropic blur: the unregularised step from the same variance adds ~2 tau, the entropic one
        # eps * alpha / (2 (2 alpha - 1)) more (first order in eps; alpha = the unregularised dilation, ~eps / 2)
        v = variances[t - 1]
        v_exact = heat_step_exact(v, tau)
        alpha = math.sqrt(v_exact / v)
        assert v_exact - v == pytest.approx(2 * tau, rel=0.25)
        assert variances[t] - v_exact == pytest.approx(eps * alpha / (2 * (2 * alpha - 1)), rel=0.05)
    assert bool((res.energies[1:] < res.energies[:-1]).all())  # the entropy decreases along the heat flow


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_quadratic_potential_drift(dtype, tau):
    """V = |x - x0|^2 / 2: mean_{t+1} - x0 = (mean_t - x0) / (1 + tau) exactly, var -> v/(1+tau)^2 + eps/(2(1+tau))."""
    eps, x0 = 2e-4, 0.7
    geom, x, mu0 = gaussian_1d(200, 0.3, 0.04, dtype)
    res = jko_flow(mu0, geom, PotentialEnergy((x - x0) ** 2 / 2), tau, eps, 4)
    assert res.convergence.all_converged
    mean, var = 0.3, 0.04**2
    rtol = 1e-8 if dtype == torch.float64 else 1e-4
    for t in range(1, 5):
        mean, var = x0 + (mean - x0) / (1 + tau), var / (1 + tau) ** 2 + eps / (2 * (1 + tau))
        m, v = moments(res.snapshots[t].double(), x.double())
        assert float(m) == pytest.approx(mean, rel=rtol)
        assert float(v) == pytest.approx(var, rel=100 * rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mass_nonnegativity_2d_batched_equals_looped(dtype):
    geom = Grid((24, 20), dtype=dtype)
    x, y = grid_coordinates(geom)
    mu = torch.stack([torch.exp(-((x - c) ** 2 + (y - 0.5) ** 2) / 0.01) + 0.01 for c in (0.3, 0.6)])
    mu = mu / mu.sum((-1, -2), keepdim=True)
    F = PotentialEnergy((x - 0.5) ** 2 + (y - 0.2) ** 2) + Entropy(0.05)
    res = jko_flow(mu, geom, F, 0.05, 1e-3, 3)
    assert res.snapshots.shape == (4, 2, 24, 20) and res.energies.shape == (4, 2)
    assert res.convergence.converged.shape == (3, 2) and res.convergence.all_converged
    assert bool((res.snapshots >= 0).all()) and bool(torch.isfinite(res.snapshots).all())
    mass = res.snapshots.double().sum((-1, -2))
    assert torch.allclose(mass, torch.ones_like(mass), atol=1e-12 if dtype == torch.float64 else 1e-5)
    for i in range(2):
        one = jko_flow(mu[i], geom, F, 0.05, 1e-3, 3)
        tol = 1e-9 if dtype == torch.float64 else 1e-4
        assert torch.allclose(one.snapshots, res.snapshots[:, i], atol=tol * float(mu.max()))


def test_3d_runs():
    geom = Grid((8, 9, 10), dtype=torch.float64)
    x, y, z = grid_coordinates(geom)
    mu = torch.exp(-((x - 0.3) ** 2 + (y - 0.4) ** 2 + (z - 0.5) ** 2) / 0.02)
    res = jko_flow(mu / mu.sum(), geom, PotentialEnergy(x) + Entropy(0.1), 0.05, 5e-3, 2)
    assert res.final.shape == (8, 9, 10) and res.convergence.all_converged
    assert float(res.final.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float((res.final * x).sum()) < float((res.snapshots[0] * x).sum())  # drifts down V = x


def test_porous_medium_barenblatt_profile():
    """m = 2 in 1-D: the flow from a narrow bump approaches the Barenblatt parabola cap, not a Gaussian."""
    geom, x, mu0 = gaussian_1d(128, 0.5, 0.015, torch.float64)
    res = jko_flow(mu0, geom, PorousMedium(m=2), 2e-4, 2e-5, 12)
    assert res.convergence.all_converged
    mu = res.final
    mean, var = moments(mu, x)
    R = math.sqrt(5 * float(var))  # a parabola cap of half-width R has variance R^2 / 5
    h = 1 / 128
    cap = (3 * h / (4 * R)) * (1 - (x - mean) ** 2 / R**2).clamp_min(0)
    gauss = h * torch.exp(-((x - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
    err_cap, err_gauss = float((mu - cap).abs().sum()), float((mu - gauss).abs().sum())
    assert err_cap < 0.06 and err_cap < 0.5 * err_gauss, (err_cap, err_gauss)
    assert float(mu[(x - mean).abs() > 1.3 * R].sum()) < 1e-3  # compact support (up to the entropic blur)
    assert bool((res.energies[1:] < res.energies[:-1]).all())


def test_congestion_crowd_motion():
    n, kappa, x0 = 128, 2.5, 0.6
    geom, x, mu0 = gaussian_1d(n, 0.3, 0.05, torch.float64)
    res = jko_flow(mu0, geom, PotentialEnergy((x - x0) ** 2 / 2) + Congestion(kappa), 0.5, 2e-4, 8)
    assert res.convergence.all_converged
    density = res.snapshots[1:] * n
    assert float(density.max()) <= kappa * (1 + 1e-4)
    assert float(density[-1].max()) > 0.99 * kappa  # the crowd is jammed against the cap near x0
    mass = res.snapshots.sum(-1)
    assert torch.allclose(mass, torch.ones_like(mass), atol=1e-12)
    means = [float(moments(s, x)[0]) for s in res.snapshots]
    assert all(b > a for a, b in itertools.pairwise(means)) and means[-1] == pytest.approx(x0, abs=0.02)
    assert bool(torch.isfinite(res.energies[1:]).all())


def brute_prox(F, lz, sigma, vol):
    """argmin_s sigma F(s) + KL(s | z) per cell, by a bounded scalar search in log s (float64)."""
    out = []
    for l in lz.tolist():
        def obj(r, l=l):
            s = math.exp(r)
            return sigma * float(F.cell_energy(torch.tensor([s], dtype=torch.float64), vol)[0]) + s * (r - l) - s + math.exp(l)
        out.append(scipy.optimize.minimize_scalar(obj, bounds=(l - 40, l + 10), method="bounded",
                                                  options={"xatol": 1e-11}).x)
    return np.array(out)


@pytest.mark.parametrize("m", [0.5, 2.0, 3.0])
def test_prox_matches_scalar_minimisation(m):
    rng = np.random.default_rng(1)
    lz = torch.tensor(rng.uniform(-8, 1, size=12))
    V = torch.tensor(rng.uniform(-1, 1, size=12))
    sigma, vol = 3.0, 0.05
    for F in (Entropy(0.7), PorousMedium(m, 0.5), PotentialEnergy(V[:1]) + Entropy(0.3) + PorousMedium(m)):
        got = F.prox(lz, sigma, vol).numpy()
        assert np.allclose(got, brute_prox(F, lz, sigma, vol), atol=1e-6), type(F).__name__
    capped = (PotentialEnergy(V[:1]) + Congestion(2.0)).prox(lz, sigma, vol)
    assert torch.allclose(capped, (lz - sigma * V[:1]).clamp_max(math.log(2.0 * vol)))
    assert PorousMedium(m).prox(torch.tensor([-torch.inf]), sigma, vol).item() == -math.inf


def test_prox_extreme_inputs_are_finite():
    lz = torch.tensor([-800.0, -50.0, 0.0, 50.0, 300.0], dtype=torch.float64)
    for dtype in DTYPES:
        r = PorousMedium(2.0).prox(lz.to(dtype).clamp(-80, 80), 10.0, 1e-4)
        assert bool(torch.isfinite(r).all())


def test_non_convergence_is_reported():
    geom, _, mu0 = gaussian_1d(64, 0.5, 0.05, torch.float64)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        res = jko_flow(mu0, geom, Entropy(), 1e-2, 1e-4, 2, max_iter=3)
    assert not res.convergence.all_converged and res.convergence.status[0] == "max_iter"
    assert bool(torch.isfinite(res.snapshots).all())


def test_callback_verbose_and_default_grid():
    mu0 = torch.ones(16, 16, dtype=torch.float64) / 256
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = jko_flow(mu0, None, Entropy(), 1e-2, 5e-3, 2, callback=lambda t, mu: seen.append((t, mu.shape)),
                       verbose=True)
    assert seen == [(1, (16, 16)), (2, (16, 16))] and len(res.inner_errors) == 2
    assert res.tau == 1e-2 and res.eps == 5e-3
    assert jko_flow(mu0, None, Entropy(), 1e-2, 5e-3, 0).snapshots.shape == (1, 16, 16)


def test_errors_name_the_argument():
    geom = Grid(8, dtype=torch.float64)
    mu = torch.ones(8, dtype=torch.float64) / 8
    cases = [
        ({"mu0": torch.ones(7, dtype=torch.float64)}, ValueError, "mu0"),
        ({"mu0": -mu}, ValueError, "mu0"),
        ({"mu0": mu.float()}, TypeError, "mu0"),
        ({"functional": "entropy"}, TypeError, "functional"),
        ({"tau": 0.0}, ValueError, "tau"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"n_steps": 1.5}, ValueError, "n_steps"),
        ({"geom": Grid(8, p=1, dtype=torch.float64)}, ValueError, "grid_or_geom"),
        ({"geom": "grid"}, TypeError, "grid_or_geom"),
        ({"functional": Congestion(0.5)}, ValueError, "kappa"),
        ({"functional": PotentialEnergy(torch.zeros(5))}, ValueError, "V"),
    ]
    for kw, exc, name in cases:
        args = {"mu0": mu, "geom": geom, "functional": Entropy(), "tau": 0.1, "eps": 1e-3, "n_steps": 1} | kw
        with pytest.raises(exc, match=name):
            jko_flow(args["mu0"], args["geom"], args["functional"], args["tau"], args["eps"], args["n_steps"])
    with pytest.raises(ValueError, match="m"):
        PorousMedium(1.0)
    with pytest.raises(ValueError, match="PorousMedium"):
        PorousMedium(2.0) + PorousMedium(3.0)
    with pytest.raises(ValueError, match="kappa"):
        Congestion(-1.0)

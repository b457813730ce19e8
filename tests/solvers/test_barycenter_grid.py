"""Convolutional (grid) barycenters: POT's convolutional ones, closed forms, 3-D grids, float32, interpolation."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

from monge.geometry import DenseCost, Grid, GridSpec
from monge.problems.barycenter import BarycenterProblem
from monge.solvers.barycenter import Barycenter
from monge.api import barycenter, interpolate_histograms


def images(n=24, floor=1e-3):
    """Three positive images on POT's grid linspace(0, 1, n) (a floor keeps POT's kernel mode away from 1e-30)."""
    t = np.linspace(0, 1, n)
    X, Y = np.meshgrid(t, t, indexing="ij")
    A = np.stack([
        np.exp(-((X - 0.3) ** 2 + (Y - 0.3) ** 2) / 0.01),
        ((np.sqrt((X - 0.6) ** 2 + (Y - 0.6) ** 2) - 0.2) ** 2 < 0.004).astype(float),
        np.exp(-((X - 0.7) ** 2 + (Y - 0.25) ** 2) / 0.003),
    ]) + floor
    return A / A.sum((1, 2), keepdims=True), np.array([0.5, 0.3, 0.2])


def bump(x, c, s):
    b = torch.exp(-((x - c) ** 2) / (2 * s**2))
    return b / b.sum()


@pytest.mark.parametrize("reg", [1e-2, 3e-3])
def test_matches_pot_convolutional(reg):
    """Same objective as POT's log-domain convolutional barycenter; its kernel mode agrees while its 1e-30
    stabiliser (log(KU + 1e-30)) is negligible: at reg = 3e-3 the scalings reach 1e-45 and it drifts by 0.2%."""
    A, w = images(n=20)
    n = A.shape[-1]
    kernel = ot.bregman.convolutional_barycenter2d(A, reg, w, numItermax=20000, stopThr=1e-13, warn=False)
    logd = ot.bregman.convolutional_barycenter2d(A, reg, w, method="sinkhorn_log", numItermax=20000,
                                                 stopThr=1e-13, warn=False)
    res = barycenter(torch.tensor(A), torch.tensor(w), eps=reg, geom=GridSpec(spacing=1 / (n - 1)), tol=1e-12,
                     max_iter=20000)
    assert res.convergence.all_converged and res.barycenter.shape == (n, n)
    np.testing.assert_allclose(res.barycenter.numpy(), logd, atol=1e-10 * logd.max())
    if reg >= 1e-2:
        np.testing.assert_allclose(res.barycenter.numpy(), kernel, atol=1e-5 * kernel.max())
    r32 = barycenter(torch.tensor(A, dtype=torch.float32), torch.tensor(w, dtype=torch.float32), eps=reg,
                     geom=GridSpec(spacing=1 / (n - 1)))
    assert r32.convergence.all_converged and r32.barycenter.dtype == torch.float32
    np.testing.assert_allclose(r32.barycenter.double().numpy(), logd, atol=2e-3 * logd.max())


def test_matches_pot_convolutional_debiased():
    A, w = images(n=12)
    ref = ot.bregman.convolutional_barycenter2d_debiased(A, 4e-3, w, method="sinkhorn_log", numItermax=20000,
                                                         stopThr=1e-13, warn=False)
    res = barycenter(torch.tensor(A), torch.tensor(w), eps=4e-3, geom=GridSpec(spacing=1 / 11), debias=True,
                     tol=1e-11, max_iter=20000)
    np.testing.assert_allclose(res.barycenter.numpy(), ref, atol=1e-8 * ref.max())


def test_grid_equals_dense_and_pot_unbalanced():
    A, w = images(n=10)
    A = A * np.array([1.0, 1.3, 0.8])[:, None, None]
    grid = Grid((10, 10), spacing=1 / 9, dtype=torch.float64)
    M = grid.cost()
    ref = ot.unbalanced.barycenter_unbalanced(A.reshape(3, -1).T, M.numpy(), 1e-2, 0.5, weights=w,
                                              numItermax=50000, stopThr=1e-15)
    res = Barycenter(eps=1e-2, tol=1e-12, max_iter=50000)(
        BarycenterProblem(grid, torch.tensor(A), torch.tensor(w), rho=0.5))
    np.testing.assert_allclose(res.barycenter.reshape(-1).numpy(), ref, atol=1e-9 * ref.max())
    dense = Barycenter(eps=1e-2, tol=1e-12, max_iter=50000)(
        BarycenterProblem(DenseCost(M), torch.tensor(A).reshape(3, -1), torch.tensor(w), rho=0.5))
    torch.testing.assert_close(res.barycenter.reshape(-1), dense.barycenter, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_translated_bumps_closed_form(dtype):
    """The W2 barycenter of two translates of a bump is the same bump at the weighted mean position; the
    debiased entropic barycenter keeps the width too (the plain one is blurred)."""
    n = 200
    x = torch.arange(n, dtype=torch.float64) / n
    a, b = bump(x, 0.25, 0.03), bump(x, 0.7, 0.03)
    for t in (0.3, 0.5):
        res = interpolate_histograms(a.to(dtype), b.to(dtype), [t], eps=2e-4, geom="grid", debias=True, max_iter=5000)
        mu = res.barycenter[0].double()
        assert res.convergence.all_converged
        mean = float((mu * x).sum())
        std = float((mu * (x - mean) ** 2).sum()) ** 0.5
        assert mean == pytest.approx(0.25 + t * 0.45, abs=1e-3)
        assert std == pytest.approx(0.03, rel=0.02)
        assert float((mu - bump(x, 0.25 + t * 0.45, 0.03)).abs().sum()) < 0.02


def test_diracs_midpoint_2d_and_interpolation_batch():
    a = torch.zeros(16, 16, dtype=torch.float64)
    b = torch.zeros(16, 16, dtype=torch.float64)
    a[2, 3], b[10, 13] = 1, 1
    ts = [0.0, 0.25, 0.5, 1.0]
    res = interpolate_histograms(a, b, ts, eps=1e-3, geom="grid")
    assert res.barycenter.shape == (4, 16, 16) and res.convergence.converged.shape == (4,)
    peaks = [divmod(int(m.argmax()), 16) for m in res.barycenter]
    assert peaks == [(2, 3), (4, 5), (6, 8), (10, 13)]  # (2, 3) + t (8, 10), rounded to cells
    for i, t in enumerate(ts):  # batched == looped
        one = barycenter(torch.stack([a, b]), torch.tensor([1 - t, t], dtype=torch.float64), eps=1e-3, geom="grid")
        torch.testing.assert_close(res.barycenter[i], one.barycenter, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_3d_grid(dtype):
    n = 14
    t = torch.arange(n, dtype=torch.float64) / n
    Z, Y, X = torch.meshgrid(t, t, t, indexing="ij")
    def blob(c):
        v = torch.exp(-((Z - c[0]) ** 2 + (Y - c[1]) ** 2 + (X - c[2]) ** 2) / 0.005)
        return v / v.sum()
    vols = torch.stack([blob((0.2, 0.3, 0.3)), blob((0.7, 0.6, 0.5))]).to(dtype)
    res = barycenter(vols, torch.tensor([0.5, 0.5], dtype=dtype), eps=2e-3, geom="grid")
    mu = res.barycenter.double()
    assert res.convergence.all_converged and mu.shape == (n, n, n) and res.barycenter.dtype == dtype
    assert float(mu.sum()) == pytest.approx(1.0, abs=1e-5)
    centre = [float((mu * G).sum()) for G in (Z, Y, X)]
    np.testing.assert_allclose(centre, [0.45, 0.45, 0.4], atol=5e-3)


def test_float32_small_eps_grid():
    """eps small enough that a kernel-mode (scaling) iteration underflows in float32: the log domain converges."""
    A, w = images(n=32, floor=0.0)
    A32 = torch.tensor(A, dtype=torch.float32)
    eps = 5e-4
    assert float(np.exp(-1.0 / eps)) == 0.0  # the Gibbs kernel underflows across the grid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r32 = barycenter(A32, torch.tensor(w, dtype=torch.float32), eps=eps, geom="grid", max_iter=5000)
    r64 = barycenter(torch.tensor(A), torch.tensor(w), eps=eps, geom="grid", max_iter=5000)
    assert r32.convergence.all_converged and torch.isfinite(r32.barycenter).all()
    assert float((r32.barycenter.double() - r64.barycenter).abs().sum()) < 5e-3


def test_batched_grid_hists():
    A, w = images(n=12)
    A2 = torch.tensor(np.stack([A, A[::-1].copy()]))
    res = barycenter(A2, torch.tensor(w), eps=5e-3, geom=GridSpec(spacing=(1 / 11, 1 / 11)),
                     tol=1e-12)  # (trajectories differ:
    # the batch picks one over-relaxation for both)
    assert res.barycenter.shape == (2, 12, 12) and res.g.shape == (2, 3, 12, 12)
    one = barycenter(A2[1], torch.tensor(w), eps=5e-3, geom=GridSpec(spacing=(1 / 11, 1 / 11)), tol=1e-12)
    torch.testing.assert_close(res.barycenter[1], one.barycenter, rtol=1e-8, atol=1e-12)


def test_grid_errors():
    with pytest.raises(ValueError, match=r"hists: expected K histograms of shape \(..., K, n_1, n_2\)"):
        BarycenterProblem(Grid((4, 4), dtype=torch.float64), torch.ones(2, 4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="t: expected a float or a non-empty sequence of floats in"):
        interpolate_histograms(torch.ones(4), torch.ones(4), [1.5], eps=0.1, geom="grid")
    with pytest.raises(ValueError, match="a and b: expected histograms of the same shape"):
        interpolate_histograms(torch.ones(4), torch.ones(5), 0.5, eps=0.1, geom="grid")
    with pytest.raises(ValueError, match="grid: expected 1 <= d"):
        barycenter(torch.ones(2, 4), eps=0.1, geom=GridSpec(ndim=5))

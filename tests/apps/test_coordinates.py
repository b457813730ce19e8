"""Wasserstein barycentric coordinates: recovery of known weights, losses, optimisers, errors."""

from __future__ import annotations

import pytest
import torch

from monge.apps.coordinates import CoordinatesFit, barycentric_coordinates
from monge.api import barycenter

EPS, L = 4e-3, 25


def atoms(n=12, dtype=torch.float64):
    """Three blobs at the corners of a triangle on an n x n grid (their barycenters identify the weights)."""
    t = torch.arange(n, dtype=torch.float64) / n
    Y, X = torch.meshgrid(t, t, indexing="ij")
    out = []
    for cy, cx, s in ((0.2, 0.2, 0.006), (0.25, 0.75, 0.01), (0.75, 0.5, 0.004)):
        b = torch.exp(-((Y - cy) ** 2 + (X - cx) ** 2) / s) + 1e-6
        out.append(b / b.sum())
    return torch.stack(out).to(dtype)


def synthesise(D, lam):
    return barycenter(D, lam, eps=EPS, geom="grid", tol=0, max_iter=L).barycenter


@pytest.mark.parametrize("loss", ["l2", "kl"])
def test_recovers_known_weights(loss):
    D = atoms()
    lam = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    res = barycentric_coordinates(synthesise(D, lam), D, eps=EPS, geom="grid", bary_iter=L, loss=loss)
    assert res.converged and res.weights.shape == (3,)
    assert float(res.weights.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(res.weights, lam, atol=2e-3, rtol=0)
    assert float(res.losses[-1]) < 1e-5 * float(res.losses[0])
    assert res.barycenter.shape == (12, 12)


def test_adam_and_callable_loss():
    D = atoms(n=8)
    lam = torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)
    target = synthesise(D, lam)

    def l1(b, t):
        return (b - t).abs().sum() / t.abs().sum()

    res = barycentric_coordinates(target, D, eps=EPS, geom="grid", bary_iter=L, loss=l1,
                                  fit=CoordinatesFit(optimizer="adam", lr=0.3, max_iter=25, tol=1e-6))
    assert float(res.losses[-1]) < 0.3 * float(res.losses[0]) and len(res.losses) == res.n_iters
    torch.testing.assert_close(res.weights, lam, atol=0.1, rtol=0)


def test_float32():
    D = atoms(dtype=torch.float32)
    lam = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float32)
    res = barycentric_coordinates(synthesise(D, lam), D, eps=EPS, geom="grid", bary_iter=L, loss="kl", tol=1e-6)
    assert res.weights.dtype == torch.float32
    torch.testing.assert_close(res.weights, lam, atol=1e-2, rtol=0)


def test_not_converged_reported():
    D = atoms(n=8)
    target = synthesise(D, torch.tensor([0.1, 0.1, 0.8], dtype=torch.float64))
    res = barycentric_coordinates(target, D, eps=EPS, geom="grid", bary_iter=5, max_iter=1)
    assert not res.converged and res.n_iters == 1 and torch.isfinite(res.weights).all()


def test_bad_inputs():
    D = atoms(n=8)
    with pytest.raises(ValueError, match=r"atoms, target: expected atoms \(K, \*support\)"):
        barycentric_coordinates(torch.ones(9, 9), D, eps=0.1, geom="grid")
    with pytest.raises(ValueError, match="loss: expected one of"):
        barycentric_coordinates(D[0], D, eps=0.1, geom="grid", loss="l3")
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        barycentric_coordinates(D[0], D, eps=0.1, geom="grid", optimizer="sgd")
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        CoordinatesFit(optimizer="sgd")
    for field, bad in (("max_iter", 0), ("lr", -1.0), ("tol", 0.0)):
        with pytest.raises(ValueError, match=f"^{field}: expected a positive"):
            CoordinatesFit(**{field: bad})
    with pytest.raises(TypeError, match="fit: expected a CoordinatesFit or None, got dict"):
        barycentric_coordinates(D[0], D, eps=0.1, geom="grid", fit={"max_iter": 3})
    with pytest.raises(TypeError, match="unexpected keyword 'maxiter'.*CoordinatesFit field \\(optimizer, max_iter"):
        barycentric_coordinates(D[0], D, eps=0.1, geom="grid", maxiter=3)
    with pytest.raises(ValueError, match="bary_iter: expected a positive int"):
        barycentric_coordinates(D[0], D, eps=0.1, geom="grid", bary_iter=0)
    with pytest.raises(ValueError, match=r"init: expected \(3,\) positive weights"):
        barycentric_coordinates(D[0], D, eps=0.1, geom="grid", init=torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="hists: a balanced barycenter needs input histograms of equal mass"):
        barycentric_coordinates(D[0], D * torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)[:, None, None],
                                eps=0.1, geom="grid")


def test_returns_a_convergence_with_the_barycenter_as_a_level():
    """Issue 10: barycentric_coordinates returns a Convergence like every solver; its inner barycenter (a fixed
    count of bary_iter iterations, the map being fitted) is recorded as a level and does not decide converged."""
    from monge.results import CoordinatesResult, Convergence

    D = atoms(n=8)
    res = barycentric_coordinates(synthesise(D, torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)), D, eps=EPS,
                                  geom="grid", bary_iter=L, loss="kl")
    assert isinstance(res, CoordinatesResult) and isinstance(res.convergence, Convergence)
    assert res.converged and res.convergence.status == ("converged",)
    assert float(res.convergence.error) <= 1e-9 and res.convergence.criterion == "min(grad_max, loss_change)"
    inner = res.convergence.level("barycenter")
    assert int(inner.n_iters) == L and inner.criterion


@pytest.mark.filterwarnings("ignore:barycentric_coordinates")
def test_fit_options_object_and_keywords():
    """The optimiser's options come as one CoordinatesFit or as its fields by keyword (which replace the object's);
    every field changes the fit."""
    D = atoms(n=8)
    target = synthesise(D, torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64))
    run = lambda **kw: barycentric_coordinates(target, D, eps=EPS, geom="grid", bary_iter=5, **kw)  # noqa: E731
    adam = CoordinatesFit(optimizer="adam", lr=0.2, max_iter=4, tol=1e-12)
    by_object, by_keywords = run(fit=adam), run(optimizer="adam", lr=0.2, max_iter=4, tol=1e-12)
    torch.testing.assert_close(by_object.losses, by_keywords.losses, rtol=0, atol=0)
    assert by_object.n_iters == 4 and not by_object.converged  # tol 1e-12 not met in 4 steps: reported
    assert run(fit=adam, max_iter=2).n_iters == 2  # a keyword replaces the object's field
    assert run(fit=adam, tol=1.0).n_iters == 2  # the first measured change is below tol=1: stops
    assert not torch.equal(run(fit=adam, lr=0.05).losses, by_object.losses)
    init = torch.tensor([0.1, 0.1, 0.8], dtype=torch.float64)
    assert float(run(fit=adam, init=init).losses[0]) != float(by_object.losses[0])
    lbfgs = run(max_iter=4, tol=1e-12)  # the default optimiser
    assert lbfgs.convergence.criterion == "min(grad_max, loss_change)" and lbfgs.n_iters <= 4

"""Particle (Lagrangian) flows: decreasing losses, translations removed, weights, batching, errors."""

from __future__ import annotations

import warnings

import pytest
import torch

import monge
from monge.apps.flows import particle_flow

DTYPES = [torch.float32, torch.float64]


def cloud(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.3 + 0.4 * torch.rand(n, 2, generator=g, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["sinkhorn", "mmd"])
def test_loss_decreases(dtype, loss):
    y = cloud(60, dtype)
    x0 = cloud(50, dtype, seed=1) * 0.5 + 0.05
    knobs = {"blur": 0.1} if loss == "sinkhorn" else {}  # the energy MMD has no blur (passing one is an error)
    res = particle_flow(x0, y, loss, lr=0.1 if loss == "sinkhorn" else 0.05, n_steps=15, **knobs)
    assert res.snapshots.shape == (16, 50, 2) and res.snapshots.dtype == dtype and res.losses.shape == (16,)
    assert bool((res.losses[1:] <= res.losses[:-1] * (1 + 1e-6)).all())
    assert float(res.losses[-1]) < 0.2 * float(res.losses[0])
    assert bool(torch.isfinite(res.snapshots).all()) and res.convergence.all_converged


@pytest.mark.parametrize("dtype", DTYPES)
def test_translated_copy_converges_to_target(dtype):
    y = cloud(80, dtype)
    shift = torch.tensor([0.25, -0.15], dtype=dtype)
    res = particle_flow(y + shift, y, lr=0.25, n_steps=12, blur=0.1)
    err = float((res.final - y).norm(dim=-1).max())  # particle i lands on y_i: the translation is removed
    assert err < (1e-2 if dtype == torch.float32 else 1e-3), err
    assert float(monge.sinkhorn_divergence(res.final.double(), y.double(), eps=0.01)) < 1e-5


def test_wasserstein_gradient_scaling_with_weights():
    """Velocity = grad_x L / a_i: for a translated copy with any weights, every particle moves by the same step."""
    y = cloud(40, torch.float64)
    a = torch.distributions.Dirichlet(torch.ones(40, dtype=torch.float64)).sample()
    shift = torch.tensor([0.2, 0.1], dtype=torch.float64)
    res = particle_flow(y + shift, y, lr=0.1, n_steps=1, a=a, b=a, blur=0.05)
    step = res.snapshots[1] - res.snapshots[0]
    assert torch.allclose(step, step.mean(0).expand_as(step), atol=1e-4)
    # for p = 2 (cost |x - y|^2) the velocity of a translation is 2 * shift
    assert torch.allclose(step.mean(0), -0.1 * 2 * shift, rtol=1e-3)


def test_batched_equals_looped():
    y = torch.stack([cloud(30, torch.float64, s) for s in range(3)])
    x0 = torch.stack([cloud(25, torch.float64, 10 + s) for s in range(3)])
    res = particle_flow(x0, y, lr=0.2, n_steps=4, blur=0.1)
    assert res.snapshots.shape == (5, 3, 25, 2) and res.losses.shape == (5, 3)
    for i in range(3):
        one = particle_flow(x0[i], y[i], lr=0.2, n_steps=4, blur=0.1)
        assert torch.allclose(one.snapshots, res.snapshots[:, i], atol=1e-6)
        assert torch.allclose(one.losses, res.losses[:, i], atol=1e-8)


def test_callable_loss_tol_and_no_grad_context():
    y = cloud(20, torch.float64)

    def half_sq(x, y, a, b):  # mean-matching: 1/2 |mean(x) - mean(y)|^2
        return 0.5 * ((a[:, None] * x).sum(0) - y.mean(0)).pow(2).sum()

    seen = []
    with torch.no_grad():
        res = particle_flow(y + 1.0, y, half_sq, lr=0.5, n_steps=50, tol=1e-8, callback=lambda t, x: seen.append(t))
    # velocity = grad / a_i = mean(x) - mean(y): the gap halves at every step of lr 0.5
    assert res.convergence.all_converged and res.convergence.status == ("converged",)
    assert len(seen) < 50 and res.snapshots.shape[0] == len(seen) + 1 == res.losses.shape[0]
    assert float(res.losses[1]) == pytest.approx(0.25 * float(res.losses[0]))
    with pytest.warns(RuntimeWarning, match="tol"):
        bad = particle_flow(y + 1.0, y, half_sq, lr=0.01, n_steps=3, tol=1e-12, verbose=True)
    assert not bad.convergence.all_converged


def test_sinkhorn_reaches_closer_than_gaussian_mmd():
    """Gaussian-MMD gradients vanish far away: a distant cloud hardly moves; the Sinkhorn flow transports it."""
    y = cloud(50, torch.float64)
    x0 = y + torch.tensor([0.6, 0.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = particle_flow(x0, y, "sinkhorn", lr=0.2, n_steps=10, blur=0.1)
        mm = particle_flow(x0, y, "mmd", lr=0.2, n_steps=10, blur=0.1, kernel="gaussian")
    w_sk = float(monge.wasserstein(sk.final, y))
    w_mm = float(monge.wasserstein(mm.final, y))
    assert w_sk < 0.05 and w_mm > 0.3, (w_sk, w_mm)


def test_errors_name_the_argument():
    y = cloud(10, torch.float64)
    with pytest.raises(ValueError, match="loss"):
        particle_flow(y, y, "wasserstein")
    with pytest.raises(ValueError, match="y"):
        particle_flow(y, y[:, :1])
    with pytest.raises(ValueError, match="lr"):
        particle_flow(y, y, lr=-1.0)
    with pytest.raises(ValueError, match="a"):
        particle_flow(y, y, a=-torch.ones(10, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_steps"):
        particle_flow(y, y, n_steps=-1)
    with pytest.raises(TypeError, match="y"):
        particle_flow(y, y.float())
    with pytest.raises(ValueError, match="x0"):
        particle_flow(torch.ones(3, dtype=torch.float64), y)


def test_inner_warnings_are_one_per_flow_at_the_callers_line():
    """Issue 11 (everyday use): a flow printed one warning per inner solve (18 here); now one summary per call,
    pointing at the user's line, that says how many inner solves warned."""
    y = cloud(20, torch.float64)
    loss = monge.nn.SinkhornLoss(blur=0.1, max_iter=2)  # every inner solve stops at its cap
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = particle_flow(y + 0.3, y, loss, lr=0.25, n_steps=5)
    assert len(caught) == 1 and caught[0].filename == __file__
    assert "inner solves warned" in str(caught[0].message) and "max_iter=2" in str(caught[0].message)
    assert res.convergence.all_converged and res.convergence.criterion == "loss"  # no tol: the steps asked


def test_status_values_are_the_documented_ones():
    y = cloud(20, torch.float64)
    res = particle_flow(y + 0.1, y, lr=0.25, n_steps=2, blur=0.2)
    assert res.convergence.status == ("converged",) and set(res.convergence.status) <= set(monge.results.STATUSES)

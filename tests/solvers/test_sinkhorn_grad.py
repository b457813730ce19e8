"""Differentiation of entropic OT: envelope, unrolled and implicit gradients, gradcheck in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import monge
from monge import LinearProblem, PointCloud, Sinkhorn


def _data(rng, n=7, m=5):
    x = torch.from_numpy(rng.random((n, 2))).requires_grad_()
    y = torch.from_numpy(rng.random((m, 2))).requires_grad_()
    a = torch.from_numpy(rng.dirichlet(np.ones(n))).requires_grad_()
    b = torch.from_numpy(rng.dirichlet(np.ones(m))).requires_grad_()
    return x, y, a, b


def _solve(grad, x, y, a, b, rho=None, backend="dense"):
    prob = LinearProblem(PointCloud(x, y, backend=backend), a, b, rho_a=rho, rho_b=rho)
    return Sinkhorn(eps=0.1, tol=1e-13, max_iter=20000, grad=grad)(prob)


@pytest.mark.parametrize("rho", [None, 0.5])
def test_three_modes_agree_on_the_value(rng, rho):
    x, y, a, b = _data(rng)
    grads = {g: torch.autograd.grad(_solve(g, x, y, a, b, rho).value, (x, y, a, b)) for g in monge.solvers.sinkhorn.GRADS}
    for mode in ("envelope", "implicit"):
        for u, v in zip(grads[mode], grads["unroll"]):
            torch.testing.assert_close(u, v, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("rho", [None, 0.5])
def test_implicit_equals_unroll_on_the_plan(rng, rho):
    """Beyond the value, only unroll and implicit differentiate the plan/potentials correctly."""
    x, y, a, b = _data(rng)
    w = torch.from_numpy(rng.normal(size=(7, 5)))
    out = {g: torch.autograd.grad((_solve(g, x, y, a, b, rho).plan * w).sum(), (x, y, a)) for g in ("unroll", "implicit")}
    for u, v in zip(out["implicit"], out["unroll"]):
        torch.testing.assert_close(u, v, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("grad", ["envelope", "unroll", "implicit"])
def test_gradcheck_positions(rng, grad):
    x, y, a, b = _data(rng, 5, 4)
    a, b = a.detach(), b.detach()
    assert torch.autograd.gradcheck(lambda x, y: _solve(grad, x, y, a, b).value, (x, y), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("grad", ["unroll", "implicit"])
def test_gradcheck_plan_unbalanced(rng, grad):
    x, y, a, b = _data(rng, 5, 4)
    w = torch.from_numpy(rng.normal(size=(5, 4)))
    fn = lambda x, a: (_solve(grad, x, y.detach(), a, b.detach(), rho=0.7).plan * w).sum()  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, a), eps=1e-6, atol=1e-6)


def test_weight_gradient_along_tangent_directions(rng):
    x, y, a, b = _data(rng)
    v = _solve("envelope", x, y, a, b).value
    ga, gb = torch.autograd.grad(v, (a, b))
    for _ in range(3):
        da = torch.from_numpy(rng.normal(size=7))
        da -= da.mean()
        h = 1e-6
        fd = (_solve("envelope", x, y, a + h * da, b).value - _solve("envelope", x, y, a - h * da, b).value) / (2 * h)
        np.testing.assert_allclose(float(fd), float(ga @ da), rtol=1e-6, atol=1e-10)


def test_lazy_backend_gradients_match_dense(rng):
    x, y, a, b = _data(rng, 40, 30)
    for grad in ("envelope", "implicit"):
        gd = torch.autograd.grad(_solve(grad, x, y, a, b, backend="dense").value, (x, y, a))
        gl = torch.autograd.grad(_solve(grad, x, y, a, b, backend="lazy").value, (x, y, a))
        for u, v in zip(gd, gl):
            torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)

"""The grid fast paths: the numpy one-shift product behind Grid.softmin and the block loop (GridLoop) of the
Sinkhorn solver, each against the torch log-domain path they replace (values, potentials, gradients, batches,
and the switch to the log domain where the scaling-form product underflows)."""

from __future__ import annotations

import warnings

import pytest
import torch

import monge
from monge.geometry._backends import grid_axes, grid_loop
from monge.geometry.grid import Grid


def bumps(n: int, dtype=torch.float64, floor: float = 1e-3):
    x = torch.linspace(0, 1, n, dtype=dtype)
    X, Y = torch.meshgrid(x, x, indexing="ij")
    a = torch.exp(-((X - 0.3) ** 2 + (Y - 0.35) ** 2) / 0.02) + floor
    b = torch.exp(-((X - 0.7) ** 2 + (Y - 0.6) ** 2) / 0.01) + floor
    return a / a.sum(), b / b.sum()


@pytest.fixture
def torch_only(monkeypatch):
    """Turn both fast paths off: the log-domain torch iterations of before."""
    def off():
        monkeypatch.setattr(Grid, "scaling_loop", lambda self, eps: None)
        monkeypatch.setattr(grid_axes, "_numpy_ok", lambda h: False)
    return off


@pytest.fixture
def runs(monkeypatch):
    """Record (iterations done, complete) of every GridLoop.run call."""
    seen = []
    orig = grid_loop.GridLoop.run

    def spy(self, *args):
        out = orig(self, *args)
        seen.append((out[1], out[2]))
        return out

    monkeypatch.setattr(grid_loop.GridLoop, "run", spy)
    return seen


def solve(a, b, eps, n, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return monge.solve_grid(a, b, eps=eps, spacing=(1 / (n - 1),) * 2, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5, 5), (4, 6), (3, 4, 5)])
def test_numpy_product_equals_torch_product(shape, dtype, monkeypatch):
    """Batch sizes equal to the grid sides (B = n_1 = n_2 = 5): the fused product must not mix them up."""
    geom = Grid(shape, dtype=dtype)
    kernels = [geom._kernel(k, 0.05)[1] for k in range(len(shape))]
    h = torch.randn(shape[0], shape[0], *shape, dtype=dtype) * 0.05
    fast = grid_axes.fused_product(h, kernels, 0.05)
    monkeypatch.setattr(grid_axes, "_numpy_ok", lambda h: False)
    ref = grid_axes.fused_product(h, kernels, 0.05)
    assert fast is not None and ref is not None and fast.dtype == dtype and fast.shape == h.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(fast, ref, rtol=tol, atol=tol)
    for k in range(h.shape[0]):  # batched == looped
        torch.testing.assert_close(grid_axes.fused_product(h[k], kernels, 0.05), fast[k], rtol=tol, atol=tol)


def test_numpy_product_refuses_what_underflows_and_what_records():
    geom = Grid((16, 16), dtype=torch.float64)
    kernels = [geom._kernel(k, 1e-4)[1] for k in range(2)]
    h = torch.full((16, 16), -torch.inf, dtype=torch.float64)
    h[0, 0] = 0.0  # one isolated mass: far cells underflow
    assert grid_axes.fused_product(h, kernels, 1e-4) is None
    x = torch.zeros(16, 16, dtype=torch.float64, requires_grad=True)
    assert not grid_axes._numpy_ok(x) and grid_axes._numpy_ok(x.detach())
    with torch.no_grad():
        assert grid_axes._numpy_ok(x)


@pytest.mark.parametrize("rho", [None, 0.5])
def test_loop_equals_log_domain_iterations(rho, torch_only, runs):
    n, eps = 20, 1e-2
    a, b = bumps(n)
    fast = solve(a, b, eps, n, rho=rho, tol=1e-11)
    assert runs and all(complete for _, complete in runs)  # the loop ran every block
    torch_only()
    ref = solve(a, b, eps, n, rho=rho, tol=1e-11)
    assert fast.convergence.all_converged and ref.convergence.all_converged
    assert int(fast.convergence.n_iters) == int(ref.convergence.n_iters)
    for u, v in ((fast.f, ref.f), (fast.g, ref.g), (fast.value, ref.value)):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


def test_loop_gradients_gradcheck_and_equal_to_log_domain(torch_only):
    n, eps = 6, 0.05
    a0, b0 = bumps(n, floor=0.05)

    def value(a_raw, b_raw):
        return solve(a_raw / a_raw.sum(), b_raw / b_raw.sum(), eps, n, tol=1e-13).value

    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    assert torch.autograd.gradcheck(value, (a, b), eps=1e-6, atol=1e-6)
    grads = torch.autograd.grad(value(a, b), (a, b))
    torch_only()
    ref = torch.autograd.grad(value(a, b), (a, b))
    for u, v in zip(grads, ref):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-11)


def test_underflow_switches_to_log_domain_with_the_same_answer(torch_only, runs):
    """Two isolated Diracs at small eps: the one-shift product underflows on the far cells, the loop hands over
    to the log-domain soft-min (per-axis products, exact fallbacks), and the answer is that of the log domain."""
    n, eps = 12, 1e-3
    a = torch.zeros(n, n, dtype=torch.float64)
    a[1, 2], a[9, 8] = 0.6, 0.4
    b = bumps(n)[1]
    fast = solve(a, b, eps, n, tol=1e-9)
    assert runs and not runs[0][1]  # the first block stopped on an unreliable product
    assert fast.convergence.all_converged and torch.isfinite(fast.g).all()
    torch_only()
    ref = solve(a, b, eps, n, tol=1e-9)
    torch.testing.assert_close(fast.g, ref.g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.value, ref.value, rtol=1e-10, atol=1e-12)


def test_mid_block_failure_keeps_the_last_certified_state(torch_only, monkeypatch, runs):
    """A product that fails in the middle of a block (forced here): the block returns the state before it and
    the solver finishes in the log domain, on the same iterates."""
    n, eps = 16, 1e-2
    a, b = bumps(n)
    calls = {"n": 0}
    orig = grid_loop.GridLoop.half

    def flaky(self, pot, elw):
        calls["n"] += 1
        return None if calls["n"] == 7 else orig(self, pot, elw)  # the 2nd half step of iteration 4

    monkeypatch.setattr(grid_loop.GridLoop, "half", flaky)
    fast = solve(a, b, eps, n, tol=1e-11)
    assert runs[0] == (3, False) and len(runs) == 1  # 3 iterations certified, then the loop is off for good
    torch_only()
    ref = solve(a, b, eps, n, tol=1e-11)
    assert int(fast.convergence.n_iters) == int(ref.convergence.n_iters)
    torch.testing.assert_close(fast.f, ref.f, rtol=1e-10, atol=1e-12)


def test_loop_offered_only_where_it_applies():
    assert Grid((4, 4), dtype=torch.float32).scaling_loop(0.1) is None  # float64 only
    geom = Grid((4, 4), dtype=torch.float64)
    loop = geom.scaling_loop(0.1)
    assert isinstance(loop, grid_loop.GridLoop)
    for _ in range(3):
        loop.on_fail()
    assert geom.scaling_loop(0.1) is None and geom.scaling_loop(0.2) is not None


def test_batched_solve_with_batch_equal_to_grid_side():
    """B = n = 8: the batched solve (numpy soft-min, no block loop) equals the unbatched ones (block loop)."""
    n, eps = 8, 0.02
    a, b = bumps(n, floor=0.01)
    A = torch.stack([torch.roll(a, k, 0) for k in range(n)])
    A = A / A.sum((-2, -1), keepdim=True)
    batch = solve(A, b.expand(n, n, n), eps, n, tol=1e-11)
    for k in range(n):
        one = solve(A[k], b, eps, n, tol=1e-11)
        assert batch.convergence.converged[k] and one.convergence.all_converged
        centred = batch.f[k] - batch.f[k].mean(), one.f - one.f.mean()  # potentials are defined up to a constant
        torch.testing.assert_close(*centred, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(batch.value[k], one.value, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(30,), (6, 5, 4)])
def test_loop_equals_log_domain_1d_and_3d(shape, torch_only, runs):
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.1
    b = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    spacing = tuple(1.0 / n for n in shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = monge.solve_grid(a, b, eps=0.02, spacing=spacing, tol=1e-11)
        assert runs and all(complete for _, complete in runs)
        torch_only()
        ref = monge.solve_grid(a, b, eps=0.02, spacing=spacing, tol=1e-11)
    assert fast.convergence.all_converged and int(fast.convergence.n_iters) == int(ref.convergence.n_iters)
    torch.testing.assert_close(fast.f, ref.f, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.value, ref.value, rtol=1e-10, atol=1e-12)

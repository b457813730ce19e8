"""The pure-torch paths that CUDA tensors take, run here on the CPU with the compiled kernels switched off.

CI has no GPU. On a CUDA device the compiled CPU kernels (``csrc/softmin.cpp``) do not apply: the lazy soft-min
runs torch tiles recomputed in the backward pass, the dense soft-min ``torch.logsumexp``. These tests force those
paths and check them against the compiled ones, so the code a GPU runs is exercised in every CI run.
"""

import pytest
import torch

import monge
import monge.geometry._backends.lazy as lazy
import monge.ops.logsumexp as lse


@pytest.fixture
def torch_only(monkeypatch):
    monkeypatch.setattr(lazy, "_k_fwd", None)
    monkeypatch.setattr(lazy, "_k_bwd", None)
    monkeypatch.setattr(lse, "_softmin_dense_core", None)


def _clouds(n=150, m=120, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = torch.rand(m, d, generator=g, dtype=torch.float64) + 0.2
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    return x, y, a / a.sum(), b / b.sum()


def _solve_both(monkeypatch, fn):
    compiled = fn()
    monkeypatch.setattr(lazy, "_k_fwd", None)
    monkeypatch.setattr(lazy, "_k_bwd", None)
    monkeypatch.setattr(lse, "_softmin_dense_core", None)
    return compiled, fn()


@pytest.mark.parametrize("backend", ["lazy", "dense"])
def test_sinkhorn_torch_path_matches_compiled(monkeypatch, backend):
    x, y, a, b = _clouds()

    def run():
        return monge.solve_points(x, y, a, b, eps=1e-2, backend=backend, tol=1e-10, max_iter=5000)

    c, t = _solve_both(monkeypatch, run)
    assert bool(t.convergence.converged)
    torch.testing.assert_close(t.value, c.value, rtol=1e-10, atol=0)
    torch.testing.assert_close(t.f, c.f, rtol=0, atol=1e-9)


def test_divergence_gradient_torch_path_matches_compiled(monkeypatch):
    x, y, a, b = _clouds(seed=1)

    def run():
        xr = x.clone().requires_grad_(True)
        val = monge.sinkhorn_divergence(xr, y, a, b, eps=1e-2, backend="lazy", tol=1e-10)
        (gx,) = torch.autograd.grad(val, xr)
        return val.detach(), gx

    (vc, gc), (vt, gt) = _solve_both(monkeypatch, run)
    torch.testing.assert_close(vt, vc, rtol=1e-9, atol=1e-13)
    torch.testing.assert_close(gt, gc, rtol=1e-7, atol=1e-11)


def test_given_matrix_and_unbalanced_on_torch_path(torch_only):
    x, y, a, b = _clouds(seed=2)
    C = torch.cdist(x, y) ** 2
    res = monge.solve(C, a, b, eps=5e-2, rho=0.5, tol=1e-12)
    import ot

    P = ot.unbalanced.sinkhorn_unbalanced(a.numpy(), b.numpy(), C.numpy(), 5e-2, 0.5, numItermax=100000,
                                          stopThr=1e-15)
    torch.testing.assert_close(res.plan, torch.from_numpy(P), rtol=0, atol=1e-10)


def test_lazy_torch_tiles_gradcheck(torch_only):
    x, y, _, _ = _clouds(n=7, m=6, d=2, seed=3)
    h = torch.randn(6, dtype=torch.float64)
    xr, hr = x.clone().requires_grad_(True), h.clone().requires_grad_(True)
    from monge.geometry.costs import SqEuclidean

    def f(x_, h_):  # tiles of 3 rows
        return lazy.lazy_softmin(x_, y, h_, 0.05, 1, SqEuclidean(), chunk=3)

    assert torch.autograd.gradcheck(f, (xr, hr))

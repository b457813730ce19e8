"""The fused Triton soft-min against the torch lazy path and the dense torch formula.

Opt-in: these tests need triton (``pip install -e ".[test,triton]"``). Without a GPU the kernels run on CPU
tensors through Triton's interpreter (``TRITON_INTERPRET=1``, set here when CUDA is absent, before the kernels
are first imported); with CUDA and without the variable they run compiled on the GPU.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from monge.geometry import PointCloud
from monge.geometry._backends import triton_softmin as ts
from monge.geometry._backends.lazy import lazy_softmin
from monge.geometry.costs import Cosine, Euclidean, SqEuclidean
from monge.problems import LinearProblem
from monge.solvers import Sinkhorn

INTERPRET = not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
if INTERPRET:  # at collection, before anything imports triton: its interpreter mode is fixed at import
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEV = "cpu" if INTERPRET else "cuda"
HAVE_TRITON = importlib.util.find_spec("triton") is not None
WHY_NOT = ts.triton_usable(SqEuclidean(), torch.zeros(1, 2, device=DEV)) if HAVE_TRITON else "triton is not installed"
needs_triton = pytest.mark.skipif(WHY_NOT is not None, reason=f"{WHY_NOT} (pip install -e '.[triton]')")
COSTS = [SqEuclidean(), SqEuclidean(scale=0.5), Euclidean(p=1.0), Euclidean(p=1.5), Cosine()]


def _pts(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(DEV)


def _dense(x, y, h, eps, cost, dim=1):
    """The dense torch formula in float64: the reference of values and of autograd gradients."""
    C = cost(x.double(), y.double())
    if dim == 0:
        C = C.transpose(-1, -2)
    return -eps * torch.logsumexp((h.double().unsqueeze(-2) - C) / eps, -1)


def _close(a, b, tol=3e-5):
    a, b = a.double().cpu(), b.double().cpu()
    assert torch.allclose(a, b, rtol=tol, atol=tol), f"max |diff| = {(a - b).abs().max().item():.3g}"


@needs_triton
@pytest.mark.parametrize("cost", COSTS, ids=repr)
@pytest.mark.parametrize("dim", [0, 1])
def test_forward_matches_lazy(cost, dim):
    x, y = _pts(45, 3, seed=1), _pts(38, 3, seed=2)
    h = _pts(38 if dim == 1 else 45, seed=3)
    red = ts.TritonSoftmin(cost, x)
    ref = lazy_softmin(x.double().cpu(), y.double().cpu(), h.double().cpu(), 0.2, dim, cost)
    _close(red.softmin(x, y, h, 0.2, dim), ref)


@needs_triton
@pytest.mark.parametrize("cost", [SqEuclidean(), Euclidean(p=1.0), Cosine()], ids=repr)
def test_batched_broadcast_and_ragged(cost):
    """x (B, n, d) against a shared y (m, d); -inf entries of h drop points: equal to the unpadded problems."""
    B, n, m, d = 3, 40, 50, 4
    x, y, h = _pts(B, n, d, seed=4), _pts(m, d, seed=5), _pts(B, m, seed=6)
    sizes = [50, 33, 7]
    for k, s in enumerate(sizes):
        h[k, s:] = float("-inf")
    out = ts.triton_softmin(x, y, h, 0.5, cost)
    assert out.shape == (B, n) and out.dtype == torch.float32 and out.device == x.device
    for k, s in enumerate(sizes):
        _close(out[k], _dense(x[k], y[:s], h[k, :s], 0.5, cost))


@needs_triton
def test_row_without_mass_and_empty():
    x, y = _pts(5, 2), _pts(20, 2, seed=1)
    h = torch.full((20,), float("-inf"), device=DEV)
    out = ts.triton_softmin(x, y, h, 0.1, SqEuclidean())
    assert torch.isposinf(out).all()
    assert ts.triton_softmin(x[:0], y, h, 0.1, SqEuclidean()).shape == (0,)


@needs_triton
@pytest.mark.parametrize("cost", COSTS, ids=repr)
def test_gradients_match_dense_autograd(cost):
    """d out / d(x, y, h) under a random cotangent, batched, with -inf entries (their gradient is 0)."""
    x, y, h = _pts(2, 30, 3, seed=7), _pts(2, 47, 3, seed=8), _pts(2, 47, seed=9)
    h[1, 40:] = float("-inf")
    u = _pts(2, 30, seed=10)
    xs, ys, hs = (t.clone().requires_grad_() for t in (x, y, h))
    g = torch.autograd.grad((ts.triton_softmin(xs, ys, hs, 0.3, cost) * u).sum(), (xs, ys, hs))
    xd, yd, hd = (t.double().cpu().requires_grad_() for t in (x, y, h))
    gd = torch.autograd.grad((_dense(xd, yd, hd, 0.3, cost) * u.double().cpu()).sum(), (xd, yd, hd))
    for got, ref in zip(g, gd):
        _close(got, ref, tol=1e-4)
    assert (g[2][1, 40:] == 0).all()


@needs_triton
def test_gradient_of_shared_points_sums_over_the_batch():
    x, y, h = _pts(3, 20, 2, seed=11), _pts(25, 2, seed=12), _pts(25, seed=13)
    ys, hs = y.clone().requires_grad_(), h.clone().requires_grad_()
    gy, gh = torch.autograd.grad(ts.triton_softmin(x, ys, hs, 0.2, SqEuclidean()).sum(), (ys, hs))
    yd, hd = y.double().cpu().requires_grad_(), h.double().cpu().requires_grad_()
    ref = torch.autograd.grad(_dense(x.cpu(), yd, hd, 0.2, SqEuclidean()).sum(), (yd, hd))
    assert gy.shape == y.shape and gh.shape == h.shape
    _close(gy, ref[0], tol=1e-4)
    _close(gh, ref[1], tol=1e-4)


@needs_triton
@pytest.mark.parametrize("cost, grad", [("sqeuclidean", "envelope"), ("euclidean", "envelope"),
                                        pytest.param("sqeuclidean", "implicit", marks=pytest.mark.slow)])
def test_sinkhorn_equals_lazy_backend(cost, grad):
    """A full solve through the geometry: potentials, value and gradient equal the torch lazy path.

    ``grad="implicit"`` is marked slow: its conjugate gradient (tol 1e-10) runs all 500 iterations in float32,
    each two interpreted backward passes (~3 minutes in the interpreter, 0.1 s for the CPU kernel).
    """
    x, y = _pts(60, 3, seed=14), _pts(50, 3, seed=15)
    res = {}
    for backend in ("triton", "lazy"):
        xs = (x if backend == "triton" else x.double().cpu()).clone().requires_grad_()
        ys = y if backend == "triton" else y.double().cpu()
        geom = PointCloud(xs, ys, cost=cost, backend=backend)
        assert type(geom._impl).__name__ == ("TritonSoftmin" if backend == "triton" else "LazySoftmin")
        r = Sinkhorn(eps=0.1, tol=1e-5, max_iter=300, grad=grad)(LinearProblem(geom))
        assert r.convergence.all_converged
        res[backend] = r.f, r.g, r.value, torch.autograd.grad(r.value, xs)[0]
    for got, ref in zip(res["triton"], res["lazy"]):
        _close(got, ref, tol=2e-4)


@needs_triton
def test_refusals_name_the_reason(monkeypatch):
    x = _pts(5, 2)
    with pytest.raises(ValueError, match="float32"):
        PointCloud(x.double(), backend="triton")
    with pytest.raises(ValueError, match="no fused kernel"):
        PointCloud(x, cost=lambda a, b: torch.cdist(a, b), backend="triton")
    red = ts.TritonSoftmin(SqEuclidean(), x)
    with pytest.raises(ValueError, match="dim"):
        red.softmin(x, x, x[:, 0], 0.1, 2)
    if INTERPRET:
        monkeypatch.delenv("TRITON_INTERPRET")
        with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
            PointCloud(x, backend="triton")
        assert type(PointCloud(x, backend="lazy")._impl).__name__ == "LazySoftmin"


def test_without_triton_the_lazy_backend_stays_torch(monkeypatch):
    """monge never requires triton: without it (simulated), 'lazy' is torch and 'triton' says how to install."""
    monkeypatch.setattr(ts.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.rand(6, 2)
    assert type(PointCloud(x, backend="lazy")._impl).__name__ == "LazySoftmin"
    with pytest.raises(ValueError, match="pip install"):
        PointCloud(x, backend="triton")


@pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
def test_lazy_backend_picks_the_kernels_on_cuda():
    x = torch.rand(50, 3, device="cuda")
    assert type(PointCloud(x, backend="lazy")._impl).__name__ == "TritonSoftmin"
    assert type(PointCloud(x.double(), backend="lazy")._impl).__name__ == "LazySoftmin"

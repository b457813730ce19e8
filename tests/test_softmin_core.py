"""The compiled lazy squared-Euclidean soft-min (``monge._core.softmin_sqeuclid``) and its backward.

Reference: ``-eps * logsumexp((h - cdist(x, y)**2) / eps)`` in float64 torch (the squared distance is
formed as a sum of squared differences, so it is exact enough for 1e-12 comparisons), and torch autograd
of that reference for the backward. float32 inputs are compared against the float64 reference evaluated
on the same (float32-representable) values. Error measure for ``out``: ``|out - ref| / (|ref| + eps)``,
i.e. relative, and never asked below the eps-scale of the values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

core = pytest.importorskip("monge._core")
if not hasattr(core, "softmin_sqeuclid"):  # pragma: no cover - stale build
    pytest.skip("monge._core built without softmin_sqeuclid", allow_module_level=True)
from monge._core import softmin_sqeuclid, softmin_sqeuclid_backward  # noqa: E402

# float32: the argument (h - C)/eps - M is rounded once (fma) in float32, the exponentials are summed in
# float32 within a tile of <= 1024 columns and in float64 across tiles; measured ~1e-7 (worst ~4e-7 at
# d = 5, eps = 1e-2) relative, with eps = 1e-4 * max cost around 1e-7 as well. Gradients ~1e-5.
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}
GTOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def _cost(x, y):
    return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)


def _ref(x, y, h, eps):
    return -eps * torch.logsumexp((h[..., None, :] - _cost(x, y)) / eps, -1)


def _data(B, n, m, d, dtype, seed=0, hscale=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, n, d, generator=g, dtype=torch.float64).to(dtype)
    y = torch.rand(B, m, d, generator=g, dtype=torch.float64).to(dtype)
    h = (hscale * torch.randn(B, m, generator=g, dtype=torch.float64)).to(dtype)
    return x, y, h


def _fwd(x, y, h, eps, n_threads=0):
    return torch.from_numpy(softmin_sqeuclid(x.numpy(), y.numpy(), h.numpy(), eps, n_threads))


def _rel(a, b, eps):
    return ((a.double() - b).abs() / (b.abs() + eps)).max().item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("shape", [(1, 130, 77), (3, 33, 40), (2, 1, 50), (2, 17, 1), (1, 200, 1500)])
def test_forward_matches_reference(dtype, d, shape):
    B, n, m = shape
    x, y, h = _data(B, n, m, d, dtype, seed=d + n)
    eps = 0.01
    out = _fwd(x, y, h, eps)
    assert out.shape == (B, n) and out.dtype == dtype
    ref = _ref(x.double(), y.double(), h.double(), eps)
    assert _rel(out, ref, eps) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_threads_agree(dtype):
    x, y, h = _data(3, 301, 257, 3, dtype, seed=1)
    outs = [_fwd(x, y, h, 0.05, nt) for nt in (1, 2, 3, 0)]
    ref = _ref(x.double(), y.double(), h.double(), 0.05)
    for o in outs:
        assert _rel(o, ref, 0.05) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiny_eps(dtype):
    # eps = 1e-4 of the largest cost: arguments span thousands, only the online max keeps this finite.
    x, y, h = _data(1, 150, 2100, 3, dtype, seed=3)
    eps = 1e-4 * _cost(x.double(), y.double()).max().item()
    out = _fwd(x, y, h, eps)
    ref = _ref(x.double(), y.double(), h.double(), eps)
    assert torch.isfinite(out).all()
    assert _rel(out, ref, eps) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_large_offsets_and_descending_order(dtype):
    # h with a large common offset, and y sorted so that each new column raises the running max.
    x, y, h = _data(1, 40, 3000, 2, dtype, seed=4)
    order = torch.argsort(_cost(x[:, :1].double(), y.double())[0, 0], descending=True)
    y, h = y[:, order].contiguous(), (h[:, order] + 50.0).contiguous()
    out = _fwd(x, y, h, 0.003)
    ref = _ref(x.double(), y.double(), h.double(), 0.003)
    assert _rel(out, ref, 0.003) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_minus_inf_weights(dtype):
    x, y, h = _data(2, 60, 45, 3, dtype, seed=5)
    h[0, ::3] = -torch.inf
    h[1, :] = -torch.inf  # a whole batch of zero weights: +inf everywhere
    out = _fwd(x, y, h, 0.02)
    assert not torch.isnan(out).any()
    assert torch.isinf(out[1]).all() and (out[1] > 0).all()
    ref = _ref(x[:1].double(), y[:1].double(), h[:1].double(), 0.02)
    assert _rel(out[:1], ref, 0.02) < TOL[dtype]
    # the same without the masked columns
    keep = torch.isfinite(h[0])
    out2 = _fwd(x[:1], y[:1, keep].contiguous(), h[:1, keep].contiguous(), 0.02)
    assert _rel(out[:1], out2.double(), 0.02) < TOL[dtype]
    # backward: finite, no NaN, zero gradient on the masked columns
    u = torch.randn(2, 60, dtype=dtype)
    gx, gy, gh = softmin_sqeuclid_backward(x.numpy(), y.numpy(), h.numpy(), out.numpy(), u.numpy(), 0.02, 0)
    for g in (gx, gy, gh):
        assert np.isfinite(g).all()
    assert (gh[0, ::3] == 0).all() and (gy[0, ::3] == 0).all()


def test_nan_propagates():
    x, y, h = _data(2, 20, 30, 3, torch.float32, seed=6)
    x[0, 3, 1] = torch.nan
    y[1, 7, 0] = torch.nan
    out = _fwd(x, y, h, 0.05)
    assert torch.isnan(out[0, 3]) and torch.isnan(out[1]).all()
    keep = torch.arange(20) != 3
    assert torch.isfinite(out[0, keep]).all()
    u = torch.ones(2, 20)
    gx, gy, gh = softmin_sqeuclid_backward(x.numpy(), y.numpy(), h.numpy(), out.numpy(), u.numpy(), 0.05, 0)
    assert np.isnan(gx[0, 3]).all() and np.isnan(gy[1]).all() and np.isnan(gh[1]).all()


def test_m_zero_and_n_zero():
    x, y, h = _data(2, 5, 0, 3, torch.float64)
    out = _fwd(x, y, h, 0.1)
    assert out.shape == (2, 5) and torch.isinf(out).all()
    x, y, h = _data(2, 0, 5, 3, torch.float64)
    assert _fwd(x, y, h, 0.1).shape == (2, 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("shape", [(1, 90, 70), (2, 1, 33), (2, 21, 1), (3, 150, 1100)])
def test_backward_matches_autograd(dtype, d, shape):
    B, n, m = shape
    x, y, h = _data(B, n, m, d, dtype, seed=7 + d)
    eps = 0.02
    u = torch.randn(B, n, dtype=torch.float64).to(dtype)
    xr, yr, hr = (t.double().clone().requires_grad_() for t in (x, y, h))
    (_ref(xr, yr, hr, eps) * u.double()).sum().backward()
    out = softmin_sqeuclid(x.numpy(), y.numpy(), h.numpy(), eps, 0)
    gx, gy, gh = softmin_sqeuclid_backward(x.numpy(), y.numpy(), h.numpy(), out, u.numpy(), eps, 0)
    assert gx.shape == (B, n, d) and gy.shape == (B, m, d) and gh.shape == (B, m)
    assert gx.dtype == gy.dtype == gh.dtype == out.dtype
    for g, t in ((gx, xr), (gy, yr), (gh, hr)):
        err = (torch.from_numpy(g).double() - t.grad).abs().max().item()
        assert err <= GTOL[dtype] * (t.grad.abs().max().item() + 1e-300)


def test_rejects_mixed_dtypes_and_bad_shapes():
    x, y, h = _data(1, 4, 5, 2, torch.float64)
    with pytest.raises(TypeError):
        softmin_sqeuclid(x.numpy(), y.float().numpy(), h.numpy(), 0.1, 0)
    with pytest.raises(TypeError):  # not C-contiguous: no silent copy
        softmin_sqeuclid(x.numpy()[:, ::2], y.numpy(), h.numpy(), 0.1, 0)
    with pytest.raises(ValueError):
        softmin_sqeuclid(x.numpy(), y.numpy(), h.numpy()[:, :4].copy(), 0.1, 0)
    with pytest.raises(ValueError):
        softmin_sqeuclid(x.numpy(), y.numpy(), h.numpy(), 0.0, 0)

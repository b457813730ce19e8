"""Compiled soft-min kernels at extreme |cost / eps| (issue 11, item 6): finite and right, forward and backward.

Once ``min_j (C_ij - h_j) / eps`` passed about 3e9 (float32) or 1e19 (float64) the kernels returned +-inf: the
running shift was taken from the rounded product ``(h - C) * log2(e) / eps`` and the exponent from a fused
multiply-add's exact one, which can exceed it by half an ulp of a huge number.
"""

import numpy as np
import pytest
import torch

from monge import _core
from monge.geometry import PointCloud
from monge.ops.logsumexp import dense_softmin

# (dtype, eps, offset between the clouds): |cost / eps| ~ 1.4e10 (float32), 1.4e20 and 1.4e22 (float64)
CASES = [(torch.float32, 1e-6, 100.0), (torch.float64, 1e-16, 100.0), (torch.float64, 1e-12, 1e5)]
# float32 inputs: the costs (~1e4) carry an ulp of 1e-3; float64 costs ~1e4 and ~1e10
TOL = {torch.float32: 5e-7, torch.float64: 4e-15}  # relative to the largest |value|


def _clouds(dtype, offset, n=37, m=29, d=2):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, d, generator=g, dtype=torch.float64).to(dtype)
    y = (torch.rand(m, d, generator=g, dtype=torch.float64) + offset).to(dtype)
    return x, y, g


def _sq(x, y):
    return ((x.double()[:, None] - y.double()[None]) ** 2).sum(-1)


def _reference(C, h, eps, dim):
    """float64 torch log-sum-exp on the same (rounded) inputs."""
    if dim == 1:
        return -eps * torch.logsumexp((h.double()[None] - C) / eps, -1)
    return -eps * torch.logsumexp((h.double()[:, None] - C) / eps, 0)


def _close(got, ref, dtype):
    assert torch.isfinite(got).all(), got
    scale = ref.abs().max().item()
    assert (got.double() - ref).abs().max().item() <= TOL[dtype] * scale + 1e-300


@pytest.mark.parametrize("dtype,eps,offset", CASES)
@pytest.mark.parametrize("dim", [0, 1])
def test_lazy_forward(dtype, eps, offset, dim):
    x, y, g = _clouds(dtype, offset)
    h = torch.randn(y.shape[0] if dim == 1 else x.shape[0], generator=g, dtype=torch.float64).to(dtype)
    out = PointCloud(x, y, backend="lazy").softmin(h, eps, dim)
    assert out.dtype == dtype
    _close(out, _reference(_sq(x, y), h, eps, dim), dtype)


@pytest.mark.parametrize("dtype,eps,offset", CASES)
@pytest.mark.parametrize("dim", [0, 1])
def test_dense_kernel_forward(dtype, eps, offset, dim):
    x, y, g = _clouds(dtype, offset)
    C = _sq(x, y).to(dtype)
    h = torch.randn(C.shape[1] if dim == 1 else C.shape[0], generator=g, dtype=torch.float64).to(dtype)
    out = torch.from_numpy(_core.softmin_dense(C[None].contiguous(), h[None].contiguous(), eps, dim))[0]
    _close(out, _reference(C.double(), h, eps, dim), dtype)
    if dtype == torch.float64:  # the library's dense path takes the compiled kernel for float64 on the CPU
        _close(dense_softmin(C, h, eps, dim), _reference(C, h, eps, dim), dtype)


@pytest.mark.parametrize("dtype,eps,offset", CASES)
def test_lazy_backward(dtype, eps, offset):
    x, y, g = _clouds(dtype, offset)
    h = torch.randn(y.shape[0], generator=g, dtype=torch.float64).to(dtype)
    w = torch.rand(x.shape[0], generator=g, dtype=torch.float64).to(dtype)
    xs, ys, hs = (t.clone().requires_grad_() for t in (x, y, h))
    (PointCloud(xs, ys, backend="lazy").softmin(hs, eps, 1) * w).sum().backward()
    xr, yr, hr = (t.double().requires_grad_() for t in (x, y, h))
    (_reference(_sq(xr, yr), hr, eps, 1) * w.double()).sum().backward()
    for got, ref in [(xs.grad, xr.grad), (ys.grad, yr.grad), (hs.grad, hr.grad)]:
        assert torch.isfinite(got).all()
        # the weights are a soft arg-min: each row's sum to one, so grad_h sums to -sum(w)
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        assert (got.double() - ref).abs().max().item() <= tol * (1 + ref.abs().max().item())
    assert hs.grad.sum().item() == pytest.approx(-w.sum().item(), rel=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_moderate_rows_unchanged_by_extreme_rows(dtype):
    """A batch mixing ordinary and extreme rows: each row's gradient is its own soft arg-min."""
    rng = np.random.default_rng(1)
    eps = 1e-6 if dtype == np.float32 else 1e-16
    x = rng.random((1, 6, 2)).astype(dtype)
    x[0, 3:] += 100.0  # rows 3..5 sit 100 away from y
    y = rng.random((1, 5, 2)).astype(dtype)
    h = np.zeros((1, 5), dtype)
    out = _core.softmin_sqeuclid(x, y, h, eps, 1)
    u = np.ones((1, 6), dtype)
    gx, gy, gh = _core.softmin_sqeuclid_backward(x, y, h, out, u, eps, 1)
    assert np.isfinite(out).all() and np.isfinite(gx).all() and np.isfinite(gy).all()
    assert gh.sum() == pytest.approx(-6.0, rel=1e-5)
    C = ((x[0, :, None].astype(np.float64) - y[0, None].astype(np.float64)) ** 2).sum(-1)
    nearest = y[0, C.argmin(1)].astype(np.float64)  # eps -> 0: the weights pick the nearest y
    np.testing.assert_allclose(gx[0], 2 * (x[0] - nearest), rtol=1e-4, atol=1e-3)

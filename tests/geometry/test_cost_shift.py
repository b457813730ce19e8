"""Cost offsets (issue 11, item 8): OT(C + c) = OT(C) + c * mass for any constant c, negative costs included.

The dense kernel fast path used to build exp(-C / eps) without shifting C by its minimum, so a cost with
-min(C) / eps beyond the exponent range overflowed (NaN values, inf potentials), and its certificate only looked
for sums that were too small.
"""

from __future__ import annotations

import pytest
import torch

import monge
from monge.geometry import DenseCost, PointCloud
from monge.geometry._backends.kernel import KernelDense
from monge.geometry._backends.shifted import unreliable
from monge.geometry.costs import SqEuclidean
from monge.ops.logsumexp import dense_softmin

EPS = 0.05
RTOL = {torch.float32: 2e-5, torch.float64: 1e-9}


def _data(dtype, n=6, m=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64).to(dtype)
    y = torch.rand(m, 2, generator=g, dtype=torch.float64).to(dtype)
    a = torch.rand(n, generator=g, dtype=torch.float64).to(dtype) + 0.2
    b = torch.rand(m, generator=g, dtype=torch.float64).to(dtype) + 0.2
    return x, y, a / a.sum(), b / b.sum()


def _check(shifted, base, c, dtype, mass=1.0):
    assert bool(torch.isfinite(shifted.value).all())
    ref = base.value + c * mass
    tol = RTOL[dtype] * max(1.0, abs(c))
    assert abs(float(shifted.value) - float(ref)) <= tol, (float(shifted.value), float(ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [-1e3 * EPS, 0.0, 1e3 * EPS])
def test_dense_cost_shift(dtype, c):
    x, y, a, b = _data(dtype)
    C = SqEuclidean()(x, y)
    kw = dict(eps=EPS, tol=1e-5 if dtype == torch.float32 else 1e-10, max_iter=20000)
    base = monge.solve(C, a, b, **kw)
    geom = DenseCost(C + c)
    shifted = monge.solve(geom, a, b, **kw)
    _check(shifted, base, c, dtype)
    if dtype == torch.float64:  # (a small float32 cost iterates on a float64 copy's compiled kernel instead)
        assert geom._fast.kern is not None and geom._fast.eps == EPS  # the kernel fast path ran (from the third call)
    again = monge.solve(geom, a, b, **kw)  # and a second solve starts on it
    _check(again, base, c, dtype)
    torch.testing.assert_close(shifted.plan, base.plan, rtol=0, atol=RTOL[dtype] * 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [-1e3 * EPS, 0.0, 1e3 * EPS])
def test_lazy_cost_shift(dtype, c):
    x, y, a, b = _data(dtype, seed=1)
    kw = dict(eps=EPS, tol=1e-5 if dtype == torch.float32 else 1e-10, max_iter=20000)
    base = monge.solve(PointCloud(x, y, backend="lazy"), a, b, **kw)
    shifted = monge.solve(PointCloud(x, y, cost=lambda u, v: SqEuclidean()(u, v) + c, backend="lazy", chunk=4),
                          a, b, **kw)
    _check(shifted, base, c, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [-1e3 * EPS, 0.0, 1e3 * EPS])
def test_barycenter_cost_shift(dtype, c):
    """A constant offset leaves the barycenter unchanged (each OT term moves by c * mass) and finite."""
    g = torch.Generator().manual_seed(2)
    t = torch.linspace(0, 1, 12, dtype=torch.float64)
    C = ((t[:, None] - t[None, :]) ** 2).to(dtype)
    A = torch.rand(3, 12, generator=g, dtype=torch.float64).to(dtype) + 0.1
    A = A / A.sum(-1, keepdim=True)
    kw = dict(eps=EPS, tol=1e-5 if dtype == torch.float32 else 1e-10, max_iter=20000)
    base = monge.barycenter(A, geom=C, **kw).barycenter
    shifted = monge.barycenter(A, geom=C + c, **kw).barycenter
    assert bool(torch.isfinite(shifted).all())
    torch.testing.assert_close(shifted, base, rtol=0, atol=RTOL[dtype] * 10)


def test_issue_reproducers():
    C = torch.rand(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = monge.solve(C - 1, eps=1e-2, tol=1e-9, max_iter=20000)
    ref = monge.solve(C, eps=1e-2, tol=1e-9, max_iter=20000)
    assert abs(float(res.value) - (float(ref.value) - 1)) < 1e-8
    one = monge.solve(torch.tensor([[-9.0]]), eps=0.1)
    assert float(one.value) == pytest.approx(-9.0, abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_softmin_negative_and_large_costs(dtype):
    g = torch.Generator().manual_seed(3)
    C = torch.rand(7, 5, generator=g, dtype=torch.float64).to(dtype)
    h = torch.randn(5, generator=g, dtype=torch.float64).to(dtype)
    for c in (-1e4, -1.0, 0.0, 1e4):
        for eps in (1e-3, 0.1):
            for dim, hh in ((1, h), (0, torch.randn(7, generator=g, dtype=dtype))):
                out = KernelDense(C + c, eps).softmin(hh, eps, dim)
                ref = dense_softmin((C + c).double(), hh.double(), eps, dim)
                assert bool(torch.isfinite(out).all())
                torch.testing.assert_close(out.double(), ref, rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10)


def test_certificate_flags_overflow_and_underflow():
    s = torch.tensor([1.0, 0.0, 1e-45, float("inf"), float("nan")])
    assert unreliable(s, 3).tolist() == [False, True, True, True, True]


def test_eps_scaling_starts_from_the_spread_of_a_negative_cost():
    """An offset changes no plan: eps-scaling's first temperature is the spread max C - min C when C < 0."""
    C = torch.rand(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert DenseCost(C - 50).cost_scale() == pytest.approx(float(C.max() - C.min()))
    assert DenseCost(C).cost_scale() == float(C.max())
    base = monge.solve(C, eps=0.01, schedule=monge.EpsScaling())
    shifted = monge.solve(C - 50, eps=0.01, schedule=monge.EpsScaling())
    assert bool(shifted.convergence.converged)
    assert float(shifted.value) == pytest.approx(float(base.value) - 50, abs=1e-7)

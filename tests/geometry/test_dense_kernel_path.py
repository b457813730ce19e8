"""DenseCost's kernel fast path (repeated soft-mins at one eps through exp(-C/eps) products) == the log-sum-exp."""

from __future__ import annotations

import pytest
import torch

from monge.geometry import DenseCost
from monge.ops.logsumexp import dense_softmin


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("eps", [0.5, 0.05, 1e-3])
def test_repeated_calls_match_the_log_sum_exp(dtype, eps):
    g = torch.Generator().manual_seed(0)
    C = torch.rand(40, 30, generator=g, dtype=torch.float64).to(dtype)
    h = torch.randn(5, 30, generator=g, dtype=torch.float64).to(dtype) * 0.3
    geom = DenseCost(C)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    for _ in range(5):  # the kernel is built from the third call on
        torch.testing.assert_close(geom.softmin(h, eps, 1), dense_softmin(C, h, eps, 1), **tol)
        f = torch.randn(5, 40, generator=g, dtype=torch.float64).to(dtype)
        torch.testing.assert_close(geom.softmin(f, eps, 0), dense_softmin(C, f, eps, 0), **tol)


def test_kernel_is_used_then_refused_where_it_underflows():
    g = torch.Generator().manual_seed(1)
    C = torch.rand(50, 50, generator=g, dtype=torch.float64)
    geom = DenseCost(C)
    h = torch.zeros(50, dtype=torch.float64)
    for _ in range(4):
        geom.softmin(h, 0.1, 1)
    assert geom._fast.kern is not None  # built and kept at a comfortable eps
    h_wild = torch.linspace(0, 50.0, 50, dtype=torch.float64)  # spread / eps = 5e4: most sums underflow
    for _ in range(4):
        out = geom.softmin(h_wild, 1e-3, 1)
        torch.testing.assert_close(out, dense_softmin(C, h_wild, 1e-3, 1), rtol=1e-12, atol=1e-12)
    assert 1e-3 in geom._fast.refused


def test_gradients_flow_through_h_and_cost_gradients_use_the_exact_path():
    g = torch.Generator().manual_seed(2)
    C = torch.rand(6, 7, generator=g, dtype=torch.float64)
    geom = DenseCost(C)
    h = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    for _ in range(3):
        geom.softmin(h.detach(), 0.1, 1)
    assert torch.autograd.gradcheck(lambda t: geom.softmin(t, 0.1, 1), (h,))
    Cg = C.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda c: DenseCost(c).softmin(h.detach(), 0.1, 1), (Cg,))

"""The plan as an operator: P v, P^T v, <P, C> and the barycentric map without the (n, m) plan."""

from __future__ import annotations

import pytest
import torch

import monge
from monge.geometry import PointCloud

F64 = torch.float64


def _clouds(n=60, m=45, batch=(), seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*batch, n, 2, generator=g, dtype=dtype), torch.rand(*batch, m, 2, generator=g, dtype=dtype) + 0.3


@pytest.mark.parametrize("backend", ["dense", "lazy"])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_apply_plan_matches_the_dense_plan(backend, batch):
    x, y = _clouds(batch=batch)
    res = monge.Sinkhorn(eps=0.05)(monge.LinearProblem(PointCloud(x, y, backend=backend)))
    P = res.plan
    g = torch.Generator().manual_seed(1)
    v = torch.randn(*batch, 45, generator=g, dtype=F64)  # signed
    u = torch.randn(*batch, 60, generator=g, dtype=F64)
    torch.testing.assert_close(res.apply_plan(v), (P @ v.unsqueeze(-1)).squeeze(-1), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(res.apply_plan(u, dim=0), (P.mT @ u.unsqueeze(-1)).squeeze(-1), rtol=1e-10,
                               atol=1e-13)
    stacked = torch.stack([v, v.abs()])  # several vectors at once, in front
    torch.testing.assert_close(res.apply_plan(stacked)[1], res.apply_plan(v.abs()))


def test_apply_plan_on_a_grid():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(6, 7, generator=g, dtype=F64)
    b = torch.rand(6, 7, generator=g, dtype=F64)
    res = monge.solve_grid(a / a.sum(), b / b.sum(), eps=0.02)
    v = torch.randn(6, 7, generator=g, dtype=F64)
    torch.testing.assert_close(res.apply_plan(v).reshape(-1), res.plan @ v.reshape(-1), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-9), (torch.float32, 2e-4)])
def test_lazy_transport_cost_and_map_match_dense(dtype, tol):
    x, y = _clouds(n=300, m=250, dtype=dtype)
    solver = monge.Sinkhorn(eps=0.01)
    lazy = solver(monge.LinearProblem(PointCloud(x, y, backend="lazy")))
    dense = solver(monge.LinearProblem(PointCloud(x, y, backend="dense")))
    torch.testing.assert_close(lazy.transport_cost, dense.transport_cost, rtol=tol, atol=tol * 1e-2)
    torch.testing.assert_close(lazy.transport(), dense.transport(), rtol=tol, atol=tol)


def test_lazy_transport_cost_is_differentiable_like_the_dense_one():
    x, y = _clouds(n=30, m=20)
    grads = []
    for backend in ("lazy", "dense"):
        xr = x.clone().requires_grad_()
        res = monge.Sinkhorn(eps=0.05, tol=1e-12, max_iter=20000)(monge.LinearProblem(PointCloud(xr, y, backend=backend)))
        (gx,) = torch.autograd.grad(res.transport_cost, xr)
        grads.append(gx)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-7, atol=1e-9)


def test_apply_plan_rejects_a_bad_dim():
    x, y = _clouds()
    res = monge.solve_points(x, y, eps=0.1)
    with pytest.raises(ValueError, match="dim"):
        res.apply_plan(torch.ones(45, dtype=F64), dim=2)

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


# ---------------------------------------------------------------- issue 11, item 1: batch sizes that collide
@pytest.mark.parametrize("backend", ["dense", "lazy"])
@pytest.mark.parametrize("B", [2, 4, 5, 3])  # B = d, B = m, B = n, and none of them
def test_batched_weights_one_pair_of_clouds_every_result_path(backend, B):
    """Batched weights against one pair of clouds: every result path equals the per-row solves (and the other
    backend); it used to move the point dimension to the front as a batch (wrong numbers when B = d)."""
    g = torch.Generator().manual_seed(B)
    x, y = torch.rand(5, 2, generator=g, dtype=F64), torch.rand(4, 2, generator=g, dtype=F64)
    a = torch.softmax(torch.randn(B, 5, generator=g, dtype=F64), -1)
    v = torch.randn(B, 4, generator=g, dtype=F64)
    xq = torch.rand(7, 2, generator=g, dtype=F64)
    kw = dict(eps=0.1, backend=backend, tol=1e-12, max_iter=20000)
    res = monge.solve_points(x, y, a, **kw)
    other = monge.solve_points(x, y, a, **{**kw, "backend": "lazy" if backend == "dense" else "dense"})
    torch.testing.assert_close(res.transport_cost, other.transport_cost, rtol=1e-9, atol=1e-12)
    assert res.transport_cost.shape == (B,) and res.transport().shape == (B, 5, 2)
    for i in range(B):
        one = monge.solve_points(x, y, a[i], **kw)
        torch.testing.assert_close(res.transport_cost[i], one.transport_cost, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(res.transport()[i], one.transport(), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(res.transport(xq)[i], one.transport(xq), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(res.apply_plan(v)[i], one.apply_plan(v[i]), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(res.marginals[0][i], one.marginals[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(res.marginals[1][i], one.marginals[1], rtol=1e-9, atol=1e-12)
        P = one.plan
        torch.testing.assert_close(one.transport_cost, (P * PointCloud(x, y).cost()).sum(), rtol=1e-9, atol=1e-12)


def test_issue_11_reproducer_transport_cost_batch_equal_to_d():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 2, generator=g, dtype=F64), torch.rand(4, 2, generator=g, dtype=F64)
    a = torch.softmax(torch.randn(2, 5, generator=g, dtype=F64), -1)
    lazy = monge.solve_points(x, y, a, eps=0.1, backend="lazy").transport_cost
    dense = monge.solve_points(x, y, a, eps=0.1, backend="dense").transport_cost
    rows = torch.stack([monge.solve_points(x, y, a[i], eps=0.1, backend="lazy").transport_cost for i in range(2)])
    torch.testing.assert_close(lazy, dense, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(lazy, rows, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean", "sqeuclidean_half"])
def test_transport_map_by_tiles_matches_the_dense_softmax(cost):
    """The out-of-sample map runs by tiles of query points (chunk=7 here: several tiles and a ragged last one)."""
    x, y = _clouds(n=40, m=30)
    res = monge.Sinkhorn(eps=0.05)(monge.LinearProblem(PointCloud(x, y, cost=cost, backend="lazy", chunk=7)))
    xq = torch.rand(23, 2, dtype=F64) * 2
    C = PointCloud(xq, y, cost=cost).cost()
    w = torch.softmax((res.g + 0.05 * torch.log(res.problem.b) - C) / 0.05, -1)
    torch.testing.assert_close(res.transport(xq), w @ y, rtol=1e-10, atol=1e-12)
    xr = xq.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(res.transport(xr).sum(), xr)
    xd = xq.clone().requires_grad_(True)
    Cd = PointCloud(xd, y, cost=cost).cost()
    (gd,) = torch.autograd.grad((torch.softmax((res.g + 0.05 * torch.log(res.problem.b) - Cd) / 0.05, -1) @ y).sum(),
                                xd)
    torch.testing.assert_close(gx, gd, rtol=1e-8, atol=1e-10)


def test_transport_needs_points_and_checks_the_dimension():
    res = monge.solve(torch.rand(3, 4, dtype=F64), eps=0.1)
    with pytest.raises(TypeError, match="transport: needs a geometry with points"):
        res.transport()
    x, y = _clouds(n=6, m=5)
    with pytest.raises(ValueError, match=r"x: expected points of shape \(..., k, d\) with d = 2"):
        monge.solve_points(x, y, eps=0.1).transport(torch.rand(4, 3, dtype=F64))

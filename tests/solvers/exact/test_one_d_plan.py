"""1-D OT with its plan and dual potentials: exact LP (HiGHS), the network simplex, duality, batches, gradients."""

import numpy as np
import pytest
import torch

import monge
from monge.solvers.exact.one_d import solve_1d, wasserstein_1d
from conftest import lp_reference

F64 = torch.float64


def _instance(rng, n, m, kind):
    x, y = rng.normal(size=n), rng.normal(0.5, 2.0, size=m)
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    if kind == "tied_positions":
        x, y = np.round(x), np.round(y)
    if kind == "tied_levels":  # cumulative weights coincide: the north-west corner rule takes degenerate steps
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    if kind == "zeros" and n > 1 and m > 1:
        a[rng.integers(n)] = 0.0
        b[rng.integers(m)] = 0.0
        a, b = a / a.sum(), b / b.sum()
    return [torch.from_numpy(v) for v in (x, y, a, b)]


def _check_certificates(res, x, y, a, b, p, tol=1e-9):
    C = (x[..., :, None] - y[..., None, :]).abs() ** p
    slack = C - res.f[..., :, None] - res.g[..., None, :]
    assert float(slack.min()) >= -tol  # dual feasible everywhere
    P = res.plan
    assert float((slack * (P > 0)).abs().max()) <= tol  # complementary slackness on the support
    assert float(res.convergence.duality_gap.abs().max()) <= tol
    torch.testing.assert_close(P.sum(-1), a)
    torch.testing.assert_close(P.sum(-2), b)
    assert int((P > 0).sum(-1).sum(-1).max()) <= x.shape[-1] + y.shape[-1] - 1
    torch.testing.assert_close(res.value, (P * C).sum((-2, -1)))


@pytest.mark.parametrize("kind", ["random", "tied_positions", "tied_levels", "zeros"])
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_value_plan_and_potentials_against_highs(kind, p):
    rng = np.random.default_rng(int(p * 10))
    for n, m in [(1, 1), (1, 4), (5, 3), (6, 6), (7, 11)]:
        x, y, a, b = _instance(rng, n, m, kind)
        res = solve_1d(x, y, a, b, p=p)
        C = (x[:, None] - y[None, :]).abs() ** p
        assert abs(float(res.value) - lp_reference(C.numpy(), a.numpy(), b.numpy())) < 1e-9
        torch.testing.assert_close(res.value, wasserstein_1d(x, y, a, b, p=p) ** p)
        _check_certificates(res, x, y, a, b, p)
        assert bool(res.convergence.converged)


@pytest.mark.parametrize("kind", ["random", "tied_levels", "zeros"])
def test_plan_equals_the_network_simplex_plan(kind):
    # distinct points and a strictly convex cost: the optimal plan is unique, so both solvers must return it
    rng = np.random.default_rng(3)
    for n, m in [(4, 4), (5, 8), (9, 3)]:
        x, y, a, b = _instance(rng, n, m, kind)
        res = solve_1d(x, y, a, b, p=2)
        ns = monge.solve_points(x[:, None], y[:, None], a, b)
        torch.testing.assert_close(res.plan, ns.plan, atol=1e-12, rtol=0)
        torch.testing.assert_close(res.value, ns.value)


def test_tied_positions_plan_is_optimal_though_not_unique():
    x = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64)
    y = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    res = solve_1d(x, y, p=2)
    ns = monge.solve_points(x[:, None], y[:, None])
    torch.testing.assert_close(res.value, ns.value)
    _check_certificates(res, x, y, torch.full((4,), 0.25, dtype=F64), torch.full((3,), 1 / 3, dtype=F64), 2)


@pytest.mark.parametrize("B", [6, 4])  # B = n, B = m
def test_batched_equals_looped(B):
    g = torch.Generator().manual_seed(B)
    n, m = 6, 4
    x = torch.randn(B, n, dtype=F64, generator=g)
    y = torch.randn(B, m, dtype=F64, generator=g)
    a = torch.rand(B, n, dtype=F64, generator=g) + 0.1
    a = a / a.sum(-1, keepdim=True)
    res = solve_1d(x, y, a, p=1.5)
    assert res.value.shape == (B,) and res.f.shape == (B, n) and res.plan.shape == (B, n, m)
    for i in range(B):
        one = solve_1d(x[i], y[i], a[i], p=1.5)
        torch.testing.assert_close(res.value[i], one.value)
        torch.testing.assert_close(res.plan[i], one.plan)
        torch.testing.assert_close(res.f[i], one.f)
    _check_certificates(res, x, y, a, torch.full((B, m), 1 / m, dtype=F64), 1.5)
    # broadcasting: one y for every x
    res2 = solve_1d(x, y[0], a, p=1.5)
    torch.testing.assert_close(res2.value[0], res.value[0])


def test_gradients_points_and_weights():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, dtype=F64, generator=g, requires_grad=True)
    y = torch.randn(7, dtype=F64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, v: solve_1d(u, v, p=2).value, (x, y))
    a = torch.rand(5, dtype=F64, generator=g) + 0.2
    a = (a / a.sum()).requires_grad_(True)
    res = solve_1d(x.detach(), y.detach(), a, p=2)
    (ga,) = torch.autograd.grad(res.value, a)
    d = torch.randn(5, dtype=F64, generator=g)
    d = d - d.mean()  # a mass-preserving direction
    h = 1e-6
    fd = (solve_1d(x.detach(), y.detach(), a.detach() + h * d).value
          - solve_1d(x.detach(), y.detach(), a.detach() - h * d).value) / (2 * h)
    assert abs(float(fd) - float(ga @ d)) < 1e-6


def test_transport_is_the_monotone_map_and_float32_works():
    x = torch.tensor([3.0, 1.0, 2.0])
    y = torch.tensor([10.0, 30.0, 20.0])
    res = solve_1d(x, y)
    assert res.value.dtype == torch.float32
    torch.testing.assert_close(res.transport().flatten(), torch.tensor([30.0, 10.0, 20.0]))
    torch.testing.assert_close(res.inverse_transport().flatten(), torch.tensor([1.0, 3.0, 2.0]))
    torch.testing.assert_close(res.transport(torch.tensor([[1.5]])), torch.tensor([[10.5]]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="p"):
        solve_1d(torch.rand(3), torch.rand(3), p=0.5)
    with pytest.raises(ValueError, match="a: expected weights"):
        solve_1d(torch.rand(3), torch.rand(3), a=torch.ones(4) / 4)
    with pytest.raises(ValueError, match="same total mass"):
        solve_1d(torch.rand(3), torch.rand(2), a=torch.ones(3), b=torch.ones(2))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(1, 7), st.floats(1.0, 3.0), st.integers(0, 10**6))
def test_certificates_and_transpose_symmetry_hypothesis(n, m, p, seed):
    rng = np.random.default_rng(seed)
    x, y = torch.from_numpy(rng.integers(-3, 4, n).astype(float)), torch.from_numpy(rng.integers(-3, 4, m) * 0.5)
    a = torch.from_numpy(rng.integers(0, 4, n) + (np.arange(n) == 0)).double()  # integer masses: tied levels
    b = torch.from_numpy(rng.integers(0, 4, m) + (np.arange(m) == 0)).double()
    a, b = a / a.sum(), b / b.sum()
    res = solve_1d(x, y, a, b, p=p)
    _check_certificates(res, x, y, a, b, p, tol=1e-9)
    rev = solve_1d(y, x, b, a, p=p)
    assert abs(float(rev.value) - float(res.value)) < 1e-12

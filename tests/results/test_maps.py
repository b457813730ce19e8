"""Transport maps of every result type: exact barycentric projection, out-of-sample extensions, inverse maps."""

import pytest
import torch

import monge
from monge.results.maps import extend_map

D = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _dense_projection(P, y):
    return (P @ y) / P.sum(-1, keepdim=True)


@pytest.mark.parametrize("batch", [(), (5,), (3,)])  # B = n (5) and B = d (3) collide with other dimensions
def test_exact_transport_is_the_plans_barycentric_projection(batch):
    g = _gen(1)
    x = torch.randn(*batch, 5, 3, dtype=D, generator=g)
    y = torch.randn(*batch, 7, 3, dtype=D, generator=g)
    a = torch.rand(*batch, 5, dtype=D, generator=g) + 0.1
    b = torch.rand(*batch, 7, dtype=D, generator=g) + 0.1
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    res = monge.solve_points(x, y, a, b)
    P = res.plan
    torch.testing.assert_close(res.transport(), _dense_projection(P, y))
    torch.testing.assert_close(res.inverse_transport(), _dense_projection(P.mT, x))
    # looped == batched
    if batch:
        for i in range(batch[0]):
            one = monge.solve_points(x[i], y[i], a[i], b[i])
            torch.testing.assert_close(one.transport(), res.transport()[i])


def test_exact_permutation_map_and_its_inverse():
    g = _gen(2)
    x = torch.randn(20, 2, dtype=D, generator=g)
    perm = torch.randperm(20, generator=g)
    y = x[perm] * 2.0 + 1.0  # an increasing affine map of a point set: the optimal matching is the map itself
    res = monge.solve_points(x, y)
    torch.testing.assert_close(res.transport(), 2.0 * x + 1.0)
    torch.testing.assert_close(res.inverse_transport(), x[perm])
    torch.testing.assert_close(res.inverse_transport(res.transport()), x)


def test_nearest_extension_translates_the_nearest_arrow():
    g = _gen(3)
    x = torch.randn(30, 2, dtype=D, generator=g)
    y = torch.randn(30, 2, dtype=D, generator=g) + 3.0
    res = monge.solve_points(x, y)
    T = res.transport()
    q = x[:4] + 1e-3 * torch.randn(4, 2, dtype=D, generator=g)
    torch.testing.assert_close(res.transport(q), T[:4] + (q - x[:4]))
    # on the samples themselves the extension is the projection
    torch.testing.assert_close(res.transport(x), T)
    # the inverse extension, on targets
    torch.testing.assert_close(res.inverse_transport(y), res.inverse_transport())


def test_kernel_extension_recovers_a_translation_everywhere_and_is_smooth():
    g = _gen(4)
    x = torch.rand(25, 2, dtype=D, generator=g)
    res = monge.solve_points(x, x + torch.tensor([2.0, -1.0], dtype=D))
    q = torch.rand(40, 2, dtype=D, generator=g) * 3.0 - 1.0
    torch.testing.assert_close(res.transport(q, extension="kernel"), q + torch.tensor([2.0, -1.0], dtype=D))
    # a tiny bandwidth reproduces the samples' projection
    torch.testing.assert_close(res.transport(x, extension="kernel", bandwidth=1e-4), res.transport())
    qq = q[:3].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: res.transport(z, extension="kernel", bandwidth=0.3), (qq,))


def test_zero_weight_sources_are_extended_not_nan():
    x = torch.tensor([[0.0], [1.0], [0.9]], dtype=D)
    y = torch.tensor([[10.0], [11.0]], dtype=D)
    a = torch.tensor([0.5, 0.5, 0.0], dtype=D)
    res = monge.solve_points(x, y, a)
    T = res.transport()
    assert torch.isfinite(T).all()
    torch.testing.assert_close(T[2], T[1] + (x[2] - x[1]))  # the massless point moves with its nearest neighbour


def test_exact_map_gradients_flow_to_queries_and_targets():
    g = _gen(5)
    x = torch.randn(6, 2, dtype=D, generator=g)
    y = torch.randn(6, 2, dtype=D, generator=g, requires_grad=True)
    res = monge.solve_points(x, y)
    q = torch.randn(3, 2, dtype=D, generator=g, requires_grad=True)
    res.transport(q).sum().backward()
    torch.testing.assert_close(q.grad, torch.ones_like(q))
    assert y.grad is not None and float(y.grad.abs().sum()) > 0


@pytest.mark.parametrize("batch", [(), (4,)])
def test_sinkhorn_inverse_map_is_the_transposed_projection(batch):
    g = _gen(6)
    x = torch.randn(*batch, 4, 2, dtype=D, generator=g)
    y = torch.randn(*batch, 6, 2, dtype=D, generator=g)
    res = monge.solve_points(x, y, eps=0.5, tol=1e-10, backend="dense")
    P = res.plan
    torch.testing.assert_close(res.inverse_transport(), _dense_projection(P.mT, x), atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(res.transport(), _dense_projection(P, y), atol=1e-7, rtol=1e-6)
    # out of sample on the targets' side: the formula with the source potential
    q = torch.randn(*batch, 3, 2, dtype=D, generator=g)
    la = res.f + res.eps * torch.log(res.problem.a)
    w = torch.softmax((la.unsqueeze(-2) - torch.cdist(q, x) ** 2) / res.eps, -1)
    torch.testing.assert_close(res.inverse_transport(q), w @ x)


def test_lazy_sinkhorn_inverse_map_and_callable_cost():
    g = _gen(7)
    x = torch.randn(30, 2, dtype=D, generator=g)
    y = torch.randn(20, 2, dtype=D, generator=g)
    lazy = monge.solve_points(x, y, eps=0.3, backend="lazy", tol=1e-10)
    dense = monge.solve_points(x, y, eps=0.3, backend="dense", tol=1e-10)
    torch.testing.assert_close(lazy.inverse_transport(), dense.inverse_transport())
    asym = lambda u, v: torch.cdist(u, v) ** 2 + u[..., :1] * 0.1  # noqa: E731  (depends on the source side)
    res = monge.solve_points(x, y, cost=asym, eps=0.3, tol=1e-10)
    P = res.plan
    torch.testing.assert_close(res.inverse_transport(), _dense_projection(P.mT, x), atol=1e-7, rtol=1e-6)


def test_bad_inputs_name_the_argument():
    x = torch.rand(4, 2, dtype=D)
    res = monge.solve_points(x, x + 1)
    with pytest.raises(ValueError, match="x: expected points"):
        res.transport(torch.rand(3, 5, dtype=D))
    with pytest.raises(ValueError, match="extension"):
        res.transport(x, extension="linear")
    with pytest.raises(ValueError, match="bandwidth"):
        res.transport(x, extension="kernel", bandwidth=-1.0)
    with pytest.raises(TypeError, match="dtype"):
        res.transport(x.float())
    with pytest.raises(TypeError, match="points"):
        monge.solve(torch.rand(3, 3, dtype=D)).transport()
    with pytest.raises(TypeError, match="inverse_transport"):
        monge.solve(torch.rand(3, 3, dtype=D), eps=0.1).inverse_transport()


def test_extend_map_nearest_skips_massless_samples():
    xs = torch.tensor([[0.0], [1.0]], dtype=D)
    T = torch.tensor([[5.0], [7.0]], dtype=D)
    out = extend_map(torch.tensor([[0.1]], dtype=D), xs, T, torch.tensor([0.0, 1.0], dtype=D))
    torch.testing.assert_close(out, torch.tensor([[6.1]], dtype=D))


def test_sparse_plan_of_single_and_batched_exact_results():
    """SparsePlan (shared by ExactResult and ExactGWResult): sparse, dense and marginals agree, batched or not."""
    g = torch.Generator().manual_seed(0)
    for shape in [(5, 4), (4, 5, 4)]:  # a batch of B = 4 = m problems
        res = monge.solve(torch.rand(*shape, dtype=torch.float64, generator=g))
        dense = res.plan
        torch.testing.assert_close(res.plan_sparse.to_dense(), dense)
        torch.testing.assert_close(res.marginals[0], dense.sum(-1))
        torch.testing.assert_close(res.marginals[1], dense.sum(-2))

"""The multiscale point-cloud backend equals the lazy one (soft-mins, Sinkhorn potentials, values, gradients,
divergences) to its certified truncation, for any dimension and the costs it bounds; it keeps few blocks on
separated clusters; batched clouds and unbounded costs are refused with a clear error."""

import math

import pytest
import torch

import monge
from monge.geometry import PointCloud
from monge.geometry._backends.lazy import lazy_softmin
from monge.geometry._backends import multiscale as ms
from monge.geometry._backends.multiscale import MultiscaleSoftmin
from monge.geometry.costs import Cosine, Euclidean, SqEuclidean
from monge.problems import LinearProblem
from monge.solvers.schedules import EpsScaling
from monge.solvers.sinkhorn import Sinkhorn

D = torch.float64


@pytest.fixture(autouse=True)
def blocks_always(monkeypatch):
    """The block path at every kept fraction (these small clouds keep most pairs, which runs the lazy soft-min
    by default); the dense fallback has its own test."""
    monkeypatch.setattr(ms, "DENSE_FRACTION", math.inf)


def _clouds(n, m, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=D)
    y = torch.rand(m, d, generator=g, dtype=D) * 0.8 + 0.3
    a = torch.rand(n, generator=g, dtype=D) + 0.1
    b = torch.rand(m, generator=g, dtype=D) + 0.1
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("d", [2, 3, 5, 10])
@pytest.mark.parametrize("cost", [SqEuclidean(), SqEuclidean(scale=0.5), Euclidean(1.0), Euclidean(1.5), Cosine()])
def test_softmin_and_its_gradients_equal_lazy(d, cost):
    x, y, _, _ = _clouds(300, 220, d)
    x.requires_grad_()
    g = torch.Generator().manual_seed(1)
    eps = 0.01
    red = MultiscaleSoftmin(cost, x, y, leaf_size=16)
    for dim, k, w in ((1, 220, torch.rand(300, dtype=D)), (0, 300, torch.rand(220, dtype=D))):
        h = (0.05 * torch.randn(k, generator=g, dtype=D)).requires_grad_()
        ms = red.softmin(x, y, h, eps, dim)
        lz = lazy_softmin(x, y, h, eps, dim, cost)
        assert (ms - lz).abs().max() <= eps * 1e-12 + 1e-12
        for a, b in zip(torch.autograd.grad((ms * w).sum(), (x, h)), torch.autograd.grad((lz * w).sum(), (x, h))):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


def _solve(backend, x, y, a, b, eps, **kw):
    geom = PointCloud(x, y, backend=backend)
    return Sinkhorn(eps=eps, tol=1e-9, schedule=EpsScaling(0.5), **kw)(LinearProblem(geom, a, b))


@pytest.mark.parametrize("d", [2, 3, 5, 10])
def test_sinkhorn_equals_lazy_potentials_value_gradients(d):
    x, y, a, b = _clouds(400, 260, d, seed=d)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    ws = [a.clone().requires_grad_() for _ in range(2)]
    res = [_solve(be, xi, y, wi, b, 0.005) for be, xi, wi in zip(("multiscale", "lazy"), xs, ws)]
    ms, lz = res
    assert ms.convergence.all_converged and lz.convergence.all_converged
    f0, g0 = ms.f - ms.f.mean(), lz.f - lz.f.mean()  # potentials up to the constant (f + c, g - c)
    assert (f0 - g0).abs().max() < 1e-6 and (ms.g + ms.f.mean() - lz.g - lz.f.mean()).abs().max() < 1e-6
    assert abs(float(ms.value.detach() - lz.value.detach())) < 1e-8
    (ms.value).backward()
    (lz.value).backward()
    assert torch.allclose(xs[0].grad, xs[1].grad, rtol=1e-5, atol=1e-8)
    assert torch.allclose(ws[0].grad - ws[0].grad.mean(), ws[1].grad - ws[1].grad.mean(), atol=1e-6)


def test_unbalanced_and_warm_start_equal_lazy():
    x, y, a, b = _clouds(300, 200, 3)
    kw = dict(eps=0.01, tol=1e-9, schedule=EpsScaling(0.5))
    res = [Sinkhorn(**kw)(LinearProblem(PointCloud(x, y, backend=be), a, 1.3 * b, rho_a=0.5, rho_b=0.5))
           for be in ("multiscale", "lazy")]
    assert abs(float(res[0].value - res[1].value)) < 1e-8
    warm = Sinkhorn(**kw)(LinearProblem(PointCloud(x, y, backend="multiscale"), a, b), init=(res[1].f, res[1].g))
    assert warm.convergence.all_converged


def test_sinkhorn_divergence_and_loss_equal_lazy():
    x, y, a, b = _clouds(500, 400, 3, seed=3)
    out = []
    for be in ("multiscale", "lazy"):
        xi = x.clone().requires_grad_()
        s = monge.sinkhorn_divergence(xi, y, a, b, eps=0.003, backend=be, tol=1e-9)
        s.backward()
        out.append((s.detach(), xi.grad))
    assert abs(float(out[0][0] - out[1][0])) <= 1e-9 * max(1.0, float(out[1][0]))
    assert torch.allclose(out[0][1], out[1][1], rtol=1e-5, atol=1e-9)
    loss = monge.nn.SinkhornLoss(blur=0.05, backend="multiscale", tol=1e-9)
    ref = monge.nn.SinkhornLoss(blur=0.05, backend="lazy", tol=1e-9)
    assert abs(float(loss(x, y) - ref(x, y))) < 1e-9
    sp = monge.solve_points(x, y, a, b, eps=0.01, backend="multiscale", tol=1e-9)
    assert abs(float(sp.value - monge.solve_points(x, y, a, b, eps=0.01, backend="lazy", tol=1e-9).value)) < 1e-9


def test_float32_divergence_close_to_lazy():
    x, y, _, _ = _clouds(2000, 1500, 3, seed=5)
    x, y = x.float(), y.float()
    v = [float(monge.sinkhorn_divergence(x, y, eps=0.005, backend=be)) for be in ("multiscale", "lazy")]
    assert abs(v[0] - v[1]) <= 1e-4 * abs(v[1])


def test_separated_clusters_keep_few_blocks():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0], [10.0, 0.0], [10.0, 5.0]], dtype=D)
    x = (centres[:, None, :] + 0.2 * torch.randn(6, 300, 2, generator=g, dtype=D)).reshape(-1, 2)
    y = (centres[:, None, :] + 0.2 * torch.randn(6, 250, 2, generator=g, dtype=D) + 0.05).reshape(-1, 2)
    geom = PointCloud(x, y, backend="multiscale")
    res = Sinkhorn(eps=0.01, tol=1e-9, schedule=EpsScaling(0.5))(LinearProblem(geom, None, None))
    ref = Sinkhorn(eps=0.01, tol=1e-9, schedule=EpsScaling(0.5))(LinearProblem(PointCloud(x, y, backend="lazy")))
    assert abs(float(res.value - ref.value)) < 1e-8
    stats = geom._impl.stats
    assert stats["kept_fraction"] < 0.3  # 6 blobs: 1/6 of the blocks within blobs, plus cells across blob edges


def test_certificate_reselects_when_the_potential_moves():
    x, y, _, _ = _clouds(400, 300, 2)
    red = MultiscaleSoftmin(SqEuclidean(), x, y, leaf_size=16)
    h = torch.zeros(300, dtype=D)
    red.softmin(x, y, h, 0.002, 1)
    h2 = 0.5 * (y[:, 0] > 0.8).to(D)  # favours another region: the old block list no longer suffices
    out = red.softmin(x, y, h2, 0.002, 1)
    assert (out - lazy_softmin(x, y, h2, 0.002, 1, SqEuclidean())).abs().max() <= 0.002 * 1e-12 + 1e-12
    assert red.stats["reselections"] >= 1


def test_refusals_name_the_argument():
    x = torch.rand(2, 10, 3)
    with pytest.raises(ValueError, match="unbatched"):
        PointCloud(x, x, backend="multiscale")
    with pytest.raises(ValueError, match="cost bounded by distances"):
        PointCloud(torch.rand(5, 2), torch.rand(4, 2), cost=lambda u, v: (u[:, None] - v[None]).abs().sum(-1),
                   backend="multiscale")
    geom = PointCloud(torch.rand(5, 2), torch.rand(4, 2), backend="multiscale")
    with pytest.raises(ValueError, match="one problem at a time"):
        geom.softmin(torch.zeros(3, 4), 0.1, 1)


def _block_reference(xp, yp, hp, ptr, cols, eps):
    """The block-sparse soft-min in plain torch (float64): each row leaf against its listed column leaves."""
    out = []
    for i in range(xp.shape[0]):
        J = cols[ptr[i]:ptr[i + 1]]
        yy, hh = yp[J].reshape(-1, yp.shape[2]), hp[J].reshape(-1)
        C = ((xp[i][:, None, :] - yy[None]) ** 2).sum(-1)
        out.append(-eps * torch.logsumexp((hh[None] - C) / eps, -1))
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 3, 7, 10, 12])  # compiled for d = 1, 3, 10; the runtime-d path for 7 and 12
def test_block_kernel_forward_backward_equal_torch(d, dtype):
    from monge._core import softmin_sqeuclid_blocks, softmin_sqeuclid_blocks_backward

    g = torch.Generator().manual_seed(d)
    Kr, Sr, Kc, Sc, eps = 5, 7, 6, 11, 0.05  # odd tile sizes: SIMD padding inside the kernel
    xp = torch.rand(Kr, Sr, d, generator=g, dtype=D)
    yp = torch.rand(Kc, Sc, d, generator=g, dtype=D)
    hp = 0.1 * torch.randn(Kc, Sc, generator=g, dtype=D)
    hp[2, 3:] = -torch.inf  # padding slots of a short leaf
    keep = torch.rand(Kr, Kc, generator=g) < 0.5
    keep[:, 0] = True
    keep[3] = False  # a row leaf with no kept block: +inf
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), keep.sum(1).cumsum(0)])
    cols = keep.nonzero()[:, 1].contiguous()
    args = [t.to(dtype).contiguous() for t in (xp, yp, hp)]
    out = torch.from_numpy(softmin_sqeuclid_blocks(*(t.numpy() for t in args), ptr.numpy(), cols.numpy(), eps, 2))
    ref = _block_reference(xp, yp, hp, ptr, cols, eps)
    assert out.dtype == dtype and bool(torch.isinf(out[3]).all())
    fin = torch.isfinite(ref)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(out[fin].double(), ref[fin], rtol=tol, atol=tol * eps)
    u = torch.rand(Kr, Sr, generator=g, dtype=D)
    u[3] = 0.0
    o = torch.where(fin, out, 0.0).to(dtype)
    gx, gy, gh = (torch.from_numpy(t) for t in softmin_sqeuclid_blocks_backward(
        *(t.numpy() for t in args), ptr.numpy(), cols.numpy(), o.numpy(), u.to(dtype).numpy(), eps, 2))
    xr, yr, hr = (t.clone().requires_grad_() for t in (xp, yp, hp))
    val = _block_reference(xr, yr, hr, ptr, cols, eps)
    rx, ry, rh = torch.autograd.grad((torch.where(fin, val, 0.0) * u).sum(), (xr, yr, hr))
    rh = torch.where(torch.isfinite(hp), rh, 0.0)
    for got, want in ((gx, rx), (gy, ry), (gh, rh)):
        assert torch.allclose(got.double(), want, rtol=10 * tol, atol=10 * tol)


def test_block_kernel_refuses_bad_lists():
    from monge._core import softmin_sqeuclid_blocks

    x, y, h = torch.rand(2, 3, 2).numpy(), torch.rand(3, 4, 2).numpy(), torch.zeros(3, 4).numpy()
    with pytest.raises(ValueError, match="cols"):
        softmin_sqeuclid_blocks(x, y, h, torch.tensor([0, 1, 2]).numpy(), torch.tensor([0, 5]).numpy(), 0.1)
    with pytest.raises(ValueError, match="ptr"):
        softmin_sqeuclid_blocks(x, y, h, torch.tensor([0, 1]).numpy(), torch.tensor([0]).numpy(), 0.1)


@pytest.mark.parametrize("d", [3, 10])
def test_float32_block_softmin_and_gradients_equal_lazy(d):
    x, y, _, _ = _clouds(700, 500, d, seed=11)
    x, y = x.float().requires_grad_(), y.float().requires_grad_()
    h = (0.05 * torch.randn(500, generator=torch.Generator().manual_seed(2))).float().requires_grad_()
    eps = 0.02
    red = MultiscaleSoftmin(SqEuclidean(), x, y, leaf_size=16)
    ms = red.softmin(x, y, h, eps, 1)
    lz = lazy_softmin(x, y, h, eps, 1, SqEuclidean())
    assert red.stats["kept_fraction"] < (1.0 if d == 3 else 1.01)  # 10-D cells of 16 points span the cloud
    assert (ms - lz).abs().max() <= eps * 1e-5 + 2e-6 * lz.abs().max()
    w = torch.rand(700, generator=torch.Generator().manual_seed(3))
    for a, b in zip(torch.autograd.grad((ms * w).sum(), (x, y, h)), torch.autograd.grad((lz * w).sum(), (x, y, h))):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5 * float(b.abs().max()))


def test_a_solve_releases_its_block_lists_and_its_gradient_survives():
    """The block lists (~0.5 GB each at 10^6 points) are dropped when a solve ends; the backward of the returned
    value keeps the list it recorded, so the gradient equals the lazy backend's."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(600, 2, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.rand(500, 2, generator=g, dtype=torch.float64)
    solver = Sinkhorn(eps=1e-2, tol=1e-10)
    geom = PointCloud(x, y, backend="multiscale")
    res = solver(LinearProblem(geom))
    assert geom._impl.stats["calls"] > 0 and geom._impl._lists == {}
    (gx,) = torch.autograd.grad(res.value, x)
    ref = solver(LinearProblem(PointCloud(x, y, backend="lazy")))
    (gr,) = torch.autograd.grad(ref.value, x)
    torch.testing.assert_close(gx, gr, rtol=0, atol=1e-8)
    again = solver(LinearProblem(geom))  # the lists are rebuilt on demand
    torch.testing.assert_close(again.value, res.value, rtol=1e-12, atol=0)

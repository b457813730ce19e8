"""The geometry contract (issue 10, part 3): support shapes, loop_geometry, plan_cost, barycentric_map and
cost_factors on every geometry; the one ``geom=`` argument; nothing outside monge.geometry looks inside one."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

import monge
from monge.geometry import DenseCost, Grid, GridSpec, PointCloud
from monge.geometry.costs import SqEuclidean, get_cost
from monge.geometry.spec import resolve_geometry

F64 = torch.float64


def _geoms():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 2, generator=g, dtype=F64), torch.rand(4, 2, generator=g, dtype=F64)
    return {
        "dense": DenseCost(SqEuclidean()(x, y)),
        "cloud-dense": PointCloud(x, y, backend="dense"),
        "cloud-lazy": PointCloud(x, y, backend="lazy"),
        "cloud-half": PointCloud(x, y, cost="sqeuclidean_half", backend="lazy"),
        "cloud-euclid": PointCloud(x, y, cost="euclidean", backend="lazy", chunk=2),
        "grid": Grid((3, 2), dtype=F64),
    }


@pytest.mark.parametrize("name", list(_geoms()))
def test_support_shapes_and_plan_cost(name):
    geom = _geoms()[name]
    n, m = geom.shape
    src, tgt = geom.source_shape, geom.target_shape
    assert (torch.Size(src).numel(), torch.Size(tgt).numel()) == (n, m) and geom.event_ndim == len(src)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, *src, generator=g, dtype=F64) * 0.1
    v = torch.randn(3, *tgt, generator=g, dtype=F64) * 0.1
    C = geom.cost()
    P = torch.exp((u.reshape(3, n, 1) + v.reshape(3, 1, m) - C) / 0.2)
    torch.testing.assert_close(geom.plan_cost(u, v, 0.2), (P * C).sum((-1, -2)), rtol=1e-12, atol=1e-14)
    res = monge.solve(geom, eps=0.2)
    assert res.transport_cost.shape == () and bool(torch.isfinite(res.transport_cost))


@pytest.mark.parametrize("name", list(_geoms()))
def test_loop_geometry(name):
    geom = _geoms()[name]
    assert geom.loop_geometry(False) is geom.detach()
    unrolled = geom.loop_geometry(True)
    torch.testing.assert_close(unrolled.cost(), geom.cost())
    h = torch.zeros(*geom.target_shape, dtype=F64)
    torch.testing.assert_close(unrolled.softmin(h, 0.1, 1), geom.softmin(h, 0.1, 1))


def test_barycentric_map_and_cost_factors_need_points():
    geoms = _geoms()
    with pytest.raises(TypeError, match="needs a geometry with points"):
        geoms["dense"].barycentric_map(torch.zeros(4, dtype=F64), 0.1)
    assert geoms["dense"].cost_factors() is None and geoms["cloud-euclid"].cost_factors() is None
    for key in ("cloud-dense", "cloud-half"):
        U, V = geoms[key].cost_factors()
        torch.testing.assert_close(U @ V.mT, geoms[key].cost(), rtol=1e-10, atol=1e-12)


def test_backend_is_chosen_once(monkeypatch):
    """A cloud keeps the reduction it picked at construction even if the compiled kernel disappears later."""
    import monge.geometry._backends.lazy as lazy

    x = torch.rand(8, 2, dtype=F64)
    geom = PointCloud(x, backend="lazy")
    h = torch.randn(8, dtype=F64)
    before = geom.softmin(h, 0.1, 1)
    calls = []
    monkeypatch.setattr(lazy, "kernel_available", lambda t: calls.append(t) or False)
    torch.testing.assert_close(geom.softmin(h, 0.1, 1), before)
    assert not calls  # no per-call dispatch on the cost or the device


def test_sqeuclidean_half_is_half_the_cost_on_every_backend():
    x, y = torch.rand(30, 2, dtype=F64), torch.rand(25, 2, dtype=F64)
    assert get_cost("sqeuclidean_half").scale == 0.5
    vals = [monge.solve_points(x, y, cost="sqeuclidean_half", eps=0.05, backend=b, tol=1e-11).value
            for b in ("dense", "lazy")]
    full = monge.solve_points(x, y, eps=0.1, tol=1e-11).value  # c/2 at eps/2 = (c at eps) / 2
    torch.testing.assert_close(vals[0], vals[1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(vals[0], full / 2, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="scale: expected a positive finite number"):
        SqEuclidean(scale=0.0)


# ---------------------------------------------------------------- one geom= argument
def test_geom_argument_rule():
    hists = torch.rand(2, 5, dtype=F64)
    C = torch.rand(5, 5, dtype=F64)
    assert isinstance(resolve_geometry(C, hists), DenseCost)  # a square tensor is a cost, never points
    assert resolve_geometry("grid", hists).source_shape == (5,)
    assert resolve_geometry(GridSpec(spacing=0.5), hists).spacing == (0.5,)
    cloud = PointCloud(torch.rand(5, 2, dtype=F64))
    assert resolve_geometry(cloud, hists) is cloud
    with pytest.raises(ValueError, match="expected exactly one way"):
        resolve_geometry(None, hists)
    with pytest.raises(ValueError, match="the old keywords x"):
        monge.barycenter(hists, eps=0.1, x=torch.rand(5, 2))
    with pytest.raises(ValueError, match="geom: expected 'grid'"):
        monge.barycenter(hists, eps=0.1, geom="grids")
    with pytest.raises(ValueError, match="for support points pass geom=monge.PointCloud"):
        monge.barycenter(hists, eps=0.1, geom=torch.rand(5, dtype=F64))


def test_geom_forms_give_the_same_barycenter():
    t = torch.linspace(0, 1, 9, dtype=F64)
    A = torch.softmax(-((t[None] - torch.tensor([[0.2], [0.7]], dtype=F64)) / 0.1) ** 2, -1)
    kw = dict(eps=5e-3, tol=1e-11, max_iter=20000)
    by_grid = monge.barycenter(A, geom=GridSpec(spacing=1 / 8), **kw).barycenter
    by_cost = monge.barycenter(A, geom=(t[:, None] - t[None]) ** 2, **kw).barycenter
    by_points = monge.barycenter(A, geom=PointCloud(t[:, None]), **kw).barycenter
    torch.testing.assert_close(by_cost, by_grid, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(by_points, by_grid, rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------- nobody looks inside a geometry
_INTERNALS = re.compile(r"\.grid_shape\b|\bgeom(etry)?\.(x|y|backend|cost_fn|chunk|C|spacing)\b")
_ALLOWED: set = set()


def test_no_module_outside_geometry_reads_geometry_internals():
    root = pathlib.Path(monge.__file__).parent
    hits = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("geometry/") or rel in _ALLOWED:
            continue
        for k, line in enumerate(path.read_text().splitlines(), 1):
            if _INTERNALS.search(line):
                hits.append(f"{rel}:{k}: {line.strip()}")
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [1e-1, 1e-3])
def test_grid_plan_cost_is_separable_and_exact(dtype, eps):
    """<P, C> on a grid axis by axis (weighted 1-D kernels), equal to the dense sum; beyond Grid.MAX_DENSE cells too."""
    g = torch.Generator().manual_seed(4)
    geom = Grid((12, 9), dtype=dtype)
    u = (-5 * eps * torch.rand(2, 12, 9, generator=g, dtype=torch.float64)).to(dtype)  # shifts of a few eps
    v = (-5 * eps * torch.rand(2, 12, 9, generator=g, dtype=torch.float64)).to(dtype)
    C = geom.cost().double()
    P = torch.exp((u.double().reshape(2, -1, 1) + v.double().reshape(2, 1, -1) - C) / eps)
    ref = (P * C).sum((-1, -2))
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(geom.plan_cost(u, v, eps).double(), ref, rtol=tol, atol=tol * float(ref.abs().max()))
    a = torch.zeros(80, 80, dtype=torch.float64)
    a[10, 10] = 1
    b = torch.zeros(80, 80, dtype=torch.float64)
    b[10, 50] = 1
    assert 6400 > 4096  # Grid.cost() would refuse this grid
    res = monge.solve_grid(a, b, eps=1e-3)
    assert float(res.transport_cost) == pytest.approx(0.25, rel=1e-6)  # (40 / 80)^2


# ---------------------------------------------------------------- backend="auto" and the multiscale soft-min
def test_auto_picks_multiscale_for_large_low_dimensional_sqeuclidean_clouds():
    """Issue 14: the choice is read, nothing large is solved (n m = MULTISCALE_MIN_ENTRIES, the smallest cloud it
    applies to); multiscale only at small eps, only for unbatched squared-Euclidean clouds in low dimension."""
    from monge.geometry import pointcloud as pc

    n = int(pc.MULTISCALE_MIN_ENTRIES**0.5) + 1
    x, y = torch.rand(n, 3), torch.rand(n, 3)
    geom = PointCloud(x, y)
    diam2 = geom.cost_scale()
    small, large = (0.5 * pc.MULTISCALE_MAX_BLUR) ** 2 * diam2, (2.0 * pc.MULTISCALE_MAX_BLUR) ** 2 * diam2
    assert geom.backend == "auto" and "multiscale at eps <=" in repr(geom)
    assert (geom.backend_for(small), geom.backend_for(large)) == ("multiscale", "lazy")
    assert geom.transposed().backend_for(small) == "multiscale"
    assert PointCloud(x, y, cost="sqeuclidean_half").backend_for(small / 2) == "multiscale"  # eps in cost units
    d_hi = pc.MULTISCALE_MAX_DIM + 1
    others = {
        "batched x": PointCloud(x.expand(2, n, 3), y),
        "batched y": PointCloud(x, y.expand(3, n, 3)),
        "euclidean": PointCloud(x, y, cost="euclidean", p=1),
        "cosine": PointCloud(x, y, cost="cosine"),
        f"d = {d_hi}": PointCloud(torch.rand(n, d_hi), torch.rand(n, d_hi)),
        "n m below the threshold": PointCloud(x[: n // 2], y),
        "lazy asked": PointCloud(x, y, backend="lazy"),
    }
    for name, other in others.items():
        assert other.backend != "auto" and other.backend_for(small) != "multiscale", name


def test_auto_switching_to_multiscale_by_eps_equals_the_lazy_backend(monkeypatch):
    """A solve on an "auto" cloud crosses from the lazy soft-min (early eps-scaling stages) to the multiscale one
    (eps at or below the threshold) and returns the lazy backend's potentials, value and gradient."""
    from monge.geometry import pointcloud as pc

    monkeypatch.setattr(pc, "MULTISCALE_MIN_ENTRIES", 0)  # a small cloud stands for a large one
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(400, 2, generator=g, dtype=F64), torch.rand(300, 2, generator=g, dtype=F64)
    eps = 0.5 * pc.MULTISCALE_MAX_BLUR**2 * PointCloud(x, y, backend="lazy").cost_scale()
    kw = dict(eps=eps, tol=1e-10, schedule=monge.EpsScaling(0.5))
    auto = PointCloud(x, y)
    assert auto.backend == "auto" and auto.backend_for(eps) == "multiscale" and auto.backend_for(100 * eps) == "lazy"
    lazy_eps, lazy_softmin = [], auto._impl.lazy.softmin
    auto._impl.lazy.softmin = lambda *args: lazy_eps.append(args[3]) or lazy_softmin(*args)
    res = monge.solve(auto, **kw)
    ref = monge.solve(PointCloud(x, y, backend="lazy"), **kw)
    assert auto._impl.multiscale.stats["calls"] > 0 and lazy_eps  # both ran
    at_small = [e for e in lazy_eps if e <= auto._impl.eps_max]  # lazy below eps_max: each eps's first call only
    assert len(at_small) <= 2 * len(set(at_small)) and max(lazy_eps) > auto._impl.eps_max
    assert res.convergence.all_converged and ref.convergence.all_converged
    torch.testing.assert_close(res.value, ref.value, rtol=1e-8, atol=0)
    shift = float((res.f - ref.f).mean())  # potentials are defined up to (f + c, g - c)
    torch.testing.assert_close(res.f - shift, ref.f, rtol=0, atol=1e-7)
    torch.testing.assert_close(res.g + shift, ref.g, rtol=0, atol=1e-7)
    grads = []
    for backend in ("auto", "lazy"):
        xr = x.clone().requires_grad_()
        monge.sinkhorn_divergence(xr, y, eps=eps, backend=backend, tol=1e-10).backward()
        grads.append(xr.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-7)

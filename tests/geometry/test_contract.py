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

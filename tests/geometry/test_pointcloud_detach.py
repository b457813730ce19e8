"""PointCloud.detach: one detached cloud per state of the points (solvers ask for it several times per solve),
rebuilt and validated again when a point tensor was modified in place."""

import pytest
import torch

from monge.geometry import PointCloud


def _cloud(backend="dense"):
    x = torch.rand(6, 2, dtype=torch.float64, requires_grad=True)
    return x, PointCloud(x, torch.rand(5, 2, dtype=torch.float64), backend=backend)


def test_detach_is_cached_while_the_points_are_unchanged():
    _, geom = _cloud()
    d = geom.detach()
    assert geom.detach() is d and not d.x.requires_grad and torch.equal(d.x, geom.x.detach())


@pytest.mark.parametrize("backend", ["dense", "lazy"])
def test_detach_follows_in_place_changes(backend):
    x, geom = _cloud(backend)
    h = torch.rand(5, dtype=torch.float64)
    stale = geom.detach()
    stale.softmin(h, 0.1, 1)
    stale.softmin(h, 0.1, 1)  # its cost (and kernel) cached
    with torch.no_grad():
        x.mul_(3.0)
    fresh = geom.detach()
    assert fresh is not stale
    want = PointCloud(x.detach().clone(), geom.y, backend=backend).softmin(h, 0.1, 1)
    torch.testing.assert_close(fresh.softmin(h, 0.1, 1), want)


def test_detach_validates_points_modified_in_place():
    x, geom = _cloud()
    with torch.no_grad():
        x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x: expected finite values, found NaN entries"):
        geom.detach()
    x2, geom2 = _cloud()
    geom2.detach()
    with torch.no_grad():
        x2[1, 1] = float("inf")
    with pytest.raises(ValueError, match="x: expected finite values, found infinite entries"):
        geom2.detach()


def test_requires_grad_is_detach_not_self():
    x, geom = _cloud()
    assert geom.requires_grad and geom.detach() is not geom
    plain = PointCloud(x.detach(), x.detach()[:3])
    assert not plain.requires_grad and plain.detach() is plain


def test_self_cloud_skips_only_unchanged_points():
    x, geom = _cloud("lazy")
    aa = geom.self_cloud(0, "auto")
    assert aa.symmetric and aa.x is geom.x and aa.shape == (6, 6) and aa.cost_fn is geom.cost_fn
    bb = geom.self_cloud(1, "dense")
    assert bb.x is geom.y and bb.backend == "dense"
    with pytest.raises(ValueError, match="backend: expected one of"):
        geom.self_cloud(0, "fast")
    with torch.no_grad():
        x[2, 0] = float("nan")
    with pytest.raises(ValueError, match="x: expected finite values, found NaN entries"):
        geom.self_cloud(0)
